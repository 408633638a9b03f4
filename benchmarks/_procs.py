"""What the benchmarks read of a server they run as an OS process: its CPU time and
resident memory (from ``/proc``), and its orderly stop."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

__all__ = ["process_cpu", "process_rss", "stop_server"]


def process_cpu(pid: int) -> float:
    """CPU seconds the process ``pid`` has used (user + system, every thread); 0 where
    ``/proc`` does not have it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss(pid: int) -> int:
    """The resident memory of process ``pid`` in bytes; 0 where ``/proc`` does not have
    it."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def stop_server(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if the server is not gone within 30 s; reaped either way."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
