"""Band-like multi-track MIDI files, so a build benchmark pays for what real files cost.

Drums on channel 10, chords, bass, a lead from the synthetic melody writer and more, with a tempo
map and a meter change; deterministic per seed. Written with mido: a tempo map and many tracks are
more than the one-track writer in codec.midi is for.
"""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np

from seqvae.codec.events import EventCodec
from seqvae.codec.meter import Meter
from seqvae.data.synthetic import CHORD_DEGREES, SCALES, SYNTH_HIGH, SYNTH_LOW, MelodyWriter, degree_pitch

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
    scale = SCALES[int(rng.integers(len(SCALES)))]
    progression = [int(rng.integers(len(CHORD_DEGREES))) for _ in range(4)]
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
        chord = CHORD_DEGREES[progression[bar % len(progression)]]
        chord_pitches = [degree_pitch(d, tonic, scale) for d in chord]
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
            writer = MelodyWriter(steps_per_bar, rng, codec, SYNTH_LOW, SYNTH_HIGH)
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
