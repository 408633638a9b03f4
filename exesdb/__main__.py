"""``python -m exesdb``: see :mod:`exesdb.cli`."""

import sys

from .cli import main

sys.exit(main())
