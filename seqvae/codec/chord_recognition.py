"""Held notes -> the triad they spell, and chords played over time -> a progression a chord model reads.

A chord model hears only triads (codec/chords.py), so recognition looks for the triad among the held pitch
classes: the one with most of its tones held, its root held; between equals the one whose root is the lowest
note (so Cmaj7 C-E-G-B is C, not Em; Am7 A-C-E-G is Am, G7 is G, Bm7b5 is Bdim), then major before minor,
augmented and diminished (a bare fifth C-G is C). A sus chord reads as the major triad on its bass (Csus4 is C,
as the symbol parser has it). Fewer than two pitch classes are no chord.

Over time, chords are read on a grid of the meter's beat (its denominator note: a quarter in 4/4, an eighth in
6/8): in each beat the notes held for at least half as long as the longest held one count, so a chord struck
a little late or released a little early still owns its beat. A beat without a chord keeps the chord before it
(the opening beats take the first chord played), and the beats of one chord become one SYMBOL:BEATS token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from seqvae.codec.chords import NO_CHORD, QUALITIES, chord_class, chord_name, triad_pitch_classes

HELD_SHARE = 0.5  # of the longest-held note in a beat: a note held less in that beat is passing


def recognize_chord(pitches: Iterable[int]) -> int:
    """MIDI pitches sounding together -> the class of the triad they spell (NO_CHORD when none)."""
    held = sorted({int(p) for p in pitches})
    classes = {p % 12 for p in held}
    if len(classes) < 2:
        return NO_CHORD
    bass = held[0] % 12
    best, best_rank = NO_CHORD, None
    for root in sorted(classes):
        for order, quality in enumerate(QUALITIES):
            cls = chord_class(root, quality)
            present = len(classes & set(triad_pitch_classes(cls)))
            rank = (present, root == bass, -order)
            if present >= 2 and (best_rank is None or rank > best_rank):
                best, best_rank = cls, rank
    return best


def chords_per_beat(notes: Sequence[tuple[int, float, float]], beats: int, beat_length: float) -> list[int]:
    """Notes (pitch, start, end) in quarter notes from the take's start -> one chord class per beat of
    `beat_length` quarters (NO_CHORD where none was held)."""
    out = []
    for index in range(beats):
        low, high = index * beat_length, (index + 1) * beat_length
        overlaps = [(pitch, min(end, high) - max(start, low)) for pitch, start, end in notes]
        overlaps = [(pitch, length) for pitch, length in overlaps if length > 0]
        longest = max((length for _, length in overlaps), default=0.0)
        out.append(recognize_chord(p for p, length in overlaps if length >= HELD_SHARE * longest))
    return out


def progression_of(notes: Sequence[tuple[int, float, float]], beats: int, beat_length: float) -> str:
    """Chords played over `beats` beats -> 'Am:4 F:4' (module doc); a ValueError when no chord was held."""
    per_beat = chords_per_beat(notes, beats, beat_length)
    played = [cls for cls in per_beat if cls != NO_CHORD]
    if not played:
        raise ValueError("no chord was held: hold at least two notes of a chord (e.g. A C E for Am) together")
    current = played[0]
    filled = []
    for cls in per_beat:
        current = cls if cls != NO_CHORD else current
        filled.append(current)
    tokens: list[str] = []
    run = 0
    for index, cls in enumerate(filled):
        run += 1
        if index + 1 == len(filled) or filled[index + 1] != cls:
            tokens.append(f"{chord_name(cls)}:{run}")
            run = 0
    return " ".join(tokens)
