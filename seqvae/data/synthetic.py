"""Synthetic melody windows and built corpora: fixtures for tests and benchmarks that need no real corpus.

The melodies are built from what real tunes are made of (scale runs, arpeggios, repeated motifs,
rests, detached notes, mixed rhythms) so a model trained on them has something to learn, and they
are deterministic per seed so tests can pin results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqvae.codec.events import NO_EVENT, NOTE_OFF, EventCodec
from seqvae.codec.meter import Meter, family_for_window
from seqvae.data.corpus import FORMAT_VERSION, SPLITS, save_index, save_split

SYNTH_LOW, SYNTH_HIGH = 55, 84  # G3..C6: a singable lead range inside every sensible codec
WINDOWS_PER_SOURCE = 8  # synthetic "tunes": windows grouped so split-by-source code has sources to group

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_DORIAN = (0, 2, 3, 5, 7, 9, 10)
_MIXOLYDIAN = (0, 2, 4, 5, 7, 9, 10)
SCALES = (_MAJOR, _MAJOR, _MINOR, _DORIAN, _MIXOLYDIAN)

# Bar rhythms as note durations in 16th steps; every pattern fills exactly one bar.
_RHYTHMS: dict[int, tuple[tuple[int, ...], ...]] = {
    16: (
        (4, 4, 4, 4), (2, 2, 2, 2, 2, 2, 2, 2), (8, 4, 4), (4, 4, 8), (6, 2, 4, 4), (3, 1, 3, 1, 4, 4),
        (2, 2, 4, 2, 2, 4), (16,), (8, 8), (4, 2, 2, 8), (1, 1, 2, 4, 4, 4), (12, 4), (4, 4, 2, 2, 2, 2),
    ),
    12: (
        (4, 4, 4), (8, 4), (6, 6), (2, 2, 2, 2, 2, 2), (6, 2, 2, 2), (3, 1, 2, 6), (12,), (4, 2, 2, 4),
        (2, 1, 1, 2, 2, 2, 2), (6, 4, 2), (4, 8),
    ),
}
CHORD_DEGREES = ((0, 2, 4), (3, 5, 7), (4, 6, 8), (5, 7, 9), (1, 3, 5))  # I IV V vi ii as scale degrees


def _bar_steps(steps: int) -> int:
    """Bar length for a window: 4/4 bars unless only 3/4 bars fill the window."""
    if steps % 16 == 0:
        return 16
    if steps % 12 == 0:
        return 12
    return 16


def degree_pitch(degree: int, tonic: int, scale: tuple[int, ...]) -> int:
    """The MIDI pitch of a scale degree counted from `tonic` (7 = the tonic an octave up, in a 7-note scale)."""
    octave, index = divmod(degree, len(scale))
    return tonic + 12 * octave + scale[index]


def _fold_into(pitch: int, low: int, high: int) -> int:
    """Move a pitch by octaves into [low, high] (the range always spans at least an octave)."""
    while pitch > high:
        pitch -= 12
    while pitch < low:
        pitch += 12
    return pitch


class MelodyWriter:
    """Fills one window of events bar by bar; keeps the window canonical as it goes."""

    def __init__(self, steps: int, rng: np.random.Generator, codec: EventCodec, low: int, high: int) -> None:
        self.steps = steps
        self.rng = rng
        self.codec = codec
        self.low, self.high = low, high
        self.events = np.full(steps, NO_EVENT, dtype=np.int8)
        self.tonic = int(rng.integers(low, min(low + 12, high - 11) + 1))
        self.scale = SCALES[int(rng.integers(len(SCALES)))]
        self.degree = int(rng.integers(0, 8))
        self.motif = [int(x) for x in rng.integers(-2, 3, size=int(rng.integers(3, 5)))]
        self.legato = float(rng.uniform(0.5, 1.0))  # share of notes held to the next onset
        self.rest_rate = float(rng.uniform(0.0, 0.15))

    def pitch(self, degree: int) -> int:
        return _fold_into(degree_pitch(degree, self.tonic, self.scale), self.low, self.high)

    def degrees_for(self, kind: str, count: int) -> list[int]:
        rng, start = self.rng, self.degree
        if kind == "run":
            direction = 1 if rng.random() < 0.5 else -1
            return [start + direction * i for i in range(count)]
        if kind == "arpeggio":
            chord = CHORD_DEGREES[int(rng.integers(len(CHORD_DEGREES)))]
            shape = list(chord) + [chord[0] + 7]
            if rng.random() < 0.5:
                shape = shape[::-1]
            base = start - start % 7
            return [base + shape[i % len(shape)] for i in range(count)]
        if kind == "motif":
            out, degree = [], start
            for i in range(count):
                out.append(degree)
                degree += self.motif[i % len(self.motif)]
            return out
        if kind == "repeat":
            return [start if i % 2 == 0 else start + int(rng.choice((-1, 1, 2))) for i in range(count)]
        walk = np.cumsum(rng.choice((-2, -1, -1, 0, 1, 1, 2), size=count))  # stepwise wander
        return [start + int(x) for x in walk]

    def fill(self) -> np.ndarray:
        bar = _bar_steps(self.steps)
        kinds = ("run", "arpeggio", "motif", "repeat", "walk")
        motif_bar: tuple[tuple[int, ...], list[int]] | None = None
        sounding = False
        for bar_start in range(0, self.steps, bar):
            length = min(bar, self.steps - bar_start)
            if motif_bar is not None and sum(motif_bar[0]) == length and self.rng.random() < 0.35:
                rhythm, degrees = motif_bar  # a repeated bar, shifted: call and answer
                shift = int(self.rng.choice((0, 0, 2, -1, 1)))
                degrees = [d + shift for d in degrees]
            else:
                rhythm = _fit_rhythm(_RHYTHMS[bar][int(self.rng.integers(len(_RHYTHMS[bar])))], length)
                kind = kinds[int(self.rng.integers(len(kinds)))]
                degrees = self.degrees_for(kind, len(rhythm))
                motif_bar = (rhythm, degrees)
            step = bar_start
            for duration, degree in zip(rhythm, degrees, strict=True):
                if step > 0 and self.rng.random() < self.rest_rate:  # a window opens with a note
                    if sounding:
                        self.events[step] = NOTE_OFF
                        sounding = False
                else:
                    self.events[step] = self.codec.pitch_to_class(self.pitch(degree))
                    sounding = True
                    if duration >= 2 and self.rng.random() > self.legato:
                        held = int(self.rng.integers(1, duration))
                        self.events[step + held] = NOTE_OFF
                        sounding = False
                    self.degree = degree
                step += duration
        return self.events


def _fit_rhythm(rhythm: tuple[int, ...], length: int) -> tuple[int, ...]:
    """Cut a bar rhythm to a shorter (final, partial) bar."""
    out, total = [], 0
    for duration in rhythm:
        if total >= length:
            break
        out.append(min(duration, length - total))
        total += out[-1]
    return tuple(out)


def _pitch_range(codec: EventCodec) -> tuple[int, int]:
    low, high = max(SYNTH_LOW, codec.min_pitch), min(SYNTH_HIGH, codec.max_pitch)
    if high - low < 12:
        raise ValueError(
            f"codec range {codec.min_pitch}..{codec.max_pitch} leaves less than an octave of {SYNTH_LOW}..{SYNTH_HIGH} "
            "for synthetic melodies: use a codec that covers at least an octave there"
        )
    return low, high


def synthetic_windows(n: int, steps: int, seed: int, codec: EventCodec | None = None) -> np.ndarray:
    """`n` canonical melody windows of `steps` events (int8 [n, steps]), the same for the same seed."""
    if n < 0 or steps < 1:
        raise ValueError(f"need n >= 0 windows of steps >= 1, got n={n}, steps={steps}")
    codec = codec or EventCodec()
    if codec.num_classes > 127:
        raise ValueError(f"codec has {codec.num_classes} classes; int8 windows hold at most 127")
    low, high = _pitch_range(codec)
    rng = np.random.default_rng(seed)
    out = np.empty((n, steps), dtype=np.int8)
    for row in range(n):
        out[row] = MelodyWriter(steps, rng, codec, low, high).fill()
    return out


@dataclass
class SyntheticCorpus:
    """Where a synthetic built corpus was written and how many windows each split holds."""

    directory: Path
    splits: dict[str, int]


def write_synthetic_corpus(
    directory: str | Path, n_train: int, n_valid: int, n_test: int, steps: int = 32, seed: int = 0
) -> SyntheticCorpus:
    """Write a built corpus (the `seqvae data build` layout) of synthetic windows, for tests and benchmarks."""
    family = family_for_window(steps)
    meter = Meter(4, 4) if family == "duple" else Meter(3, 4)
    codec = EventCodec()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counts = dict(zip(SPLITS, (n_train, n_valid, n_test), strict=True))
    sources: list[str] = []
    split_meta: dict[str, dict] = {}
    for index, (split, count) in enumerate(counts.items()):
        windows = synthetic_windows(count, steps, int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))
        first_source = len(sources)
        n_sources = -(-count // WINDOWS_PER_SOURCE)
        sources.extend(f"synthetic/{split}_{i:05d}" for i in range(n_sources))
        source_index = first_source + np.arange(count, dtype=np.int32) // WINDOWS_PER_SOURCE
        meters = np.tile(np.array([meter.numerator, meter.denominator], np.int8), (count, 1))
        save_split(directory, split, windows, meters, source_index)
        split_meta[split] = {"windows": count, "meters": {str(meter): count} if count else {}, "files": n_sources}
    meta = {  # the meta seqvae.data.build writes, so loaders and `data stats` treat both alike
        "format": FORMAT_VERSION,
        "steps": steps,
        "family": family,
        "codec": {"min_pitch": codec.min_pitch, "max_pitch": codec.max_pitch},
        "settings": {"source": "synthetic", "seed": seed},
        "files": {"found": len(sources), "used": len(sources), "skipped": {}},
        "splits": split_meta,
        "windows_dropped": {},
    }
    save_index(directory, meta, sources)
    return SyntheticCorpus(directory, counts)


def ostinato_windows(n: int, steps: int, seed: int, codec: EventCodec | None = None) -> np.ndarray:
    """`n` windows of a style far from folk tunes (int8 [n, steps]): a high, narrow cell of two to four neighbouring
    pitches (chromatic steps allowed) repeated in even 16ths or 8ths without rests, as a minimalist ostinato. Tests
    and benchmarks of personalization use it as a user's style that the shipped models were not trained on."""
    if n < 0 or steps < 1:
        raise ValueError(f"need n >= 0 windows of steps >= 1, got n={n}, steps={steps}")
    codec = codec or EventCodec()
    low, high = max(codec.min_pitch, 84), min(codec.max_pitch, 100)
    if high - low < 6:
        raise ValueError(f"codec range {codec.min_pitch}..{codec.max_pitch} has no room for a high ostinato: "
                         "use a codec reaching at least 90")
    rng = np.random.default_rng(seed)
    out = np.full((n, steps), NO_EVENT, dtype=np.int8)
    for row in range(n):
        root = int(rng.integers(low, high - 3))
        cell = [root + int(x) for x in rng.integers(0, 4, size=int(rng.integers(2, 5)))]
        period = int(rng.choice((1, 1, 2)))
        for i, t in enumerate(range(0, steps, period)):
            out[row, t] = codec.pitch_to_class(cell[i % len(cell)])
    return out
