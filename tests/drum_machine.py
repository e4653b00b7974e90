"""A drum machine on a JACK MIDI output, for the MIDI clock tests and the sync benchmark: 24 ticks per quarter
from a thread at a tempo that can change, transport messages between two ticks, and a record of when each tick
left (the grid the server's onsets are measured against)."""

from __future__ import annotations

import threading
import time


class DrumMachine:
    def __init__(self, port_name: str, bpm: float) -> None:
        import mido

        self.mido = mido
        backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
        target = next(n for n in backend.get_output_names() if port_name in n)
        self.port = backend.open_output(target)
        self.sent: list[float] = []  # perf_counter time each tick left
        self.start_tick: int | None = None  # the number of the first tick after the last Start: beat 0
        self._tick_s = 60.0 / (bpm * 24)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = time.perf_counter()
        while not self._stop.is_set():
            while (left := due - time.perf_counter()) > 0:
                time.sleep(min(left - 0.0004, 0.002) if left > 0.0006 else 0)
            with self._lock:
                self.port.send(self.mido.Message("clock"))
                self.sent.append(time.perf_counter())
                due += self._tick_s

    def tempo(self, bpm: float) -> int:
        """Tick at `bpm` from the next tick on; returns the number of ticks sent so far."""
        with self._lock:
            self._tick_s = 60.0 / (bpm * 24)
            return len(self.sent)

    def send(self, kind: str, **fields) -> None:
        """A transport message (start, stop, continue, songpos) between two ticks."""
        with self._lock:
            self.port.send(self.mido.Message(kind, **fields))
            if kind == "start":
                self.start_tick = len(self.sent)

    def ticks(self) -> list[float]:
        """When each tick so far left."""
        with self._lock:
            return list(self.sent)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.port.close()
