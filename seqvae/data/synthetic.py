"""Synthetic melodies and MIDI files: fixtures for tests and benchmarks that need no real corpus.

The melodies are built from what real tunes are made of (scale runs, arpeggios, repeated motifs,
rests, detached notes, mixed rhythms) so a model trained on them has something to learn, and they
are deterministic per seed so tests can pin results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from seqvae.codec.events import NO_EVENT, NOTE_OFF, EventCodec
from seqvae.codec.meter import Meter, family_for_window

SYNTH_LOW, SYNTH_HIGH = 55, 84  # G3..C6: a singable lead range inside every sensible codec
SPLITS = ("train", "valid", "test")
WINDOWS_PER_SOURCE = 8  # synthetic "tunes": windows grouped so split-by-source code has sources to group

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_DORIAN = (0, 2, 3, 5, 7, 9, 10)
_MIXOLYDIAN = (0, 2, 4, 5, 7, 9, 10)
_SCALES = (_MAJOR, _MAJOR, _MINOR, _DORIAN, _MIXOLYDIAN)

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
_CHORD_DEGREES = ((0, 2, 4), (3, 5, 7), (4, 6, 8), (5, 7, 9), (1, 3, 5))  # I IV V vi ii as scale degrees


def _bar_steps(steps: int) -> int:
    """Bar length for a window: 4/4 bars unless only 3/4 bars fill the window."""
    if steps % 16 == 0:
        return 16
    if steps % 12 == 0:
        return 12
    return 16


def _degree_pitch(degree: int, tonic: int, scale: tuple[int, ...]) -> int:
    octave, index = divmod(degree, len(scale))
    return tonic + 12 * octave + scale[index]


def _fold_into(pitch: int, low: int, high: int) -> int:
    """Move a pitch by octaves into [low, high] (the range always spans at least an octave)."""
    while pitch > high:
        pitch -= 12
    while pitch < low:
        pitch += 12
    return pitch


class _MelodyWriter:
    """Fills one window of events bar by bar; keeps the window canonical as it goes."""

    def __init__(self, steps: int, rng: np.random.Generator, codec: EventCodec, low: int, high: int) -> None:
        self.steps = steps
        self.rng = rng
        self.codec = codec
        self.low, self.high = low, high
        self.events = np.full(steps, NO_EVENT, dtype=np.int8)
        self.tonic = int(rng.integers(low, min(low + 12, high - 11) + 1))
        self.scale = _SCALES[int(rng.integers(len(_SCALES)))]
        self.degree = int(rng.integers(0, 8))
        self.motif = [int(x) for x in rng.integers(-2, 3, size=int(rng.integers(3, 5)))]
        self.legato = float(rng.uniform(0.5, 1.0))  # share of notes held to the next onset
        self.rest_rate = float(rng.uniform(0.0, 0.15))

    def pitch(self, degree: int) -> int:
        return _fold_into(_degree_pitch(degree, self.tonic, self.scale), self.low, self.high)

    def degrees_for(self, kind: str, count: int) -> list[int]:
        rng, start = self.rng, self.degree
        if kind == "run":
            direction = 1 if rng.random() < 0.5 else -1
            return [start + direction * i for i in range(count)]
        if kind == "arpeggio":
            chord = _CHORD_DEGREES[int(rng.integers(len(_CHORD_DEGREES)))]
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
        out[row] = _MelodyWriter(steps, rng, codec, low, high).fill()
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
        np.save(directory / f"{split}.npy", windows)
        np.save(directory / f"{split}_meter.npy", meters)
        np.save(directory / f"{split}_source.npy", source_index.astype(np.int32))
        split_meta[split] = {"windows": count, "meters": {str(meter): count} if count else {}, "files": n_sources}
    meta = {  # the layout seqvae.data.build writes, so loaders and `data stats` treat both alike
        "format": 1,
        "steps": steps,
        "family": family,
        "codec": {"min_pitch": codec.min_pitch, "max_pitch": codec.max_pitch},
        "settings": {"source": "synthetic", "seed": seed},
        "files": {"found": len(sources), "used": len(sources), "skipped": {}},
        "splits": split_meta,
        "windows_dropped": {},
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (directory / "sources.json").write_text(json.dumps(sources) + "\n")
    return SyntheticCorpus(directory, counts)


# ---------------------------------------------------------------- multi-track MIDI files for benchmarks

_TICKS_PER_BEAT = 480
_ROLES = ("drums", "chords", "bass", "lead", "counter", "arpeggio", "pad", "strings")
_PROGRAMS = {"chords": 0, "bass": 33, "lead": 73, "counter": 40, "arpeggio": 46, "pad": 89, "strings": 48}


def synthetic_midi_files(directory: str | Path, n: int, seed: int, tracks: int = 8, bars: int = 64) -> list[Path]:
    """Write `n` band-like multi-track MIDI files (drums on channel 10, chords, bass, lead, ...).

    Each has tempo changes every 16 bars and switches from 4/4 to 3/4 for its last quarter, so a build
    benchmark pays for what real files cost: many tracks, polyphony, a tempo map and a meter change.
    """
    if n < 0 or tracks < 1 or bars < 4:
        raise ValueError(f"need n >= 0 files with tracks >= 1 and bars >= 4, got n={n}, tracks={tracks}, bars={bars}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(n):
        path = directory / f"synthetic_{seed}_{index:05d}.mid"
        _band_file(rng, tracks, bars).save(str(path))
        paths.append(path)
    return paths


def _bar_layout(bars: int) -> list[tuple[int, Meter]]:
    """(start tick, meter) for every bar: 4/4, then 3/4 for the last quarter of the piece."""
    change = bars - max(1, bars // 4)
    layout, tick = [], 0
    for bar in range(bars):
        meter = Meter(4, 4) if bar < change else Meter(3, 4)
        layout.append((tick, meter))
        tick += meter.numerator * _TICKS_PER_BEAT * 4 // meter.denominator
    return layout


def _band_file(rng: np.random.Generator, tracks: int, bars: int) -> mido.MidiFile:
    layout = _bar_layout(bars)
    end_tick = layout[-1][0] + layout[-1][1].numerator * _TICKS_PER_BEAT
    tonic = int(rng.integers(55, 67))
    scale = _SCALES[int(rng.integers(len(_SCALES)))]
    progression = [int(rng.integers(len(_CHORD_DEGREES))) for _ in range(4)]
    conductor: list[tuple[int, str, dict]] = []
    for bar, (tick, meter) in enumerate(layout):
        if bar == 0 or meter != layout[bar - 1][1]:
            conductor.append((tick, "time_signature", {"numerator": meter.numerator, "denominator": meter.denominator}))
        if bar % 16 == 0:
            conductor.append((tick, "set_tempo", {"tempo": mido.bpm2tempo(float(rng.uniform(84, 160)))}))
    mid = mido.MidiFile(type=1, ticks_per_beat=_TICKS_PER_BEAT)
    mid.tracks.append(_to_track("conductor", conductor, end_tick))
    channels = iter(c for c in range(16) if c != 9)
    for index in range(tracks):
        role = _ROLES[index] if index < len(_ROLES) else _ROLES[1 + (index - 1) % (len(_ROLES) - 1)]
        channel = 9 if role == "drums" else next(channels, 15)
        notes = _role_notes(role, rng, layout, tonic, scale, progression)
        events: list[tuple[int, str, dict]] = []
        if role != "drums":
            events.append((0, "program_change", {"channel": channel, "program": _PROGRAMS[role]}))
        for pitch, start, end, velocity in notes:
            events.append((start, "note_on", {"channel": channel, "note": pitch, "velocity": velocity}))
            events.append((end, "note_off", {"channel": channel, "note": pitch, "velocity": 0}))
        mid.tracks.append(_to_track(role, events, end_tick))
    return mid


def _role_notes(
    role: str, rng: np.random.Generator, layout: list[tuple[int, Meter]], tonic: int, scale: tuple[int, ...],
    progression: list[int],
) -> list[tuple[int, int, int, int]]:
    """(pitch, start tick, end tick, velocity) for one instrument over the whole piece."""
    beat, step = _TICKS_PER_BEAT, _TICKS_PER_BEAT // 4
    notes: list[tuple[int, int, int, int]] = []
    codec = EventCodec()
    for bar, (start, meter) in enumerate(layout):
        beats = meter.numerator
        chord = _CHORD_DEGREES[progression[bar % len(progression)]]
        chord_pitches = [_degree_pitch(d, tonic, scale) for d in chord]
        if role == "drums":
            for b in range(beats):
                notes.append((36 if b % 2 == 0 else 38, start + b * beat, start + b * beat + step, 100))
                for half in range(2):
                    t = start + b * beat + half * beat // 2
                    notes.append((42, t, t + step, 70 + int(rng.integers(0, 20))))
        elif role in ("chords", "pad", "strings"):
            length = beats * beat if role != "chords" else beat * 2
            for t in range(start, start + beats * beat, length):
                end = min(t + length, start + beats * beat)
                notes.extend((p, t, end, 70) for p in chord_pitches)
        elif role == "bass":
            for b in range(beats):
                pitch = chord_pitches[0 if b % 2 == 0 else 2] - 24
                notes.append((pitch, start + b * beat, start + (b + 1) * beat - step, 90))
        elif role == "arpeggio":
            for i in range(beats * 4):
                pitch = chord_pitches[i % 3] + 12
                notes.append((pitch, start + i * step, start + (i + 1) * step, 75))
        else:  # lead / counter: one synthetic melody bar, reusing the window generator
            steps_per_bar = meter.steps_per_bar
            writer = _MelodyWriter(steps_per_bar, rng, codec, SYNTH_LOW, SYNTH_HIGH)
            shift = -12 if role == "counter" else 0
            for note in codec.events_to_notes(writer.fill()):
                notes.append((note.pitch + shift, start + note.start * step, start + note.end * step, 95))
    return notes


def _to_track(name: str, events: list[tuple[int, str, dict]], end_tick: int) -> mido.MidiTrack:
    """(absolute tick, message type, fields) -> a delta-time track; note-offs sort before note-ons at one tick."""
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
    order = {"note_off": 0, "note_on": 2}
    now = 0
    for tick, kind, fields in sorted(events, key=lambda e: (e[0], order.get(e[1], 1))):
        make = mido.MetaMessage if kind in ("set_tempo", "time_signature") else mido.Message
        track.append(make(kind, time=tick - now, **fields))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - now)))
    return track
