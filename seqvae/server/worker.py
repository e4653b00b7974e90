"""Inference off the receiving loop in two lanes: short requests micro-batched, heavy work in pieces.

The receiving loop only parses, checks and blends latents; anything that runs the model is a job
on a bounded queue. Short jobs (decodes of a few rows: morph, sample, similar, shift; encoding one
window) go to the fast lane. When its thread comes back for work it takes everything already
waiting, and decode jobs that can share a pass (greedy, or sampled without a seed, at the same
temperature, key, range and chords) go through `engine.decode` as one stacked batch: a batch of 4 costs
little more than a batch of 1 on a CPU, so 4 busy clients get nearly 4x the throughput without waiting for each other.
Nothing waits to fill a batch, so a lone client pays no latency.

Each lane holds at most `max_queue` jobs per client and 16 times that in all, so one sender's burst
answers 'busy' to that sender, not to the performer next to it.

Heavy jobs (infill, novelty, long interpolations, files) go to the heavy lane's own thread, one at a
time, taking turns between clients. They take the model a piece at a time (`Engine.piece_rows`);
the fast lane runs inside `engine.urgent()`, so its next batch goes before heavy work's next piece
and a knob waits at most for the piece already running. While heavy work runs, each lane's kernel calls
use one thread (`native.thread_cap`), so the two lanes never make more threads than a 2-core machine has.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqvae.models.native import thread_cap

log = logging.getLogger("seqvae.server")

_STOP = object()
SHORT_ROWS = 4  # a decode of up to this many rows takes the fast lane
PIECE_ROWS = 1  # rows per model call of heavy work: a knob waits for at most one row (bench_stalls.py)
CLIENTS_PER_LANE = 16  # a lane holds this many clients' full shares of jobs


@dataclass
class DecodeJob:
    """Decode latents z [k, Z]; `done` gets the k melodies or the exception."""

    z: np.ndarray
    temperature: float
    seed: int | None
    done: Callable[[Any], None]
    owner: Hashable = None  # whose request: heavy work takes turns between owners
    engine: Any = None  # the request's engine (a client's view: its key, range and chords); None: the worker's
    chords: np.ndarray | None = None  # chord classes [k, steps] per row (a clip's windows), else the view's progression

    @property
    def heavy(self) -> bool:
        return len(self.z) > SHORT_ROWS

    def constraints(self) -> tuple:
        """What must match for two jobs to share a pass: jobs in one key, range and progression decode alike on any
        view."""
        if self.engine is None:
            return (None, None, None)
        heard = self.engine.progression
        return (self.engine.key, self.engine.pitch_range, heard if heard is None or isinstance(heard, str)
                else np.asarray(heard).tobytes())

    @property
    def batchable(self) -> bool:
        # A seeded sampled decode must give the same notes whoever else is in the batch; rows with chords of their
        # own (a clip's windows) decode alone.
        return (self.temperature == 0.0 or self.seed is None) and self.chords is None


@dataclass
class CallJob:
    """Any other engine work (encode, infill, novelty, file I/O); `done` gets its result or exception."""

    fn: Callable[[], Any]
    done: Callable[[Any], None]
    owner: Hashable = None
    heavy: bool = True  # more than about one short decode of work: the heavy lane


@dataclass
class WorkerStats:
    decode_calls: int = 0
    decoded_rows: int = 0
    batched_jobs: int = 0  # decode jobs that shared a pass with another
    calls: int = 0
    heavy_jobs: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)


class TurnQueue:
    """Heavy jobs by owner, served in turns: one client's many heavy requests don't starve another's."""

    def __init__(self, limit: int, per_owner: int | None = None) -> None:
        self.limit = limit
        self.per_owner = per_owner or limit
        self._jobs: OrderedDict[Hashable, deque] = OrderedDict()
        self._size = 0
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return self._size

    def waiting(self, owner: Hashable) -> int:
        with self._cond:
            return len(self._jobs.get(owner, ()))

    def put(self, job: Any, owner: Hashable) -> bool:
        with self._cond:
            if job is not _STOP and (self._size >= self.limit
                                     or len(self._jobs.get(owner, ())) >= self.per_owner):
                return False
            self._jobs.setdefault(owner, deque()).append(job)
            self._size += 1
            self._cond.notify()
        return True

    def get(self) -> Any:
        """The oldest job of the owner whose turn it is (owners rotate after each job)."""
        with self._cond:
            while not self._size:
                self._cond.wait()
            owner, jobs = next(iter(self._jobs.items()))
            job = jobs.popleft()
            del self._jobs[owner]
            if jobs:
                self._jobs[owner] = jobs  # to the back of the turn order
            self._size -= 1
            return job


class InferenceWorker:
    """The two lanes' threads, which own every engine call; `submit` refuses work when a lane is full."""

    def __init__(self, engine: Any, max_queue: int = 64, batching: bool = True, max_batch_rows: int = 64,
                 piece_rows: int = PIECE_ROWS) -> None:
        self.engine = engine
        engine.piece_rows = piece_rows  # heavy work gives the model back to the fast lane this often
        self.batching = batching
        self.max_batch_rows = max_batch_rows
        self.max_queue = max_queue  # per client and lane
        self.lane_limit = max_queue * CLIENTS_PER_LANE
        self.stats = WorkerStats()
        self._queue: queue.Queue = queue.Queue()  # bounded by `submit`: per owner and in all
        self._fast_waiting: Counter[Hashable] = Counter()
        self._fast_lock = threading.Lock()
        self._heavy = TurnQueue(self.lane_limit, per_owner=max_queue)
        self._heavy_running = False  # the fast lane then keeps its kernel calls to one thread
        self._thread = threading.Thread(target=self._run, name="seqvae-inference", daemon=True)
        self._heavy_thread = threading.Thread(target=self._run_heavy, name="seqvae-heavy", daemon=True)
        self._thread.start()
        self._heavy_thread.start()

    @property
    def waiting(self) -> int:
        return self._queue.qsize() + len(self._heavy)

    def submit(self, job: DecodeJob | CallJob) -> str | None:
        """Queue a job in its lane; None when queued, else why not (the caller answers it as 'busy: ...')."""
        if job.heavy:
            if self._heavy.put(job, job.owner):
                return None
            mine, total = self._heavy.waiting(job.owner), len(self._heavy)
        else:
            with self._fast_lock:
                mine, total = self._fast_waiting[job.owner], self._queue.qsize()
                if mine < self.max_queue and total < self.lane_limit:
                    self._fast_waiting[job.owner] += 1
                    self._queue.put(job)
                    return None
        if mine >= self.max_queue:
            return f"{mine} of your requests are queued for the model; wait for their replies"
        return f"{total} requests from all clients are queued for the model; try again in a moment"

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._heavy.put(_STOP, _STOP)
        self._thread.join(timeout)
        self._heavy_thread.join(timeout)

    def _run_heavy(self) -> None:
        with thread_cap(1):
            while True:
                job = self._heavy.get()
                if job is _STOP:
                    return
                self.stats.heavy_jobs += 1
                self._heavy_running = True
                try:
                    if isinstance(job, DecodeJob):
                        self._decode([job])
                    else:
                        self._call(job)
                finally:
                    self._heavy_running = False

    def _run(self) -> None:
        with self.engine.urgent():
            self._serve_fast_lane()

    def _serve_fast_lane(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            jobs = [job]
            stop = False
            if self.batching:
                while True:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    jobs.append(nxt)
            with self._fast_lock:  # taken off the lane: their owners may queue more
                self._fast_waiting.subtract(taken.owner for taken in jobs)
                self._fast_waiting += Counter()  # drops owners at zero
            with thread_cap(1 if self._heavy_running else None):
                self._run_jobs(jobs)
            if stop:
                return

    def _run_jobs(self, jobs: list[DecodeJob | CallJob]) -> None:
        groups: dict[tuple, list[DecodeJob]] = {}
        for job in jobs:
            if isinstance(job, DecodeJob) and self.batching and job.batchable:
                groups.setdefault((job.temperature, *job.constraints()), []).append(job)
            elif isinstance(job, DecodeJob):
                self._decode([job])
            else:
                self._call(job)
        for temperature_jobs in groups.values():
            chunk: list[DecodeJob] = []
            rows = 0
            for job in temperature_jobs:
                if chunk and rows + len(job.z) > self.max_batch_rows:
                    self._decode(chunk)
                    chunk, rows = [], 0
                chunk.append(job)
                rows += len(job.z)
            self._decode(chunk)

    def _decode(self, jobs: list[DecodeJob]) -> None:
        stats = self.stats
        stats.decode_calls += 1
        stats.batch_sizes[len(jobs)] = stats.batch_sizes.get(len(jobs), 0) + 1
        if len(jobs) > 1:
            stats.batched_jobs += len(jobs)
        try:
            z = jobs[0].z if len(jobs) == 1 else np.concatenate([job.z for job in jobs])
            stats.decoded_rows += len(z)
            engine = jobs[0].engine or self.engine
            melodies = engine.decode(z, temperature=jobs[0].temperature, seed=jobs[0].seed, chords=jobs[0].chords)
        except Exception as exc:  # every job of the batch learns of the failure
            for job in jobs:
                _deliver(job, exc)
            return
        start = 0
        for job in jobs:
            _deliver(job, melodies[start : start + len(job.z)])
            start += len(job.z)

    def _call(self, job: CallJob) -> None:
        self.stats.calls += 1
        try:
            result = job.fn()
        except Exception as exc:
            result = exc
        _deliver(job, result)


def _deliver(job: DecodeJob | CallJob, result: Any) -> None:
    try:
        job.done(result)
    except Exception:  # a broken callback must not kill the worker
        log.exception("delivering a result failed")
