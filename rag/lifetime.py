"""Child processes that end with their parent: a killed `rag up`, benchmark or test session
must not leave a server or a computation running on a shared machine."""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1
# Loaded up front: a child between fork and exec should call nothing but prctl.
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """In the child: SIGTERM it when the parent dies, even by SIGKILL (Linux; elsewhere a no-op).

    Use as ``preexec_fn`` or a pool initializer. The signal follows the parent *thread* that
    started the child, so start such children from the main thread.
    """
    try:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except AttributeError:  # no prctl: not Linux
        pass
