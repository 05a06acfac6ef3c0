"""Run one benchmark leg in a fresh child process, so each leg starts cold and its memory is its own."""

from __future__ import annotations

import ctypes
import multiprocessing
import signal

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A killed benchmark must not leave a child computing for minutes on a shared machine.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the child just runs to its end
        pass


def run_in_child(fn, *args):
    """``fn(*args)`` in a spawned process that ends when this one does."""
    with multiprocessing.get_context("spawn").Pool(1, initializer=_die_with_parent) as pool:
        return pool.apply(fn, args)
