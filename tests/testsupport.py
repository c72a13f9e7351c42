"""Helpers several test modules share (importable because pytest puts `tests/` on sys.path for its conftest)."""

import os
import select


def wait_gone(pid: int, limit: float = 90.0) -> bool:
    """True once `pid` has exited (zombie or reaped), waiting on a pidfd rather than sleeping.

    `limit` is a safety net against a hung process, not a timing assertion.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(int(limit * 1000)))
    finally:
        os.close(fd)
