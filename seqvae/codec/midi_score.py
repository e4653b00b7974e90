"""What reading a MIDI file gives: quantized lines of notes, meters, tempo and chord symbols.

Both readers (symusic's compiled parser, mido as the fallback) return these, so everything downstream
sees one shape whichever parsed the file. A big file's notes travel as a NoteArray (columns, no Python
object per note); a list of Note works everywhere a NoteArray does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from seqvae.codec.events import Note
from seqvae.codec.meter import Meter

DRUM_CHANNEL = 9
CHORD_TEXT_PREFIX = "chord:"  # a text event "chord:Am" is a chord symbol, one no other text can be mistaken for


class MidiReadError(ValueError):
    """A MIDI file that cannot be read; the message says why."""


class NoteArray(Sequence[Note]):
    """Notes as int64 columns (pitch, start, end, velocity), in the order a list of them would have."""

    def __init__(self, pitch: np.ndarray, start: np.ndarray, end: np.ndarray, velocity: np.ndarray) -> None:
        self.pitch, self.start, self.end, self.velocity = pitch, start, end, velocity

    def __len__(self) -> int:
        return int(self.pitch.shape[0])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self)[index]
        return Note(int(self.pitch[index]), int(self.start[index]), int(self.end[index]), int(self.velocity[index]))

    def __iter__(self) -> Iterator[Note]:
        columns = (self.pitch.tolist(), self.start.tolist(), self.end.tolist(), self.velocity.tolist())
        return map(Note, *columns)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (NoteArray, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # mutable columns, like a list


def note_columns(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pitch, start, end) int64 arrays of notes given as a NoteArray or any sequence of Note."""
    if isinstance(notes, NoteArray):
        return notes.pitch, notes.start, notes.end
    table = np.array([(n.pitch, n.start, n.end) for n in notes], dtype=np.int64).reshape(-1, 3)
    return table[:, 0], table[:, 1], table[:, 2]


@dataclass
class Line:
    """The notes of one (track, channel) of a file, quantized to steps; may be polyphonic."""

    name: str
    program: int
    is_drum: bool
    notes: Sequence[Note] = field(default_factory=list)


@dataclass
class MidiScore:
    lines: list[Line]
    meters: list[tuple[int, Meter | None]]  # (first step, meter or None if unusable), sorted
    bpm: float
    n_steps: int
    chords: list[tuple[int, str]] = field(default_factory=list)  # (step, chord symbol) from chord text events


def line_name(track_name: str | None, track: int, channel: int) -> str:
    """A line's name: its track's name (the first one not blank) and channel, else its numbers."""
    if track_name and track_name.strip():
        return f"{track_name.strip()} (ch {channel + 1})"
    return f"track {track} channel {channel + 1}"
