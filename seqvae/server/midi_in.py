"""MIDI in: phrases played on a keyboard captured into slots, and controllers (CCs) handed to the knob table.

One thread polls the port (about every millisecond) and places each message on the player's clock
by its arrival time, so a take lines up with the bar whatever the clock source. A take is armed
for the next bar line and ends a whole number of bars later; the notes played in it become one
line (the highest sounding note wins an overlap; a lower note still held when the top one ends
is struck again), quantized to 16ths. A chord take listens to one channel only and hands on every
note held there (codec/chord_recognition.py reads the chords); while it runs, its owner's melody takes
leave that channel to it, so one hand can play chords and the other a phrase. What the loop must do with
a finished take or a CC goes through callbacks: this thread touches no client state.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from seqvae.codec.meter import STEPS_PER_QUARTER
from seqvae.server.clock import Clock

log = logging.getLogger("seqvae.server")

POLL_S = 0.001
EARLY_BEATS = 0.5 / STEPS_PER_QUARTER  # a note struck up to half a 16th before the bar line counts as on it

Played = tuple[int, float, float, int]  # pitch, start beat, end beat, velocity (beats from the take's start)
TakeNote = tuple[int, int, int, int]  # pitch, start step, end step, velocity


@dataclass
class Take:
    """A recording armed for one slot: `bars` bars from the bar line at `start_beat`."""

    owner: Hashable
    slot: str
    start_beat: float
    beats: float
    played: list[Played] = field(default_factory=list)
    held: dict[int, tuple[float, int]] = field(default_factory=dict)  # pitch -> (start beat, velocity)
    channel: int | None = None  # a chord take's channel (1-16); None: every channel

    @property
    def end_beat(self) -> float:
        return self.start_beat + self.beats

    def note_on(self, pitch: int, velocity: int, beat: float) -> None:
        if pitch in self.held:  # struck again without a note-off: the first one ends here
            self.note_off(pitch, beat)
        if self.start_beat - EARLY_BEATS <= beat < self.end_beat:
            self.held[pitch] = (beat, velocity)

    def note_off(self, pitch: int, beat: float) -> None:
        started = self.held.pop(pitch, None)
        if started is not None:
            self.played.append((pitch, started[0] - self.start_beat, min(beat, self.end_beat) - self.start_beat,
                                started[1]))

    def release(self) -> list[Played]:
        """Every note played in the take; notes still held end with it."""
        for pitch in list(self.held):
            self.note_off(pitch, self.end_beat)
        return self.played

    def close(self) -> list[TakeNote]:
        """The take as one quantized line."""
        return line_of(self.release(), round(self.beats * STEPS_PER_QUARTER))


def line_of(played: list[Played], n_steps: int) -> list[TakeNote]:
    """Quantize notes to 16ths and keep one line: on each step the highest sounding note.

    A note that comes back on top after a higher one ends is struck again there, so the line sounds
    as a monophonic synth with high-note priority would play it.
    """
    quantized = []
    for pitch, start, end, velocity in played:
        first = max(0, round(start * STEPS_PER_QUARTER))
        last = min(n_steps, max(first + 1, round(end * STEPS_PER_QUARTER)))
        if first < n_steps:
            quantized.append((pitch, first, last, velocity))
    owner: list[int | None] = [None] * n_steps
    for index, (pitch, first, last, _) in enumerate(quantized):
        for step in range(first, last):
            other = owner[step]
            if other is None or (pitch, first) > (quantized[other][0], quantized[other][1]):
                owner[step] = index
    line: list[TakeNote] = []
    for step, index in enumerate(owner):
        if index is None:
            continue
        pitch, _, _, velocity = quantized[index]
        if step > 0 and owner[step - 1] == index:
            line[-1] = (pitch, line[-1][1], step + 1, velocity)
        else:
            line.append((pitch, step, step + 1, velocity))
    return line


def take_messages(notes: list[TakeNote]) -> list[float]:
    """A take's notes as the numbers `/seqvae/encode` takes: pitch, start beat, duration, velocity per note."""
    flat: list[float] = []
    for pitch, first, last, velocity in notes:
        flat += [pitch, first / STEPS_PER_QUARTER, (last - first) / STEPS_PER_QUARTER, velocity]
    return flat


class MidiIn:
    """A polled MIDI input: takes for `record`, chord takes for `chords_from_midi`, controllers for the knob table.

    `on_take(take, notes)` runs on this thread when a take ends, `on_chords(take, played)` when a chord take
    ends; `on_cc(channel, cc, value)` for each controller (channel counted from 1). All must only hand work to
    the loop.
    """

    def __init__(self, port: Any, clock: Clock, on_take: Callable[[Take, list[TakeNote]], None],
                 on_cc: Callable[[int, int, int], None], name: str = "",
                 on_chords: Callable[[Take, list[Played]], None] | None = None) -> None:
        self.port = port
        self.name = name
        self.clock = clock
        self.on_take = on_take
        self.on_cc = on_cc
        self.on_chords = on_chords
        self._lock = threading.Lock()
        self._takes: dict[tuple[Hashable, str], Take] = {}
        self._chord_takes: dict[Hashable, Take] = {}  # one per owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seqvae-midi-in", daemon=True)
        self._thread.start()

    def arm(self, owner: Hashable, slot: str, bars: int, bar_beats: float, now: float | None = None) -> Take:
        """Record `bars` bars into `slot` from the clock's next bar line; replaces a take armed for that slot."""
        take = self._next_take(owner, slot, bars, bar_beats, now)
        with self._lock:
            self._takes[(owner, slot)] = take
        return take

    def arm_chords(self, owner: Hashable, channel: int, bars: int, bar_beats: float, now: float | None = None
                   ) -> Take:
        """Record the notes held on `channel` for `bars` bars from the next bar line (replacing the owner's chord
        take): the chords of a progression."""
        take = self._next_take(owner, "", bars, bar_beats, now)
        take.channel = channel
        with self._lock:
            self._chord_takes[owner] = take
        return take

    def _next_take(self, owner: Hashable, slot: str, bars: int, bar_beats: float, now: float | None) -> Take:
        beat = self.clock.beat_at(time.perf_counter() if now is None else now)
        start = math.ceil(beat / bar_beats - 1e-9) * bar_beats
        return Take(owner, slot, start, bars * bar_beats)

    def cancel(self, owner: Hashable, slot: str | None = None) -> list[str]:
        """Drop the owner's armed takes (one slot, or all, its chord take too); the slots they name."""
        with self._lock:
            keys = [key for key in self._takes if key[0] == owner and (slot is None or key[1] == slot)]
            for key in keys:
                del self._takes[key]
            if slot is None:
                self._chord_takes.pop(owner, None)
        return [key[1] for key in keys]

    def chords_armed(self, owner: Hashable) -> bool:
        """Whether the owner has a chord take armed."""
        with self._lock:
            return owner in self._chord_takes

    def owners(self) -> set[Hashable]:
        """Who has a take armed."""
        with self._lock:
            return {key[0] for key in self._takes} | set(self._chord_takes)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.port.close_port()

    def receive(self, data: list[int], at: float) -> None:
        """One MIDI message (raw bytes) that arrived at perf_counter time `at`."""
        if not data:
            return
        kind, channel = data[0] & 0xF0, (data[0] & 0x0F) + 1
        if kind == 0xB0 and len(data) >= 3:
            self.on_cc(channel, data[1], data[2])
            return
        if kind not in (0x80, 0x90) or len(data) < 3:
            return
        beat = self.clock.beat_at(at)
        with self._lock:
            chord_takes = [take for take in self._chord_takes.values() if take.channel == channel]
            chording = {take.owner for take in chord_takes}  # their melody takes leave this channel to the chords
            takes = [take for take in self._takes.values() if take.owner not in chording] + chord_takes
        for take in takes:
            if kind == 0x90 and data[2] > 0:
                take.note_on(data[1], data[2], beat)
            else:
                take.note_off(data[1], beat)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.port.get_message()
                while message is not None:
                    self.receive(message[0], time.perf_counter())
                    message = self.port.get_message()
                self._finish_due(self.clock.beat_at(time.perf_counter()))
            except Exception:  # a bad message or a failing callback must not end MIDI in
                log.exception("MIDI in failed on a message")
            self._stop.wait(POLL_S)

    def _finish_due(self, beat: float) -> None:
        with self._lock:
            due = [key for key, take in self._takes.items() if beat >= take.end_beat]
            finished = [self._takes.pop(key) for key in due]
            chords_due = [owner for owner, take in self._chord_takes.items() if beat >= take.end_beat]
            chords_finished = [self._chord_takes.pop(owner) for owner in chords_due]
        for take in chords_finished:  # first: a melody take ending with it is encoded under its chords
            if self.on_chords is not None:
                self.on_chords(take, take.release())
        for take in finished:
            self.on_take(take, take.close())
