"""Names for the operating system's threads, so that ``top -H``, ``ps -L``
and ``/proc/<pid>/task/*/comm`` show which component a thread runs (the
benchmark reads them to split a process's CPU by component)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

PR_SET_NAME = 15  # prctl(2)
LIMIT = 15  # bytes the kernel keeps


def name_this_thread(name: str) -> None:
    """Give the calling thread ``name`` (cut to 15 bytes); Linux only, else nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:LIMIT], 0, 0, 0)
    except (OSError, AttributeError):
        return  # only a label: never stop a component for it
