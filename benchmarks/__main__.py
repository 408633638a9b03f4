"""Run the benchmarks: a table by default, JSON Lines with ``--json``."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import SUITES
from ._report import Result, render_json, render_table


def main(argv: list[str] | None = None) -> int:
    """Run every suite (or those named with ``--only``) and print their results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--only", action="append", default=[],
                        help="run only suites whose module name contains this (repeatable)")
    args = parser.parse_args(argv)
    suites = [s for s in SUITES if not args.only or any(o in s for o in args.only)]
    results: list[Result] = []
    for suite in suites:
        module = importlib.import_module(suite)
        suite_results = module.run()
        results.extend(suite_results)
        if args.json:
            print(render_json(suite_results), flush=True)
    if not args.json:
        print(render_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
