"""One ABC tune -> one bar-aligned MIDI file (parse with music21, lay out the bars, write), or a counted skip."""

from __future__ import annotations

from pathlib import Path

from seqvae.codec.midi import write_notes
from seqvae.data.abc_tunes import has_repeats
from seqvae.data.bar_layout import layout_bars
from seqvae.data.music21_abc import parse_abc, score_bars

BPM = 120.0
PROGRAM = 0
VELOCITY = 80
# A tune's chord symbols are kept when there is at least one per MIN_BARS_PER_CHORD bars: a chorded tune has one
# a bar or so, while a few capitals at strain starts ("A" ... "B" ... "C", as in miscFolk's fife tunes) are labels.
MIN_BARS_PER_CHORD = 4


class TuneSkipped(Exception):
    """A tune that cannot become a MIDI file; `reason` is the counted category."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def convert_abc_text(text: str, path: str | Path, name: str = "", expand_repeats: bool = True) -> dict:
    """One ABC tune -> one MIDI file at 120 bpm, time signatures at their bar lines; facts for the index.

    Raises TuneSkipped, and writes nothing, when the tune cannot become a usable melody.
    """
    try:
        score = parse_abc(text)
    except Exception as exc:  # music21's ABC parser raises many types on bad input
        raise TuneSkipped("parse_error", f"{type(exc).__name__}: {exc}") from None
    repeat_marks = has_repeats(text)
    try:
        bars, repeats = score_bars(score, expand_repeats and repeat_marks)
        repeats = repeats if repeat_marks else "none"
    except Exception as exc:
        raise TuneSkipped("parse_error", f"{type(exc).__name__}: {exc}") from None
    if not any(bar.tones for bar in bars):
        if not bars and score.flatten().notes:
            raise TuneSkipped("no_bar_lines", "music21 makes bars only from two or more regular bar lines")
        raise TuneSkipped("no_notes")
    try:
        layout = layout_bars(bars)
    except ValueError as exc:
        raise TuneSkipped("unusable_meter", str(exc)) from None
    if not layout.notes:
        raise TuneSkipped("no_notes")
    pitches = [p for _, _, p in layout.notes]
    if min(pitches) < 0 or max(pitches) > 127:
        raise TuneSkipped("pitch_out_of_range")
    notes = [(start, end, pitch, VELOCITY) for start, end, pitch in layout.notes]
    chords = layout.chords if len(layout.chords) * MIN_BARS_PER_CHORD >= layout.bars else []
    write_notes(notes, layout.meters, path, BPM, PROGRAM, name, chords)
    return {
        "bars": layout.bars,
        "notes": len(layout.notes),
        "meters": [str(m) for _, m in layout.meters],
        "pickup_quarters": float(layout.pickup),
        "repeats": repeats,
        "pitch_range": [min(pitches), max(pitches)],
        "chord_symbols": len(chords),
        "chord_symbols_dropped_as_labels": len(layout.chords) - len(chords),
    }
