"""die_with_parent for real: a child started with it ends when its parent is SIGKILLed; one
started without it outlives the parent (what a killed test session did to its vLLM server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

PARENT = """
import subprocess, sys, time
from rag.lifetime import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True,
                         preexec_fn=die_with_parent if sys.argv[1] == "tied" else None)
print(child.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _child_of_killed_parent(mode: str, wait: float) -> int:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, mode], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + wait
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    return child


# SIGTERM reaches a tied child at once; 2 s is long enough to tell that an untied one stays.
@pytest.mark.parametrize("mode, survives, wait", [("tied", False, 10.0), ("free", True, 2.0)])
def test_a_tied_child_ends_with_its_killed_parent(mode, survives, wait):
    child = _child_of_killed_parent(mode, wait)
    try:
        assert _alive(child) is survives
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
