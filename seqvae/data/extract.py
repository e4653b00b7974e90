"""One MIDI score -> bar-aligned melody windows in the event vocabulary.

Each non-drum line is reduced to a monophonic skyline (the highest sounding note wins, and a new
onset of that top pitch re-articulates it), cut on the score's own bar lines wherever the meter
holds still, and filtered the way a melody model wants its data. All of a meter segment's windows
are cut and judged at once as one [windows, steps] array: a corpus build spends its time here.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from seqvae.codec.chords import NO_CHORD
from seqvae.codec.events import FIRST_NOTE_ON, NO_EVENT, NOTE_OFF, EventCodec, Note
from seqvae.codec.meter import Meter, family_for_window
from seqvae.codec.midi_score import MidiScore, note_columns
from seqvae.data.window_chords import chords_per_step, fill_inferred

SILENT = -1
_BEYOND = 1 << 20  # above any pitch: stands in for "no onset here" in a row's lowest and highest pitch


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


def skyline(notes: Sequence[Note], n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-step top pitch (SILENT when nothing sounds) and whether that pitch is struck there."""
    top = np.full(n_steps, SILENT, dtype=np.int16)
    struck = np.full(n_steps, SILENT, dtype=np.int16)
    pitch, start, end = note_columns(notes)
    start, end = np.maximum(start, 0), np.minimum(end, n_steps)
    keep = end > start
    pitch, start, end = pitch[keep].astype(np.int16), start[keep], end[keep]
    lengths = end - start
    steps = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths - start, lengths)
    np.maximum.at(top, steps, np.repeat(pitch, lengths))
    np.maximum.at(struck, start, pitch)
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


def _silence_runs(top: np.ndarray) -> np.ndarray:
    """Per step, how many steps of silence end there (0 where a note sounds)."""
    steps = np.arange(top.shape[0])
    last_sound = np.maximum.accumulate(np.where(top >= 0, steps, -1))
    return steps - last_sound


def _meter_segments(score: MidiScore, n_steps: int) -> list[tuple[int, int, Meter | None]]:
    bounds = [min(s, n_steps) for s, _ in score.meters] + [n_steps]
    return [(bounds[i], bounds[i + 1], meter) for i, (_, meter) in enumerate(score.meters) if bounds[i + 1] > bounds[i]]


def _cut_windows(events: np.ndarray, top: np.ndarray, starts: np.ndarray, steps: int) -> np.ndarray:
    """Windows at `starts` as rows; a note held across the bar line is struck again at a window's start."""
    windows = events[starts[:, None] + np.arange(steps)]
    first, held = windows[:, 0], top[starts]
    restrike = (held >= 0) & (first < FIRST_NOTE_ON)
    first[restrike] = held[restrike] + FIRST_NOTE_ON
    first[~restrike & (first == NOTE_OFF)] = NO_EVENT
    return windows


def _fit_range(windows: np.ndarray, codec: EventCodec) -> tuple[np.ndarray, np.ndarray]:
    """Pitch events -> codec classes, each row moved by octaves into the codec's range; and which rows fit."""
    onsets = windows >= FIRST_NOTE_ON
    if not onsets.any(axis=1).all():
        raise ValueError("a window without a note reached the pitch range check: raise min_notes above 0")
    pitches = windows.astype(np.int64) - FIRST_NOTE_ON
    lo = np.where(onsets, pitches, _BEYOND).min(axis=1)
    hi = np.where(onsets, pitches, -_BEYOND).max(axis=1)
    up = 12 * -(-(codec.min_pitch - lo) // 12)
    down = -12 * -(-(hi - codec.max_pitch) // 12)
    shift = np.where(lo < codec.min_pitch, up, np.where(hi > codec.max_pitch, down, 0))
    fits = (lo + shift >= codec.min_pitch) & (hi + shift <= codec.max_pitch)
    moved = windows + np.where(onsets, shift[:, None] - codec.min_pitch, 0)
    return moved, fits


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
    meters: list[np.ndarray] = []
    melodic = [line for line in score.lines if not line.is_drum and line.notes]
    n_steps = max([score.n_steps] + [int(note_columns(line.notes)[2].max()) for line in melodic])
    segments = _meter_segments(score, n_steps)
    written = chords_per_step(score.chords, n_steps) if rules.chords else None
    chord_rows: list[np.ndarray] = []
    all_events = []
    for line in melodic:
        top, struck = skyline(line.notes, n_steps)
        events = line_events(top, struck)
        all_events.append(events)
        silence = _silence_runs(top)
        for seg_start, seg_end, meter in segments:
            if meter is None or meter.family != rules.family or not meter.fits(rules.steps):
                if (events[seg_start:seg_end] >= FIRST_NOTE_ON).any():
                    dropped["meter"] += 1
                continue
            bar = meter.steps_per_bar
            max_gap = rules.max_gap_steps if rules.max_gap_steps is not None else bar
            starts = np.arange(seg_start, seg_end - rules.steps + 1, bar)
            if starts.size == 0:
                continue
            cut = _cut_windows(events, top, starts, rules.steps)
            few = (cut >= FIRST_NOTE_ON).sum(axis=1) < rules.needed_notes
            within = np.minimum(silence[starts[:, None] + np.arange(rules.steps)], np.arange(1, rules.steps + 1))
            gap = ~few & (within.max(axis=1) >= max_gap)
            judged = ~few & ~gap
            fitted, fits = _fit_range(cut[judged], rules.codec)
            reasons = np.where(few, 1, np.where(gap, 2, 0))
            reasons[np.flatnonzero(judged)[~fits]] = 3
            _count(dropped, reasons)
            windows.append(fitted[fits].astype(np.int8))
            meters.append(np.full((int(fits.sum()), 2), (meter.numerator, meter.denominator), dtype=np.int8))
            if written is not None:
                chord_rows.append(written[starts[judged][fits][:, None] + np.arange(rules.steps)])
    stacked = np.concatenate(windows) if windows else np.zeros((0, rules.steps), dtype=np.int8)
    meter_arr = np.concatenate(meters) if meters else np.zeros((0, 2), dtype=np.int8)
    if written is None:
        stacked, meter_arr, n_dupes = unique_rows(stacked, meter_arr)
        chords = given = None
    else:
        chords = np.concatenate(chord_rows) if chord_rows else np.zeros((0, rules.steps), dtype=np.uint8)
        given = (chords != NO_CHORD).any(axis=1)
        stacked, meter_arr, chords, given, n_dupes = unique_rows(stacked, meter_arr, chords, given)
        chords = fill_inferred(stacked, meter_arr, chords, given, rules.codec)
    if n_dupes:
        dropped["duplicate"] += n_dupes
    return Extraction(stacked, meter_arr, dropped, tune_key(all_events), len(melodic), chords, given)


DROP_REASONS = ("few_notes", "gap", "pitch_range")  # window by window, the first test failed (codes 1, 2, 3)


def _count(dropped: Counter, reasons: np.ndarray) -> None:
    """Count each window's reason, new reasons in the order their first window met them (as one by one
    would: most_common breaks ties by that order), and none that never happened."""
    codes, first = np.unique(reasons, return_index=True)
    counts = np.bincount(reasons, minlength=len(DROP_REASONS) + 1)
    for code in codes[np.argsort(first)]:
        if code:
            dropped[DROP_REASONS[code - 1]] += int(counts[code])


def unique_rows(windows: np.ndarray, *aligned: np.ndarray) -> tuple:
    """Drop repeated windows, keeping first occurrences in order; returns arrays and the count dropped."""
    if len(windows) == 0:
        return (windows, *aligned, 0)
    view = np.ascontiguousarray(windows).view(np.dtype((np.void, windows.dtype.itemsize * windows.shape[1])))
    _, first = np.unique(view.ravel(), return_index=True)
    keep = np.sort(first)
    return (windows[keep], *(a[keep] for a in aligned), len(windows) - len(keep))
