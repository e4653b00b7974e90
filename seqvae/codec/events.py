"""The MusicVAE melody event vocabulary: one class per 16th-note step.

0 = no event (the sounding note holds, or silence stays), 1 = note-off, 2.. = note-on for
min_pitch..max_pitch. A new note-on ends the note before it, so the line is monophonic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_EVENT = 0
NOTE_OFF = 1
FIRST_NOTE_ON = 2
DEFAULT_MIN_PITCH = 21
DEFAULT_MAX_PITCH = 108


@dataclass(frozen=True)
class Note:
    """A note on the step grid: [start, end) in 16th-note steps."""

    pitch: int
    start: int
    end: int
    velocity: int = 80


@dataclass(frozen=True)
class EventCodec:
    min_pitch: int = DEFAULT_MIN_PITCH
    max_pitch: int = DEFAULT_MAX_PITCH

    def __post_init__(self) -> None:
        if not 0 <= self.min_pitch <= self.max_pitch <= 127:
            raise ValueError(f"pitch range {self.min_pitch}..{self.max_pitch} must lie within 0..127")

    @property
    def num_classes(self) -> int:
        return self.max_pitch - self.min_pitch + 1 + FIRST_NOTE_ON

    def pitch_to_class(self, pitch: int) -> int:
        if not self.min_pitch <= pitch <= self.max_pitch:
            raise ValueError(f"pitch {pitch} is outside the codec range {self.min_pitch}..{self.max_pitch}")
        return pitch - self.min_pitch + FIRST_NOTE_ON

    def class_to_pitch(self, cls: int) -> int:
        return int(cls) - FIRST_NOTE_ON + self.min_pitch

    def check(self, events: np.ndarray) -> np.ndarray:
        """Events as an int array, or a clear error naming the first bad value."""
        arr = np.asarray(events)
        if arr.ndim != 1:
            raise ValueError(f"a melody is a 1-D sequence of events, got shape {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_classes):
            bad = arr[(arr < 0) | (arr >= self.num_classes)][0]
            raise ValueError(f"event {bad} is outside 0..{self.num_classes - 1} for this codec")
        return arr.astype(np.int64)

    def events_to_notes(self, events: np.ndarray, velocity: int = 80) -> list[Note]:
        """Decode events; a note still sounding at the end ends with the sequence."""
        arr = self.check(events)
        notes: list[Note] = []
        pitch, start = None, 0
        for step, ev in enumerate(arr.tolist()):
            if ev == NO_EVENT:
                continue
            if pitch is not None:
                notes.append(Note(pitch, start, step, velocity))
                pitch = None
            if ev >= FIRST_NOTE_ON:
                pitch, start = self.class_to_pitch(ev), step
        if pitch is not None:
            notes.append(Note(pitch, start, len(arr), velocity))
        return notes

    def notes_to_events(self, notes: list[Note], n_steps: int) -> np.ndarray:
        """Encode a monophonic note list; an onset cuts the note before it, notes past n_steps are clipped."""
        events = np.zeros(n_steps, dtype=np.int64)
        onsets: dict[int, Note] = {}
        for note in notes:  # two onsets on one step: the higher pitch wins
            if 0 <= note.start < n_steps and note.end > note.start:
                if note.start not in onsets or note.pitch > onsets[note.start].pitch:
                    onsets[note.start] = note
        starts = sorted(onsets)
        for i, start in enumerate(starts):
            note = onsets[start]
            events[start] = self.pitch_to_class(note.pitch)
            next_start = starts[i + 1] if i + 1 < len(starts) else n_steps
            if note.end < next_start:
                events[note.end] = NOTE_OFF
        return self.canonical(events)

    def sounding_pitches(self, events: np.ndarray) -> np.ndarray:
        """The MIDI pitch sounding at each step (-1 for silence): what a listener hears, however it is spelt
        (a held note is NO_EVENT steps after its onset)."""
        arr = self.check(events)
        out = np.full(len(arr), -1, dtype=np.int64)
        pitch = -1
        for step, ev in enumerate(arr.tolist()):
            if ev == NOTE_OFF:
                pitch = -1
            elif ev >= FIRST_NOTE_ON:
                pitch = self.class_to_pitch(ev)
            out[step] = pitch
        return out

    def canonical(self, events: np.ndarray) -> np.ndarray:
        """Drop note-offs that end nothing; the form every round trip returns."""
        arr = self.check(events).copy()
        sounding = False
        for step, ev in enumerate(arr.tolist()):
            if ev == NOTE_OFF:
                if not sounding:
                    arr[step] = NO_EVENT
                sounding = False
            elif ev >= FIRST_NOTE_ON:
                sounding = True
        return arr
