"""MIDI files are read and written in a helper process, so their Python never holds the server's GIL.

Parsing a long MIDI file is tens of milliseconds of pure Python (mido), and so is building one to
export. On the heavy lane's thread that still stalls a knob: every thread of the server needs the
GIL to receive, decode and reply, and a busy Python thread hands it over late (measured: a morph's
p99 went to 80 ms while another client looped `encode_file` on a 400-bar file). In a process of its
own, at a lower scheduling priority, the file work only shares the CPU. The process starts with the
first file request (a second or two, once) and is reused; if it dies, the next request starts another.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from seqvae.codec import EventCodec, Melody
from seqvae.engine.inputs import clip_from_midi, melody_from_midi

T = TypeVar("T")
NICENESS = 10  # below the server's threads: a knob's decode goes first when both want the CPU


def read_line(path: str | Path, steps: int, codec: EventCodec, track: int | str | None, bar: int) -> Melody:
    """One line of a MIDI file: the window at `bar`, or (bar 0) the whole line as a clip."""
    if bar:
        return melody_from_midi(path, steps, codec, track=track, bar=bar)
    return clip_from_midi(path, steps, codec, track=track)


def _lower_priority() -> None:
    try:
        os.nice(NICENESS)
    except OSError:  # a platform without nice: the work still runs, only at the same priority
        pass


class FileJobs:
    """Runs module-level functions in one helper process; their result or their exception comes back."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn, not fork: the server has threads (and torch's), which a forked child would inherit half-held
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_lower_priority)
            return self._pool

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in the helper process (the caller's thread waits without the GIL)."""
        pool = self._executor()
        try:
            return pool.submit(fn, *args, **kwargs).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            raise RuntimeError("the server's file process stopped while working on this file; send the request "
                               "again (a new one starts)") from None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
