"""A melody: events on the step grid plus what is needed to play it (meter, tempo, sound)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seqvae.codec.events import EventCodec, Note
from seqvae.codec.meter import STEPS_PER_QUARTER, Meter


@dataclass
class Melody:
    events: np.ndarray
    meter: Meter = field(default_factory=Meter)
    bpm: float = 120.0
    program: int = 0
    velocity: int = 80
    codec: EventCodec = field(default_factory=EventCodec)

    def __post_init__(self) -> None:
        self.events = self.codec.check(self.events)
        if not (1.0 <= float(self.bpm) <= 999.0) or not np.isfinite(self.bpm):
            raise ValueError(f"tempo {self.bpm} bpm is not playable: send a tempo between 1 and 999")
        if not 0 <= int(self.program) <= 127:
            raise ValueError(f"program {self.program} is not a General MIDI program: send 0..127")
        if not 1 <= int(self.velocity) <= 127:
            raise ValueError(f"velocity {self.velocity} is not a MIDI velocity: send 1..127")

    @property
    def n_steps(self) -> int:
        return int(self.events.shape[0])

    @property
    def n_bars(self) -> float:
        return self.n_steps / self.meter.steps_per_bar

    @property
    def seconds_per_step(self) -> float:
        return 60.0 / (self.bpm * STEPS_PER_QUARTER)

    def notes(self) -> list[Note]:
        return self.codec.events_to_notes(self.events, self.velocity)

    def notes_in_beats(self) -> list[tuple[int, float, float, int]]:
        """(pitch, start beat, duration in beats, velocity): what OSC clients and DAWs want."""
        return [
            (n.pitch, n.start / STEPS_PER_QUARTER, (n.end - n.start) / STEPS_PER_QUARTER, n.velocity)
            for n in self.notes()
        ]

    def notes_in_seconds(self) -> list[tuple[int, float, float, int]]:
        """(pitch, start s, duration s, velocity) at this melody's tempo."""
        sps = self.seconds_per_step
        return [(n.pitch, n.start * sps, (n.end - n.start) * sps, n.velocity) for n in self.notes()]

    @classmethod
    def from_notes(cls, notes: list[Note], n_steps: int, **kwargs) -> Melody:
        codec = kwargs.get("codec", EventCodec())
        return cls(codec.notes_to_events(notes, n_steps), **kwargs)
