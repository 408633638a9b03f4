"""Fixtures for the otp tests: the public ones of ``otp.testing.pytest_plugin``.

They are imported rather than listed in ``pytest_plugins``, which pytest accepts only in
the top-level conftest. A project of your own would write, in its top-level conftest.py::

    pytest_plugins = ["otp.testing.pytest_plugin"]
"""

from otp.testing.pytest_plugin import otp_driver, otp_node

__all__ = ["otp_driver", "otp_node"]
