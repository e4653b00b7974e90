"""MIDI files <-> notes on the 16th-note grid.

Reading works in ticks, so quantization follows the file's own beat grid whatever its tempo map:
symusic's compiled parser where it is installed and can vouch for the result (midi_symusic), else mido,
whose reading here is the reference the fast one matches bit for bit. Writing goes through pretty_midi,
which handles tempo, program and velocity.
Writing takes times in quarter notes, so a tune off the 16th grid (triplets) keeps its timing.
Chord symbols travel as MIDI text events "chord:SYMBOL" (SMF has no chord event), so the chords of an
ABC tune reach the corpus build with its notes; melodies written with their chords get a second track of
block chords (codec/chord_track.py) beside those symbols.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import mido
import numpy as np
import pretty_midi

from seqvae.codec.atomic_files import atomic_write_bytes, write_new_bytes
from seqvae.codec.chord_track import chord_track
from seqvae.codec.events import Note
from seqvae.codec.melody import Melody
from seqvae.codec.meter import STEPS_PER_QUARTER, Meter
from seqvae.codec.midi_score import (
    CHORD_TEXT_PREFIX,
    DRUM_CHANNEL,
    Line,
    MidiReadError,
    MidiScore,
    line_name,
)
from seqvae.codec.midi_symusic import read_with_symusic

WRITE_RESOLUTION = 480  # ticks per quarter: 16ths and triplets both land on whole ticks
READABLE_SUFFIXES = (".mid", ".midi", ".kar", ".smf")  # what read_midi reads (standard MIDI files), any case
WRITTEN_SUFFIXES = (".mid", ".midi")  # what the files this package writes are called
MAX_TRACK_NAME = 120  # characters of a track name kept in a written file
MIDI_READERS = ("auto", "mido")  # auto: symusic where it can vouch for the result, else mido


def is_midi_path(path: str | Path) -> bool:
    """Whether a file's suffix says it is a MIDI file read_midi reads (.mid .midi .kar .smf, any case)."""
    return Path(path).suffix.lower() in READABLE_SUFFIXES


def read_midi(path: str | Path, reader: str = "auto") -> MidiScore:
    """Read a MIDI file into quantized lines; raises MidiReadError naming the problem.

    Both readers give the same score; `reader="mido"` skips the fast one (to check it, or to time the old way).
    """
    if reader not in MIDI_READERS:
        raise ValueError(f"unknown MIDI reader {reader!r}: use one of {', '.join(MIDI_READERS)}")
    if reader == "auto":
        try:
            score = read_with_symusic(path)
        except OSError:  # a missing or unreadable file: mido's reading names it
            score = None
        if score is not None:
            return score
    return read_with_mido(path)


def read_with_mido(path: str | Path) -> MidiScore:
    """The reference reader: every message through mido, in file order."""
    try:
        mid = mido.MidiFile(str(path), clip=True)
    except FileNotFoundError:
        raise MidiReadError(f"{path}: no such file") from None
    except Exception as exc:  # mido raises many types for corrupt data
        raise MidiReadError(f"{path}: not a readable MIDI file ({type(exc).__name__}: {exc})") from None
    if mid.type == 2:
        raise MidiReadError(f"{path}: type 2 MIDI (independent sequences) is not supported")
    if not mid.ticks_per_beat or mid.ticks_per_beat <= 0:
        raise MidiReadError(f"{path}: SMPTE time division is not supported; save with ticks per beat")
    ticks_per_step = mid.ticks_per_beat / STEPS_PER_QUARTER

    def step(tick: int) -> int:
        return int(round(tick / ticks_per_step))

    meters: dict[int, Meter | None] = {}
    tempo = None
    lines: dict[tuple[int, int], Line] = {}
    programs: dict[int, int] = defaultdict(int)
    last_tick = 0
    chords: list[tuple[int, str]] = []
    for track_index, track in enumerate(mid.tracks):
        tick = 0
        open_notes: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for msg in track:
            tick += msg.time
            kind = msg.type
            if kind == "note_on" and msg.velocity > 0:
                open_notes[(msg.channel, msg.note)].append((tick, msg.velocity))
            elif kind in ("note_off", "note_on"):
                stack = open_notes.get((msg.channel, msg.note))
                if stack:
                    start, velocity = stack.pop(0)
                    s, e = step(start), step(tick)
                    line = _line_for(lines, programs, track_index, msg.channel)
                    line.notes.append(Note(msg.note, s, max(e, s + 1), velocity))
                    last_tick = max(last_tick, tick)
            elif kind == "program_change":
                programs[msg.channel] = msg.program
            elif kind == "time_signature":
                try:
                    meters[step(tick)] = Meter(msg.numerator, msg.denominator)
                except ValueError:
                    meters[step(tick)] = None  # an unusable meter stops windows until the next one
            elif kind == "set_tempo" and tempo is None:
                tempo = mido.tempo2bpm(msg.tempo)
            elif kind == "text" and msg.text.startswith(CHORD_TEXT_PREFIX):
                chords.append((step(tick), msg.text[len(CHORD_TEXT_PREFIX):].strip()))
        for (channel, pitch), stack in open_notes.items():  # notes never released end with the track
            for start, velocity in stack:
                line = _line_for(lines, programs, track_index, channel)
                s = step(start)
                line.notes.append(Note(pitch, s, max(step(tick), s + 1), velocity))
                last_tick = max(last_tick, tick)
        _name_tracks(lines, track_index, track)
    if 0 not in meters:
        meters[0] = Meter(4, 4)  # the MIDI default when a file states none
    meter_list = sorted(meters.items(), key=lambda kv: kv[0])
    ordered = [lines[k] for k in sorted(lines)]
    for line in ordered:
        line.notes.sort(key=lambda n: (n.start, -n.pitch))
    chords.sort(key=lambda c: c[0])
    return MidiScore(ordered, meter_list, float(tempo or 120.0), step(last_tick), chords)


def _line_for(lines: dict[tuple[int, int], Line], programs: dict[int, int], track: int, channel: int) -> Line:
    key = (track, channel)
    if key not in lines:
        lines[key] = Line(line_name(None, track, channel), programs[channel], channel == DRUM_CHANNEL)
    return lines[key]


def _name_tracks(lines: dict[tuple[int, int], Line], track_index: int, track: mido.MidiTrack) -> None:
    """Give every line of a track the track's name, wherever in the track the name came."""
    for msg in track:
        if msg.type == "track_name" and msg.name.strip():
            for (ti, channel), line in lines.items():
                if ti == track_index:
                    line.name = line_name(msg.name, ti, channel)
            return


def notes_to_pretty_midi(
    notes: Iterable[tuple[float, float, int, int]],
    meters: Iterable[tuple[float, Meter]],
    bpm: float = 120.0,
    program: int = 0,
    name: str = "",
    chords: Iterable[tuple[float, str]] = (),
) -> pretty_midi.PrettyMIDI:
    """One track of (start, end, pitch, velocity) notes, (at, meter) time signatures and (at, symbol) chords.

    Times are quarter notes (int, float or Fraction), so notes off the 16th grid keep their place.

    Every time signature given is written, also one that repeats the meter before it: a reader that cuts on
    time signatures (the window pipeline) sees the same bar lines the caller laid out.
    """
    seconds = 60.0 / bpm
    pm = pretty_midi.PrettyMIDI(initial_tempo=float(bpm), resolution=WRITE_RESOLUTION)
    pm.time_signature_changes = [
        pretty_midi.TimeSignature(meter.numerator, meter.denominator, float(at) * seconds) for at, meter in meters
    ]
    track_name = name[:MAX_TRACK_NAME].encode("latin-1", "replace").decode("latin-1")  # MIDI text: a byte a character
    instrument = pretty_midi.Instrument(program=int(program), name=track_name)
    instrument.notes = [
        pretty_midi.Note(int(velocity), int(pitch), float(start) * seconds, float(end) * seconds)
        for start, end, pitch, velocity in notes
    ]
    pm.instruments.append(instrument)
    pm.text_events = [pretty_midi.Text(CHORD_TEXT_PREFIX + symbol.encode("latin-1", "replace").decode("latin-1"),
                                       float(at) * seconds) for at, symbol in chords]
    return pm


def melodies_to_pretty_midi(melodies: list[Melody], chords: Sequence[np.ndarray] | None = None
                            ) -> pretty_midi.PrettyMIDI:
    """Melodies back to back in one file, at the first melody's tempo, each bar-aligned; with `chords` (each
    melody's chord class per step, as it was played) a second track "chords" and the chord symbols."""
    if not melodies:
        raise ValueError("nothing to write: no melodies given")
    if chords is not None:
        _check_chords(melodies, chords)
    first = melodies[0]
    notes: list[tuple[float, float, int, int]] = []
    meters: list[tuple[float, Meter]] = []
    offset = 0
    for melody in melodies:
        if not meters or meters[-1][1] != melody.meter:
            meters.append((offset / STEPS_PER_QUARTER, melody.meter))
        notes += [
            ((offset + n.start) / STEPS_PER_QUARTER, (offset + n.end) / STEPS_PER_QUARTER, n.pitch, n.velocity)
            for n in melody.notes()
        ]
        offset += melody.n_steps
    if chords is None:
        return notes_to_pretty_midi(notes, meters, float(first.bpm), int(first.program), "seqvae melody")
    block_chords, symbols = chord_track(chords)
    pm = notes_to_pretty_midi(notes, meters, float(first.bpm), int(first.program), "seqvae melody", symbols)
    seconds = 60.0 / float(first.bpm)
    track = pretty_midi.Instrument(program=0, name="chords")
    track.notes = [pretty_midi.Note(velocity, pitch, start * seconds, end * seconds)
                   for start, end, pitch, velocity in block_chords]
    pm.instruments.append(track)
    return pm


def _check_chords(melodies: list[Melody], chords: Sequence[np.ndarray]) -> None:
    if len(chords) != len(melodies):
        raise ValueError(f"{len(chords)} chord parts for {len(melodies)} melodies: send one per melody")
    for i, (melody, part) in enumerate(zip(melodies, chords, strict=True)):
        if np.shape(part) != (melody.n_steps,):
            raise ValueError(f"melody {i + 1} has {melody.n_steps} steps but its chords have shape {np.shape(part)}:"
                             " send a chord class per step")


def write_notes(
    notes: Iterable[tuple[float, float, int, int]],
    meters: Iterable[tuple[float, Meter]],
    path: str | Path,
    bpm: float = 120.0,
    program: int = 0,
    name: str = "",
    chords: Iterable[tuple[float, str]] = (),
) -> Path:
    """Write notes, time signatures and chord symbols timed in quarter notes (see notes_to_pretty_midi)."""
    return _save(notes_to_pretty_midi(notes, meters, bpm, program, name, chords), path)


def write_midi(melodies: Melody | list[Melody], path: str | Path, keep_existing: bool = False,
               chords: Sequence[np.ndarray] | None = None) -> Path:
    """Write one melody, or several back to back, as a MIDI file; returns the path written. With `keep_existing`
    (a musician's takes) a file already there stays as it is and this one gets the next free name (take-2.mid).
    `chords` (per melody, a chord class per step) adds the chord track (see melodies_to_pretty_midi)."""
    items = [melodies] if isinstance(melodies, Melody) else list(melodies)
    return _save(melodies_to_pretty_midi(items, chords), path, keep_existing)


def _save(pm: pretty_midi.PrettyMIDI, path: str | Path, keep_existing: bool = False) -> Path:
    """The file appears whole or not at all (see atomic_files); with `keep_existing` under a free name."""
    buffer = io.BytesIO()
    pm.write(buffer)
    if keep_existing:
        return write_new_bytes(Path(path), buffer.getvalue())
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
