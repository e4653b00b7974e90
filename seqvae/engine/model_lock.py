"""The engine's lock, with a fast lane: short requests get the model before heavy work's next piece.

Heavy work (infill, novelty, long interpolations, whole files) holds the model only for one small
call at a time and takes the lock again for the next one; a thread inside `urgent()` that is waiting
goes first. So a knob's decode waits at most for the one piece already running, never for a whole
heavy request. The lock is reentrant, as the engine's nested calls need.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ModelLock:
    """A reentrant lock where waiting urgent threads win over waiting ordinary ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._urgent_waiting = 0
        self._ordinary_waiting = 0
        self._local = threading.local()

    @contextmanager
    def urgent(self) -> Iterator[None]:
        """Acquisitions by this thread inside the block jump ahead of ordinary waiters."""
        before = getattr(self._local, "urgent", False)
        self._local.urgent = True
        try:
            yield
        finally:
            self._local.urgent = before

    def is_urgent(self) -> bool:
        """Whether this thread is inside `urgent()`."""
        return getattr(self._local, "urgent", False)

    def waiters(self) -> tuple[int, int]:
        """(urgent, ordinary) threads waiting now."""
        with self._cond:
            return self._urgent_waiting, self._ordinary_waiting

    def acquire(self) -> None:
        me = threading.get_ident()
        urgent = self.is_urgent()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            if urgent:
                self._urgent_waiting += 1
                try:
                    while self._owner is not None:
                        self._cond.wait()
                finally:
                    self._urgent_waiting -= 1
            else:
                self._ordinary_waiting += 1
                try:
                    while self._owner is not None or self._urgent_waiting:
                        self._cond.wait()
                finally:
                    self._ordinary_waiting -= 1
            self._owner, self._depth = me, 1

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("ModelLock released by a thread that does not hold it")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
