"""One MIDI score -> bar-aligned melody windows in the event vocabulary.

Each non-drum line is reduced to a monophonic skyline (the highest sounding note wins, and a new
onset of that top pitch re-articulates it), cut on the score's own bar lines wherever the meter
holds still, and filtered the way a melody model wants its data.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from seqvae.codec.chords import NO_CHORD
from seqvae.codec.events import FIRST_NOTE_ON, NO_EVENT, NOTE_OFF, EventCodec, Note
from seqvae.codec.meter import Meter, family_for_window
from seqvae.codec.midi import MidiScore
from seqvae.data.window_chords import chords_per_step, fill_inferred

SILENT = -1


@dataclass(frozen=True)
class WindowRules:
    """What makes a usable training window."""

    steps: int = 32
    min_notes: int | None = None  # default: one note per 8 steps (4 in a 2-bar 4/4 window)
    max_gap_steps: int | None = None  # default: a silence of a whole bar of the window's meter drops it
    codec: EventCodec = field(default_factory=EventCodec)
    chords: bool = False  # also give every window its chords (written where the file has them, else inferred)

    def __post_init__(self) -> None:
        family_for_window(self.steps)  # validates the window length

    @property
    def family(self) -> str:
        return family_for_window(self.steps)

    @property
    def needed_notes(self) -> int:
        return self.min_notes if self.min_notes is not None else max(2, self.steps // 8)


@dataclass
class Extraction:
    """Windows from one file, plus why the rest were dropped."""

    windows: np.ndarray  # int8 [N, steps]
    meters: np.ndarray  # int8 [N, 2]
    dropped: Counter
    tune_key: str  # transposition-invariant fingerprint of the file's melodic content
    n_lines: int
    chords: np.ndarray | None = None  # uint8 [N, steps] chord class per step, when the rules ask for chords
    chords_given: np.ndarray | None = None  # bool [N]: the file's own chord symbols (else inferred)


def skyline(notes: list[Note], n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-step top pitch (SILENT when nothing sounds) and whether that pitch is struck there."""
    top = np.full(n_steps, SILENT, dtype=np.int16)
    struck = np.full(n_steps, SILENT, dtype=np.int16)
    for note in notes:
        start, end = max(note.start, 0), min(note.end, n_steps)
        if end <= start:
            continue
        np.maximum(top[start:end], note.pitch, out=top[start:end])
        if note.pitch > struck[start]:
            struck[start] = note.pitch
    return top, struck == top


def line_events(top: np.ndarray, struck: np.ndarray) -> np.ndarray:
    """Pitch-valued events for a skyline: 0 hold, 1 off, pitch + FIRST_NOTE_ON for an onset."""
    previous = np.concatenate([[SILENT], top[:-1]])
    onset = (top >= 0) & ((top != previous) | struck)
    off = (top < 0) & (previous >= 0)
    events = np.zeros(top.shape[0], dtype=np.int16)
    events[off] = NOTE_OFF
    events[onset] = top[onset] + FIRST_NOTE_ON
    return events


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    padded = np.concatenate([[0], mask.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def _meter_segments(score: MidiScore, n_steps: int) -> list[tuple[int, int, Meter | None]]:
    bounds = [min(s, n_steps) for s, _ in score.meters] + [n_steps]
    return [(bounds[i], bounds[i + 1], meter) for i, (_, meter) in enumerate(score.meters) if bounds[i + 1] > bounds[i]]


def _window_from(events: np.ndarray, top: np.ndarray, start: int, steps: int) -> np.ndarray:
    """Slice a window; a note held across the bar line is struck again at the window's start."""
    window = events[start : start + steps].copy()
    if top[start] >= 0 and window[0] < FIRST_NOTE_ON:
        window[0] = top[start] + FIRST_NOTE_ON
    elif window[0] == NOTE_OFF:
        window[0] = NO_EVENT
    return window


def _fit_range(window: np.ndarray, codec: EventCodec) -> np.ndarray | None:
    """Pitch events -> codec classes, moved by octaves into the codec's range; None if it can't fit."""
    onsets = window >= FIRST_NOTE_ON
    pitches = window[onsets] - FIRST_NOTE_ON
    lo, hi = int(pitches.min()), int(pitches.max())
    shift = 0
    if lo < codec.min_pitch:
        shift = 12 * -(-(codec.min_pitch - lo) // 12)
    elif hi > codec.max_pitch:
        shift = -12 * -(-(hi - codec.max_pitch) // 12)
    if lo + shift < codec.min_pitch or hi + shift > codec.max_pitch:
        return None
    out = window.copy()
    out[onsets] = pitches + shift - codec.min_pitch + FIRST_NOTE_ON
    return out


def tune_key(lines_events: list[np.ndarray]) -> str:
    """Fingerprint of onset times and intervals: the same tune in another key or file matches."""
    digest = hashlib.blake2b(digest_size=12)
    for events in lines_events:
        steps = np.flatnonzero(events >= FIRST_NOTE_ON)
        if steps.size:
            pitches = events[steps].astype(np.int32)
            digest.update(steps.astype(np.int32).tobytes())
            digest.update((pitches - pitches[0]).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def extract_windows(score: MidiScore, rules: WindowRules) -> Extraction:
    """All usable windows of every non-drum line of a score, bar-aligned, one-bar hop."""
    dropped: Counter = Counter()
    windows: list[np.ndarray] = []
    meters: list[tuple[int, int]] = []
    melodic = [line for line in score.lines if not line.is_drum and line.notes]
    n_steps = max([score.n_steps] + [n.end for line in melodic for n in line.notes])
    segments = _meter_segments(score, n_steps)
    written = chords_per_step(score.chords, n_steps) if rules.chords else None
    chord_rows: list[np.ndarray] = []
    all_events = []
    for line in melodic:
        top, struck = skyline(line.notes, n_steps)
        events = line_events(top, struck)
        all_events.append(events)
        for seg_start, seg_end, meter in segments:
            if meter is None or meter.family != rules.family or not meter.fits(rules.steps):
                if (events[seg_start:seg_end] >= FIRST_NOTE_ON).any():
                    dropped["meter"] += 1
                continue
            bar = meter.steps_per_bar
            max_gap = rules.max_gap_steps if rules.max_gap_steps is not None else bar
            for start in range(seg_start, seg_end - rules.steps + 1, bar):
                window = _window_from(events, top, start, rules.steps)
                n_notes = int((window >= FIRST_NOTE_ON).sum())
                if n_notes < rules.needed_notes:
                    dropped["few_notes"] += 1
                    continue
                if _longest_run(top[start : start + rules.steps] < 0) >= max_gap:
                    dropped["gap"] += 1
                    continue
                fitted = _fit_range(window, rules.codec)
                if fitted is None:
                    dropped["pitch_range"] += 1
                    continue
                windows.append(fitted.astype(np.int8))
                meters.append((meter.numerator, meter.denominator))
                if written is not None:
                    chord_rows.append(written[start : start + rules.steps])
    stacked = np.stack(windows) if windows else np.zeros((0, rules.steps), dtype=np.int8)
    meter_arr = np.array(meters, dtype=np.int8).reshape(-1, 2)
    if written is None:
        stacked, meter_arr, n_dupes = unique_rows(stacked, meter_arr)
        chords = given = None
    else:
        chords = np.stack(chord_rows) if chord_rows else np.zeros((0, rules.steps), dtype=np.uint8)
        given = (chords != NO_CHORD).any(axis=1)
        stacked, meter_arr, chords, given, n_dupes = unique_rows(stacked, meter_arr, chords, given)
        chords = fill_inferred(stacked, meter_arr, chords, given, rules.codec)
    if n_dupes:
        dropped["duplicate"] += n_dupes
    return Extraction(stacked, meter_arr, dropped, tune_key(all_events), len(melodic), chords, given)


def unique_rows(windows: np.ndarray, *aligned: np.ndarray) -> tuple:
    """Drop repeated windows, keeping first occurrences in order; returns arrays and the count dropped."""
    if len(windows) == 0:
        return (windows, *aligned, 0)
    view = np.ascontiguousarray(windows).view(np.dtype((np.void, windows.dtype.itemsize * windows.shape[1])))
    _, first = np.unique(view.ravel(), return_index=True)
    keep = np.sort(first)
    return (windows[keep], *(a[keep] for a in aligned), len(windows) - len(keep))
