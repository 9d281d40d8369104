"""A component's thread carries its name in the operating system."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from infra.os_threads import name_this_thread


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names are Linux's /proc")
def test_the_thread_is_named_in_proc() -> None:
    seen: list[str] = []

    def run() -> None:
        name_this_thread("ob-relay-and-a-long-tail")
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == ["ob-relay-and-a-"]  # the kernel keeps 15 bytes
