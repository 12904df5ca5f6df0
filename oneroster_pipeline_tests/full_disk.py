"""A real full filesystem for the tests: a small tmpfs mounted by the test (root only), and a file that fills it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_volume(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "32m") mounted at `folder` (created), unmounted afterwards. Skips the test, with the
    reason, when not root or when mounting is not permitted (a container without CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        pytest.skip("a full filesystem needs a tmpfs mounted by the test: run as root")
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)  # a file still open: detach it lazily


def fill(volume: Path, leave: int) -> Path:
    """Fill `volume` but `leave` bytes (as near as its pages allow) with one file, and return that file."""
    found = os.statvfs(volume)
    filler = volume / "filler"
    with open(filler, "wb") as out:
        try:
            out.write(b"\0" * max(found.f_bavail * found.f_frsize - leave, 0))
        except OSError:
            pass  # full already
    return filler
