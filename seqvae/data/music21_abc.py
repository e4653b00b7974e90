"""music21's ABC parser -> the measures of a tune's melody as Bars (notated times, repeats expanded).

A bar keeps the tune's chord symbols too ("Am" in quotes). music21 reads every quoted string as a chord
symbol, dynamics ("f", "p") and fingerings ("4") included; only what ABC calls a chord symbol (a capital
A-G root, or N.C.) that parse_chord reads is kept.

music21 is imported only when a tune is parsed, and its warnings about ABC it tolerates are kept off
the terminal: the folk index records what matters.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from fractions import Fraction

from seqvae.codec.chords import parse_chord
from seqvae.codec.meter import Meter
from seqvae.data.bar_layout import Bar, Tone

_MUSIC21_FLAT = re.compile(r"(^|/)([A-G])-")  # music21 spells ABC's "Bb" as "B-" (and "Gm/Bb" as "Gm/B-")


@contextlib.contextmanager
def _quiet():
    """As a decorator: the function runs with warnings ignored and stdout/stderr swallowed."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        yield


@_quiet()
def parse_abc(text: str):
    """music21's ABC parser on one tune's text -> a music21 Score."""
    from music21 import abcFormat
    from music21.abcFormat import translate

    handler = abcFormat.ABCHandler()
    handler.process(text)
    with _without_beaming():
        return translate.abcToStreamScore(handler)


def _keep_stream(stream, *args, **kwargs):
    return stream


@contextlib.contextmanager
def _without_beaming():
    """Beams are engraving, not music: skipping music21's beaming halves the ABC parse time."""
    from music21 import stream

    original = stream.Stream.makeBeams
    stream.Stream.makeBeams = _keep_stream
    try:
        yield
    finally:
        stream.Stream.makeBeams = original


@_quiet()
def score_bars(score, expand_repeats: bool = True) -> tuple[list[Bar], str]:
    """The first part's measures as Bars, with repeats expanded where music21 manages; and how repeats went."""
    from music21 import harmony, meter, stream

    parts = list(score.parts) if hasattr(score, "parts") else []
    part = parts[0] if parts else score
    repeats = "as written"
    if expand_repeats:
        try:
            expanded = part.expandRepeats()
            before = len(part.getElementsByClass(stream.Measure))
            after = len(expanded.getElementsByClass(stream.Measure))
            repeats = "expanded" if after != before else "none"
            part = expanded
        except Exception:  # music21 raises several types for repeat marks it cannot follow
            repeats = "as written"
    bars: list[Bar] = []
    notated: Meter | None = None
    for measure in part.getElementsByClass(stream.Measure):
        signature = measure.getElementsByClass(meter.TimeSignature).first()
        if signature is not None:
            try:
                notated = Meter(int(signature.numerator), int(signature.denominator))
            except ValueError:
                notated = None
        source = measure.voices[0] if measure.hasVoices() else measure
        tones = []
        harmonies = source.getElementsByClass(harmony.Harmony)
        chords = [(Fraction(h.offset), figure) for h in harmonies if (figure := abc_chord_symbol(h)) is not None]
        for element in source.notes:
            length = Fraction(element.quarterLength)
            if isinstance(element, harmony.Harmony) or element.duration.isGrace or length <= 0:
                continue  # chord symbols and grace notes are not melody
            pitch = max(p.midi for p in element.pitches) if element.isChord else element.pitch.midi
            offset = Fraction(element.offset)
            tones.append(Tone(offset, offset + length, int(pitch), element.tie.type if element.tie else None))
        bars.append(Bar(Fraction(measure.duration.quarterLength), notated, tones, sorted(chords)))
    return bars, repeats


def abc_chord_symbol(element) -> str | None:
    """A music21 Harmony's symbol when it is a real chord symbol ('N.C.' for none, flats as 'b'), else None."""
    from music21 import harmony

    if isinstance(element, harmony.NoChord):
        return "N.C."
    figure = _MUSIC21_FLAT.sub(r"\1\2b", str(getattr(element, "figure", "") or "").strip())
    if not figure or figure[0] not in "ABCDEFG":
        return None
    try:
        parse_chord(figure)
    except ValueError:
        return None
    return figure
