"""Turning what a musician has (a MIDI file, a list of notes) into a melody the model can read.

A model hears one fixed window (e.g. 2 bars of 4/4 = 32 steps). A file may hold several lines
or many bars; instead of guessing, ambiguous input gets an error listing the choices (which
track, which bar), and a chosen line longer than the window is cut to the window at that bar, or
read whole as a clip (`clip_from_midi`, `clip_from_notes`: engine/clips.py plays it window by
window). No torch here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqvae.codec import EventCodec, Melody, Meter, Note, read_midi
from seqvae.codec.meter import STEPS_PER_QUARTER
from seqvae.codec.midi import Line, MidiScore
from seqvae.models.checkpoint import CHECKPOINTS_DIR, shipped_models

DEFAULT_METERS = {"duple": Meter(4, 4), "triple": Meter(3, 4)}
MAX_CLIP_WINDOWS = 64  # a clip's windows go through the model in one call: 128 bars of 4/4 on the default model


def default_meter(steps: int, family: str | None) -> Meter:
    """The meter melodies made from scratch get: 4/4 for duple windows, 3/4 for triple ones
    (as the corpus builder labels them)."""
    meter = DEFAULT_METERS.get(family or "", None)
    if meter is None or not meter.fits(steps):
        for candidate in DEFAULT_METERS.values():
            if candidate.fits(steps):
                return candidate
        raise ValueError(f"no standard meter fills a {steps}-step window")
    return meter


@dataclass(frozen=True)
class Bar:
    number: int  # 1-based, as a musician counts
    start: int  # step
    meter: Meter | None


def bars_of(score: MidiScore) -> list[Bar]:
    """Every bar of the file in order, following its time-signature changes."""
    bars: list[Bar] = []
    end_of_file = max(score.n_steps, 1)
    for index, (start, meter) in enumerate(score.meters):
        seg_end = score.meters[index + 1][0] if index + 1 < len(score.meters) else end_of_file
        length = meter.steps_per_bar if meter is not None else max(seg_end - start, 1)
        step = start
        while step < seg_end or (step == start and index + 1 == len(score.meters)):
            bars.append(Bar(len(bars) + 1, step, meter))
            step += length
    return bars


def _describe_line(number: int, line: Line, bars: list[Bar]) -> str:
    first = _bar_at(bars, line.notes[0].start).number
    last = _bar_at(bars, max(n.end for n in line.notes) - 1).number
    return f"{number} = '{line.name}' ({len(line.notes)} notes, bars {first}-{last})"


def _bar_at(bars: list[Bar], step: int) -> Bar:
    found = bars[0]
    for bar in bars:
        if bar.start > step:
            break
        found = bar
    return found


def candidate_lines(score: MidiScore) -> list[Line]:
    """The lines that could be a melody: pitched (not drums) and not empty."""
    return [line for line in score.lines if not line.is_drum and line.notes]


def choose_line(score: MidiScore, path: str | Path, track: int | str | None) -> tuple[int, Line]:
    """(1-based number, line) for `track`; an error listing the lines when the choice is unclear."""
    lines = candidate_lines(score)
    if not lines:
        drums = any(line.is_drum and line.notes for line in score.lines)
        why = "only drum notes (channel 10)" if drums else "no notes"
        raise ValueError(f"{path}: has {why}; send a file with a melodic line")
    bars = bars_of(score)
    listing = "; ".join(_describe_line(i + 1, line, bars) for i, line in enumerate(lines))
    if track is None:
        if len(lines) == 1:
            return 1, lines[0]
        raise ValueError(f"{path}: has {len(lines)} candidate lines, choose one with track (--track N): {listing}")
    if isinstance(track, str) and not track.strip().lstrip("-").isdigit():
        matches = [i for i, line in enumerate(lines) if track.strip().lower() in line.name.lower()]
        if len(matches) != 1:
            how = "no line" if not matches else f"{len(matches)} lines"
            raise ValueError(f"{path}: track {track!r} matches {how}; send a number or a unique name: {listing}")
        return matches[0] + 1, lines[matches[0]]
    number = _numbered_choice(track, len(lines), "track", path, f": {listing}")
    return number, lines[number - 1]


def _numbered_choice(value: object, count: int, what: str, path: str | Path, details: str = "") -> int:
    """A 1-based choice among `count` (track, bar), or an error that says the valid numbers."""
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {what} {value!r} is not a {what} number: send 1..{count}{details}") from None
    if not 1 <= number <= count:
        raise ValueError(f"{path}: {what} {number} does not exist; send 1..{count}{details}")
    return number


def _ranges(numbers: Sequence[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> '1-3, 7, 9-10'."""
    parts: list[str] = []
    start = prev = None
    for n in list(numbers) + [None]:
        if start is not None and (n is None or n != prev + 1):
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if n is not None and start is None:
            start = n
        prev = n
    return ", ".join(parts)


def _fold_pitch(pitch: int, codec: EventCodec) -> int:
    """Move a pitch by octaves into the codec's range (keeps its pitch class)."""
    while pitch < codec.min_pitch:
        pitch += 12
    while pitch > codec.max_pitch:
        pitch -= 12
    return pitch


def _window_melody(line: Line, start: int, steps: int, meter: Meter, bpm: float, codec: EventCodec) -> Melody:
    notes = [
        Note(_fold_pitch(n.pitch, codec), n.start - start, n.end - start, n.velocity)
        for n in line.notes
        if start <= n.start < start + steps
    ]
    velocity = int(np.clip(round(float(np.median([n.velocity for n in notes]))), 1, 127)) if notes else 80
    return Melody(
        codec.notes_to_events(notes, steps), meter=meter, bpm=float(np.clip(bpm, 1.0, 999.0)),
        program=int(line.program), velocity=velocity, codec=codec,
    )


def _window_starts(bars: list[Bar], steps: int) -> list[Bar]:
    return [bar for bar in bars if bar.meter is not None and bar.meter.fits(steps)]


def _meter_problem(bar: Bar, steps: int, path: str | Path) -> str:
    meter = "an unusable time signature" if bar.meter is None else str(bar.meter)
    fits = ", ".join(f"{m}" for m in (Meter(4, 4), Meter(2, 4), Meter(3, 4), Meter(6, 8)) if m.fits(steps))
    suggestion = "use a model of the matching meter family"
    others = shipped_models_for(bar.meter) if bar.meter is not None else []
    if others:
        suggestion += ": the shipped " + " or ".join(f"--model {name}" for name in others)
    return (f"{path}: bar {bar.number} is in {meter}, whose bars do not fill this model's {steps}-step window; "
            f"the model reads {fits} ({suggestion})")


def shipped_models_for(meter: Meter) -> list[str]:
    """Shipped models whose window this meter's bars fill (for error messages)."""
    names = []
    for name in shipped_models():
        try:
            steps = int(json.loads((CHECKPOINTS_DIR / name / "config.json").read_text())["config"]["steps"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if meter.fits(steps):
            names.append(name)
    return names


def melody_from_midi(path: str | Path, steps: int, codec: EventCodec, track: int | str | None = None,
                     bar: int | None = None) -> Melody:
    """One window of one line of a MIDI file, as the model reads it.

    `track` is the 1-based number (or a unique part of the name) of a candidate line, needed when
    the file has several; `bar` is the 1-based bar where the window starts, needed when the line
    is longer than the window. Polyphony is reduced to the top line, pitches are folded by
    octaves into the codec's range.
    """
    score = read_midi(path)
    _, line = choose_line(score, path, track)
    bars = bars_of(score)
    starts = _window_starts(bars, steps)
    if bar is None:
        first = _bar_at(bars, line.notes[0].start)
        if first.meter is None or not first.meter.fits(steps):
            raise ValueError(_meter_problem(first, steps, path))
        last_onset = max(n.start for n in line.notes)
        if last_onset < first.start + steps:
            return _window_melody(line, first.start, steps, first.meter, score.bpm, codec)
        last = _bar_at(bars, last_onset)
        useful = [b.number for b in starts if first.number <= b.number <= last.number]
        bars_per_window = steps // first.meter.steps_per_bar
        raise ValueError(
            f"{path}: the line '{line.name}' spans bars {first.number}-{last.number} but the model hears "
            f"{bars_per_window} bars ({steps} steps) at a time; choose where to start with bar (--bar N), "
            f"one of {_ranges(useful)}"
        )
    chosen = bars[_numbered_choice(bar, len(bars), "bar", path, f" (the file has {len(bars)} bars)") - 1]
    if chosen.meter is None or not chosen.meter.fits(steps):
        raise ValueError(_meter_problem(chosen, steps, path))
    return _window_melody(line, chosen.start, steps, chosen.meter, score.bpm, codec)


def clip_from_midi(path: str | Path, steps: int, codec: EventCodec, track: int | str | None = None) -> Melody:
    """One line of a MIDI file whole, from the bar of its first note to the bar of its last onset.

    A line that fits in one window reads exactly as `melody_from_midi` reads it (a full window); a
    longer one is a clip of whole bars, for engine/clips.py (a last note ringing past its bar is cut
    at the clip's end, as a DAW clip cuts it). Every bar of the clip must be in one
    meter whose bars fill the model's window: a meter change mid-line gets an error naming the bars
    (read one window with bar / --bar N instead).
    """
    score = read_midi(path)
    _, line = choose_line(score, path, track)
    bars = bars_of(score)
    first = _bar_at(bars, line.notes[0].start)
    last = _bar_at(bars, max(n.start for n in line.notes))
    for bar in bars[first.number - 1:last.number]:
        if bar.meter != first.meter:
            raise ValueError(
                f"{path}: the line '{line.name}' changes meter at bar {bar.number} ({first.meter} -> {bar.meter}); "
                f"a clip keeps one meter: read bars {first.number}-{bar.number - 1} or from bar {bar.number} "
                "one window at a time with bar (--bar N)"
            )
    if first.meter is None or not first.meter.fits(steps):
        raise ValueError(_meter_problem(first, steps, path))
    n_steps = max(steps, (last.number - first.number + 1) * first.meter.steps_per_bar)
    _check_clip_length(n_steps, steps, first.meter, f"{path}: the line '{line.name}' (bars {first.number}-"
                       f"{last.number})")
    return _window_melody(line, first.start, n_steps, first.meter, score.bpm, codec)


def _check_clip_length(n_steps: int, steps: int, meter: Meter, what: str) -> None:
    if n_steps > MAX_CLIP_WINDOWS * steps:
        most = MAX_CLIP_WINDOWS * steps // meter.steps_per_bar
        raise ValueError(f"{what} is {n_steps // meter.steps_per_bar} bars long; a clip may be at most {most} bars "
                         f"({MAX_CLIP_WINDOWS} windows): send a shorter part, or one window with bar (--bar N)")


@dataclass
class MidiWindow:
    """One window cut from a file, labelled so a listing or a map can say where it came from."""

    path: str
    track: int
    line_name: str
    bar: int
    melody: Melody

    @property
    def label(self) -> str:
        return f"{Path(self.path).name} track {self.track} bar {self.bar}"


def windows_from_midi(path: str | Path, steps: int, codec: EventCodec, track: int | str | None = None,
                      skip_empty: bool = True) -> list[MidiWindow]:
    """Every non-overlapping window of every candidate line (or of `track`), for maps and novelty.

    Windows start on bar lines whose meter fills the window, from the bar of each line's first
    note; empty windows are skipped.
    """
    score = read_midi(path)
    if track is not None:
        chosen = [choose_line(score, path, track)]
    else:
        lines = candidate_lines(score)
        if not lines:
            choose_line(score, path, None)  # raises the clear "no melodic line" error
        chosen = list(enumerate(lines, start=1))
    bars = bars_of(score)
    out: list[MidiWindow] = []
    for number, line in chosen:
        last_onset = max(n.start for n in line.notes)
        next_free = _bar_at(bars, line.notes[0].start).start
        for b in bars:
            if b.start < next_free or b.start > last_onset:
                continue
            if b.meter is None or not b.meter.fits(steps):
                continue
            melody = _window_melody(line, b.start, steps, b.meter, score.bpm, codec)
            next_free = b.start + steps
            if skip_empty and not melody.notes():
                continue
            out.append(MidiWindow(str(path), number, line.name, b.number, melody))
    return out


def melody_from_notes(notes: Sequence[Sequence[float]], steps: int, codec: EventCodec, meter: Meter,
                      bpm: float = 120.0, program: int = 0) -> Melody:
    """A melody from (pitch, start_beat, duration_beats, velocity) tuples, beats being quarter notes.

    Times are rounded to the 16th-note grid; a note must start inside the window. The melody's
    single velocity is the median of the notes' velocities.
    """
    window_beats = steps / STEPS_PER_QUARTER
    limit = f"this model's window of {window_beats:g} beats ({steps} 16th steps)"
    events_notes = _grid_notes(notes, codec, steps, limit)
    return _melody_of(events_notes, steps, codec, meter, bpm, program)


def clip_from_notes(notes: Sequence[Sequence[float]], steps: int, codec: EventCodec, meter: Meter,
                    bpm: float = 120.0, program: int = 0) -> Melody:
    """As `melody_from_notes`, but notes may start past one window: a clip of whole bars up to the bar of the last
    onset (at least one window; a last note ringing past its bar is cut there)."""
    most = MAX_CLIP_WINDOWS * steps
    limit = f"the longest clip, {most / STEPS_PER_QUARTER:g} beats ({MAX_CLIP_WINDOWS} windows)"
    events_notes = _grid_notes(notes, codec, most, limit)
    last_onset = max((n.start for n in events_notes), default=0)
    n_steps = max(steps, (last_onset // meter.steps_per_bar + 1) * meter.steps_per_bar)
    return _melody_of(events_notes, min(n_steps, most), codec, meter, bpm, program)


def _melody_of(notes: list[Note], n_steps: int, codec: EventCodec, meter: Meter, bpm: float, program: int
               ) -> Melody:
    """The notes' median velocity is the melody's single velocity."""
    velocity = int(round(float(np.median([n.velocity for n in notes])))) if notes else 80
    return Melody(codec.notes_to_events(notes, n_steps), meter=meter, bpm=float(bpm), program=int(program),
                  velocity=velocity, codec=codec)


def _grid_notes(notes: Sequence[Sequence[float]], codec: EventCodec, steps: int, limit: str) -> list[Note]:
    """Checked (pitch, start_beat, duration_beats, velocity) tuples on the 16th grid, starting before `steps`."""
    window_beats = steps / STEPS_PER_QUARTER
    events_notes: list[Note] = []
    for index, item in enumerate(notes):
        try:
            pitch, start_beat, dur_beats, velocity = item
            pitch_i, start_f, dur_f, vel_i = int(pitch), float(start_beat), float(dur_beats), int(velocity)
        except (TypeError, ValueError):
            raise ValueError(
                f"note {index + 1} is {item!r}: send each note as (pitch, start_beat, duration_beats, velocity)"
            ) from None
        if pitch_i != pitch or not codec.min_pitch <= pitch_i <= codec.max_pitch:
            raise ValueError(f"note {index + 1}: pitch {pitch} is outside {codec.min_pitch}..{codec.max_pitch}")
        if not (np.isfinite(start_f) and 0.0 <= start_f < window_beats):
            raise ValueError(
                f"note {index + 1}: start beat {start_beat} is outside {limit}: send starts from 0 up to below "
                f"{window_beats:g}"
            )
        if not (np.isfinite(dur_f) and dur_f > 0):
            raise ValueError(f"note {index + 1}: duration {dur_beats} beats must be a positive number of beats")
        if not 1 <= vel_i <= 127:
            raise ValueError(f"note {index + 1}: velocity {velocity} is not a MIDI velocity: send 1..127")
        start = int(round(start_f * STEPS_PER_QUARTER))
        if start >= steps:  # rounding can push a note starting just before the end onto the end
            start = steps - 1
        end = max(int(round((start_f + dur_f) * STEPS_PER_QUARTER)), start + 1)
        events_notes.append(Note(pitch_i, start, end, vel_i))
    return events_notes
