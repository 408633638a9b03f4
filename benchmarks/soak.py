"""The soak: the fault campaign of :mod:`benchmarks.faults` for a given time.

``python -m benchmarks.soak --seconds N --seed S [--appenders K] [--work DIR] [--json]``
runs ``python -m exesdb start`` as an OS process with ``K`` appender processes and a
subscriber process against it, injects faults from the seeded schedule (SIGKILL,
SIGSTOP/SIGCONT, a full disk, a client killed mid-call, a hostile connection) for about
``N`` seconds, checks the store after every round, and prints the totals: rounds, faults
of each kind, events acknowledged and stored, lost, duplicated, and any other broken
invariant. Exit status 0 when nothing was lost, duplicated or broken, else 1.

The work directory (a fresh temporary one by default, removed afterwards; ``--work`` keeps
it) holds the server's log and each client's record. A full disk needs root (a small
tmpfs is mounted there); without it the schedule has no full-disk rounds and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .faults import run_campaign

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak; print the totals; 0 if every invariant held."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, required=True, help="how long to run")
    parser.add_argument("--seed", type=int, default=1, help="the schedule's seed (default 1)")
    parser.add_argument("--appenders", type=int, default=3,
                        help="appender processes (default 3)")
    parser.add_argument("--disk-size", default="256m",
                        help="the tmpfs the store lives on (default 256m)")
    parser.add_argument("--work", type=Path, default=None,
                        help="an empty directory to work in, kept afterwards")
    parser.add_argument("--json", action="store_true", help="the totals as one JSON object")
    parser.add_argument("--verbose", action="store_true", help="a line per round")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.appenders < 1:
        parser.error("--seconds must be > 0 and --appenders >= 1")
    log = sys.stderr if args.verbose else None
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        report = run_campaign(args.work, args.seed, seconds=args.seconds,
                              appenders=args.appenders, disk_size=args.disk_size, log=log)
    else:
        with tempfile.TemporaryDirectory(prefix="exesdb-soak-") as work:
            report = run_campaign(Path(work), args.seed, seconds=args.seconds,
                                  appenders=args.appenders, disk_size=args.disk_size,
                                  log=log)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(f"python -m benchmarks.soak --seconds {args.seconds:g} --seed {args.seed}")
        print(report.summary())
        for violation in report.violations:
            print(f"VIOLATION: {violation}")
    return 0 if not report.violations else 1


if __name__ == "__main__":
    sys.exit(main())
