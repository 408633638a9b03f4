"""Real file-system faults for the storage fault tests: a small tmpfs that fills up, a
read-only remount, an immutable file.

They need root and a kernel that lets this process mount (``mount -t tmpfs``) and set
the immutable flag (``chattr +i``); where it does not, the test that asked is skipped with
the reason, never faked. Everything is undone on the way out (unmounted, flags cleared).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def small_disk(mount_point: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mount_point`` (created), unmounted on leaving."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        _run("mount", "-o", "remount,rw", str(mount_point))
        if _run("umount", str(mount_point)).returncode != 0:
            _run("umount", "-l", str(mount_point))


def remount_read_only(mount_point: Path) -> None:
    """Remount the tmpfs at ``mount_point`` read-only (as a failing disk or an operator
    would)."""
    result = _run("mount", "-o", "remount,ro", str(mount_point))
    if result.returncode != 0:
        pytest.skip(f"cannot remount read-only: {result.stderr.strip()}")


def fill(directory: Path, name: str = "filler") -> Path:
    """Write zeros to ``directory/name`` until the file system is full; return the file
    (delete it to free the space)."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (64 * 1024, 4096, 512):  # big blocks, then the last pages
            try:
                while True:
                    os.write(fd, bytes(size))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return path


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``path`` with the immutable flag set (even root cannot write it), cleared on
    leaving."""
    result = _run("chattr", "+i", str(path))
    if result.returncode != 0:
        pytest.skip(f"cannot set the immutable flag here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        _run("chattr", "-i", str(path))
