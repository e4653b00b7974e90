"""Measures as parsed -> one tune on a bar-aligned timeline, the layout the window pipeline wants.

The window pipeline cuts on bar lines, so every full bar starts on a multiple of the bar length (a
pickup is padded with a rest to a whole bar), and every meter, including one that changes mid-tune
or that a bar's length reveals, is placed as a time signature at its bar. Times are quarter notes as
Fractions, so triplets stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from seqvae.codec.meter import Meter

MIN_BAR = Fraction(1, 4)  # one 16th-note step, in quarter notes
_MAX_NUMERATOR = 255  # MIDI time signatures store the numerator in one byte


@dataclass
class Tone:
    """A note inside one bar as notated: offsets in quarter notes from the bar's start."""

    start: Fraction
    end: Fraction
    pitch: int
    tie: str | None = None  # music21 tie type: 'start', 'continue', 'stop'


@dataclass
class Bar:
    """One measure as parsed: its real length, the time signature in force, its tones."""

    length: Fraction
    notated: Meter | None
    tones: list[Tone] = field(default_factory=list)
    chords: list[tuple[Fraction, str]] = field(default_factory=list)  # (offset in the bar, chord symbol)


@dataclass
class TuneLayout:
    """A tune on a bar-aligned timeline in quarter notes, ready to write."""

    notes: list[tuple[Fraction, Fraction, int]]  # (start, end, pitch), monophonic, sorted
    meters: list[tuple[Fraction, Meter]]  # (bar line, meter) at every change
    length: Fraction  # the end of the last (padded) bar
    bars: int
    pickup: Fraction  # rest padded in front of an anacrusis
    chords: list[tuple[Fraction, str]] = field(default_factory=list)  # (time, chord symbol), sorted


def bar_quarters(meter: Meter) -> Fraction:
    """Quarter notes in one bar of `meter`: 6/8 -> 3."""
    return Fraction(4 * meter.numerator, meter.denominator)


def meter_for_length(length: Fraction) -> Meter:
    """The meter of a bar that lasts `length` quarters (rounded to 16ths): 2.5 -> 5/8, 5 -> 5/4."""
    sixteenths = max(1, round(length * 4))
    if sixteenths % 4 == 0 and sixteenths // 4 <= _MAX_NUMERATOR:
        return Meter(sixteenths // 4, 4)
    if sixteenths % 2 == 0 and sixteenths // 2 <= _MAX_NUMERATOR:
        return Meter(sixteenths // 2, 8)
    if sixteenths <= _MAX_NUMERATOR:
        return Meter(sixteenths, 16)
    raise ValueError(f"a bar of {float(length):g} quarter notes is too long for a MIDI time signature")


def _bar_meters(bars: list[Bar]) -> list[tuple[Meter, bool]]:
    """The meter each bar is laid out in, and whether the notation's meter explains its length.

    A bar that is longer than its notated meter, a run of equally short bars (a meter change music21
    did not parse, e.g. inline [M:2/4]) and bars of an unmetered tune get the meter their length shows.
    """
    out: list[tuple[Meter, bool]] = []
    for i, bar in enumerate(bars):
        notated = bar.notated
        if notated is None or bar.length > bar_quarters(notated):
            out.append((meter_for_length(bar.length), False))
            continue
        full = bar_quarters(notated)
        if bar.length < full:
            neighbours = [bars[j] for j in (i - 1, i + 1) if 0 <= j < len(bars)]
            in_run = any(
                b.length == bar.length and b.notated == notated and b.length + bar.length != full for b in neighbours
            )
            if in_run:
                out.append((meter_for_length(bar.length), False))
                continue
        out.append((notated, True))
    return out


def layout_bars(bars: list[Bar]) -> TuneLayout:
    """Place bars on a timeline where every full bar starts on a bar line of its meter.

    Short bars are the hard part of folk notation: a pickup, a phrase end and the next phrase's pickup
    that together make one bar, a final short bar. A short bar that completes the bar in progress is
    placed straight after it; a pickup (first bar, bar after a meter change, or short bar before a full
    one) is right-aligned with a rest in front; any other short bar is left-aligned with a rest after.
    """
    notes: list[tuple[Fraction, Fraction, int, str | None]] = []
    chords: list[tuple[Fraction, str]] = []
    meters: list[tuple[Fraction, Meter]] = []
    pos, grid, length = Fraction(0), Fraction(0), Fraction(0)
    current: Meter | None = None
    pickup = Fraction(0)
    fresh = True  # no bar placed yet in the current meter
    placed = 0
    kept = [b for b in bars if b.length >= MIN_BAR]  # a sliver from a rounding slip in the ABC cannot hold a step
    bar_meters = _bar_meters(kept)
    for i, bar in enumerate(kept):
        meter, explained = bar_meters[i]
        full = bar_quarters(meter)
        if meter != current:
            if current is not None:
                pos = _next_bar_line(pos, grid, bar_quarters(current))
            grid, current, fresh = pos, meter, True
            if meters and meters[-1][0] == pos:
                meters[-1] = (pos, meter)
            else:
                meters.append((pos, meter))
        into_bar = (pos - grid) % full
        if not explained or bar.length == full:
            start = pos if into_bar == 0 else pos + full - into_bar
            advance = full if not explained else bar.length
        elif into_bar and bar.length <= full - into_bar:
            start = pos + (full - into_bar - bar.length)  # completes the bar in progress, flush to its end
            advance = bar.length
        else:
            if into_bar:
                pos += full - into_bar
            nxt = kept[i + 1] if i + 1 < len(kept) else None
            nxt_meter = bar_meters[i + 1][0] if nxt is not None else None
            completes = nxt is not None and nxt_meter == meter and bar.length + nxt.length == full
            is_pickup = not completes and nxt is not None and (fresh or nxt.length == full)
            start = pos + (full - bar.length) if is_pickup else pos
            if is_pickup and placed == 0:
                pickup = full - bar.length
            advance = bar.length
        for tone in bar.tones:
            notes.append((start + tone.start, start + tone.end, tone.pitch, tone.tie))
        chords += [(start + offset, symbol) for offset, symbol in bar.chords]
        pos = start + advance
        length = max(length, pos)
        fresh = False
        placed += 1
    if current is not None:
        length = _next_bar_line(max(pos, length), grid, bar_quarters(current))
    merged = _merge_ties(sorted(notes, key=lambda n: (n[0], -n[2])))
    n_bars = _count_bars(meters, length)
    return TuneLayout(merged, meters, length, n_bars, pickup, sorted(chords, key=lambda c: c[0]))


def _next_bar_line(pos: Fraction, grid: Fraction, full: Fraction) -> Fraction:
    into = (pos - grid) % full
    return pos if into == 0 else pos + full - into


def _count_bars(meters: list[tuple[Fraction, Meter]], length: Fraction) -> int:
    total = 0
    for i, (at, meter) in enumerate(meters):
        until = meters[i + 1][0] if i + 1 < len(meters) else length
        total += int((until - at) / bar_quarters(meter))
    return total


def _merge_ties(notes: list[tuple[Fraction, Fraction, int, str | None]]) -> list[tuple[Fraction, Fraction, int]]:
    """Join tied notes of one pitch, keep the top note of simultaneous onsets, cut overlaps: monophonic."""
    out: list[list] = []
    for start, end, pitch, tie in notes:
        if out:
            prev = out[-1]
            if start == prev[0]:
                continue  # a lower note struck with the one kept (chords were reduced to their top already)
            tied = prev[3] in ("start", "continue") or tie in ("continue", "stop")
            if tied and pitch == prev[2] and start == prev[1]:
                prev[1], prev[3] = end, tie
                continue
            prev[1] = min(prev[1], start)
        out.append([start, end, pitch, tie])
    return [(s, e, p) for s, e, p, _ in out if e > s]
