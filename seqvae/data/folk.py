"""The folk tunes shipped inside music21 (about 12,950 ABC tunes) -> one bar-aligned MIDI file per tune.

Nothing is downloaded: the ABC files come from the installed `music21` package. Each .abc file is
split into tunes here, so one tune music21 cannot parse is skipped and counted, not its whole book.
The MIDI is written for the window pipeline, which cuts on bar lines: every full bar starts on a
multiple of the bar length (a pickup is padded with a rest to a whole bar), and every meter, including
one that changes mid-tune or that a bar's length reveals, is written as a time signature at its bar.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import threading
import time
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from seqvae.codec.meter import Meter

# CLI name -> music21 corpus folder; the folder name is also the output subfolder.
COLLECTIONS: dict[str, str] = {
    "essen": "essenFolksong",
    "oneills": "oneills1850",
    "ryans": "ryansMammoth",
    "airds": "airdsAirs",
    "misc": "miscFolk",
}
BPM = 120.0
RESOLUTION = 480  # ticks per quarter: 16ths and triplets both land on whole ticks
PROGRAM = 0
VELOCITY = 80
INDEX_NAME = "folk_index.json"
TUNE_TIMEOUT_S = 60  # a tune music21 chews on longer than this is skipped, not waited for
_MAX_NUMERATOR = 255  # MIDI time signatures store the numerator in one byte
MIN_BAR = Fraction(1, 4)  # one 16th-note step, in quarter notes


# ------------------------------------------------------------------------------------------ ABC files


@dataclass(frozen=True)
class AbcTune:
    """One tune cut out of an .abc file, with the file's header lines carried in front of it."""

    collection: str  # music21 folder, e.g. "oneills1850"
    source: str  # e.g. "oneills1850/0001-0050.abc"
    number: int  # 1-based position of the tune within its collection: stable, names the output file
    reference: str  # the X: field
    title: str
    meter: str  # the M: field as written ("6/8", "C|", "none", "" if absent)
    key: str  # the K: field as written
    text: str


def music21_corpus_dir() -> Path:
    """The corpus folder inside the installed music21 package (never downloads)."""
    try:
        import music21
    except ImportError:
        raise FileNotFoundError(
            "music21 is not installed, and the folk tunes ship inside it: pip install 'seqvae[corpus]'"
        ) from None
    path = Path(music21.__file__).parent / "corpus"
    if not path.is_dir():
        raise FileNotFoundError(f"music21 is installed without its corpus folder ({path}); reinstall music21")
    return path


def _field(lines: list[str], name: str) -> str:
    for line in lines:
        if line.startswith(f"{name}:"):
            return line[2:].split("%")[0].strip()
    return ""


def split_abc_tunes(text: str, source: str, collection: str, first_number: int = 1) -> list[AbcTune]:
    """Cut an .abc file into tunes at its `X:` lines; lines before the first tune are the file header."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("X:")]
    if not starts:
        return []
    header = [line for line in lines[: starts[0]] if line.strip()]
    tunes = []
    for n, (begin, end) in enumerate(zip(starts, starts[1:] + [len(lines)], strict=True)):
        body = lines[begin:end]
        head = body[:1] + header + body[1:]  # file-level fields apply to every tune: keep them inside it
        tunes.append(AbcTune(
            collection=collection,
            source=source,
            number=first_number + n,
            reference=body[0][2:].strip(),
            title=_field(body, "T") or "untitled",
            meter=_field(body, "M"),
            key=_field(body, "K"),
            text="\n".join(head).strip() + "\n",
        ))
    return tunes


def find_folk_tunes(collections: list[str] | None = None, corpus_dir: Path | None = None) -> list[AbcTune]:
    """Every tune of the chosen collections (CLI names, default all), in a stable order."""
    names = list(collections) if collections else list(COLLECTIONS)
    unknown = [n for n in names if n not in COLLECTIONS]
    if unknown:
        raise ValueError(f"unknown folk collection {', '.join(unknown)}: choose from {', '.join(COLLECTIONS)}")
    root = corpus_dir or music21_corpus_dir()
    tunes: list[AbcTune] = []
    for name in dict.fromkeys(names):
        folder = COLLECTIONS[name]
        files = sorted((root / folder).glob("*.abc"), key=lambda p: p.name)
        if not files:
            raise FileNotFoundError(f"no .abc files in {root / folder}: is this music21 install complete?")
        number = 1
        for path in files:
            found = split_abc_tunes(path.read_text(encoding="utf-8", errors="replace"), f"{folder}/{path.name}",
                                    folder, number)
            tunes.extend(found)
            number += len(found)
    return tunes


def slug(title: str, max_length: int = 60) -> str:
    """A file-name-safe form of a title: 'The Kesh Jig' -> 'the-kesh-jig'."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return text[:max_length].rstrip("-") or "untitled"


def tune_file_name(tune: AbcTune, width: int = 4) -> str:
    """Collection folder, number (unique within it) and title: 'oneills1850/0123_the-kesh-jig.mid'."""
    return f"{tune.collection}/{tune.number:0{width}d}_{slug(tune.title)}.mid"


# ------------------------------------------------------------------------------- bar-aligned layout


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


@dataclass
class TuneLayout:
    """A tune on a bar-aligned timeline in quarter notes, ready to write."""

    notes: list[tuple[Fraction, Fraction, int]]  # (start, end, pitch), monophonic, sorted
    meters: list[tuple[Fraction, Meter]]  # (bar line, meter) at every change
    length: Fraction  # the end of the last (padded) bar
    bars: int
    pickup: Fraction  # rest padded in front of an anacrusis


def bar_quarters(meter: Meter) -> Fraction:
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
        pos = start + advance
        length = max(length, pos)
        fresh = False
        placed += 1
    if current is not None:
        length = _next_bar_line(max(pos, length), grid, bar_quarters(current))
    merged = _merge_ties(sorted(notes, key=lambda n: (n[0], -n[2])))
    n_bars = _count_bars(meters, length)
    return TuneLayout(merged, meters, length, n_bars, pickup)


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


# -------------------------------------------------------------------------------- music21 -> bars


_REPEAT_MARK = re.compile(r"\|:|:\||::|\[\d|\|\d")  # |: :| :: and first/second endings [1 |2


def has_repeats(text: str) -> bool:
    """Whether a tune's body holds repeat marks (so music21's costly expansion is worth a try)."""
    body = text.split("\nK:", 1)[-1].split("\n", 1)[-1]
    return bool(_REPEAT_MARK.search(body))


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
        for element in source.notes:
            length = Fraction(element.quarterLength)
            if isinstance(element, harmony.Harmony) or element.duration.isGrace or length <= 0:
                continue  # chord symbols and grace notes are not melody
            pitch = max(p.midi for p in element.pitches) if element.isChord else element.pitch.midi
            offset = Fraction(element.offset)
            tones.append(Tone(offset, offset + length, int(pitch), element.tie.type if element.tie else None))
        bars.append(Bar(Fraction(measure.duration.quarterLength), notated, tones))
    return bars, repeats


# -------------------------------------------------------------------------------------- MIDI output


def write_layout_midi(layout: TuneLayout, path: Path, name: str = "") -> Path:
    """Write a laid-out tune at 120 bpm with its time signatures at their bar lines."""
    import pretty_midi

    seconds = 60.0 / BPM
    pm = pretty_midi.PrettyMIDI(initial_tempo=BPM, resolution=RESOLUTION)
    pm.time_signature_changes = [
        pretty_midi.TimeSignature(m.numerator, m.denominator, float(at) * seconds) for at, m in layout.meters
    ]
    safe_name = name[:120].encode("latin-1", "replace").decode("latin-1")  # MIDI text is one byte a character
    instrument = pretty_midi.Instrument(program=PROGRAM, name=safe_name)
    instrument.notes = [
        pretty_midi.Note(VELOCITY, pitch, float(start) * seconds, float(end) * seconds)
        for start, end, pitch in layout.notes
    ]
    pm.instruments.append(instrument)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


@contextlib.contextmanager
def _quiet():
    """music21 warns freely about ABC it tolerates; the index records what matters."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        yield


class TuneSkipped(Exception):
    """A tune that cannot become a MIDI file; `reason` is the counted category."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def convert_abc_text(text: str, path: str | Path, name: str = "", expand_repeats: bool = True) -> dict:
    """One ABC tune -> one bar-aligned MIDI file; returns facts for the index, raises TuneSkipped."""
    with _quiet():
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
    write_layout_midi(layout, Path(path), name)
    return {
        "bars": layout.bars,
        "notes": len(layout.notes),
        "meters": [str(m) for _, m in layout.meters],
        "pickup_quarters": float(layout.pickup),
        "repeats": repeats,
        "pitch_range": [min(pitches), max(pitches)],
    }


# ----------------------------------------------------------------------------------- whole corpus


@dataclass
class FolkResult:
    out_dir: Path
    tunes: int
    converted: int
    skipped: dict[str, int]
    seconds: float
    index_path: Path

    @property
    def tunes_per_second(self) -> float:
        return self.tunes / self.seconds if self.seconds > 0 else float("inf")


def _timeout(_signum, _frame):
    raise TimeoutError


def _convert_job(job: tuple[int, AbcTune, str, str]) -> tuple[int, dict]:
    index, tune, out_dir, file_name = job
    entry = {"title": tune.title, "collection": tune.collection, "source": tune.source, "x": tune.reference,
             "meter": tune.meter, "key": tune.key}
    alarm = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if alarm:
        signal.signal(signal.SIGALRM, _timeout)
        signal.alarm(TUNE_TIMEOUT_S)
    try:
        facts = convert_abc_text(tune.text, Path(out_dir) / file_name, name=tune.title)
        entry = {"file": file_name, **entry, **facts}
    except TuneSkipped as skip:
        entry["skipped"] = skip.reason
        entry["detail"] = str(skip)[:300]
    except TimeoutError:
        entry["skipped"] = "timeout"
    except Exception as exc:  # noqa: BLE001 - one odd tune never stops the corpus
        entry["skipped"] = f"error:{type(exc).__name__}"
        entry["detail"] = str(exc)[:300]
    finally:
        if alarm:
            signal.alarm(0)
    return index, entry


def sample_evenly(tunes: list[AbcTune], limit: int | None) -> list[AbcTune]:
    """`limit` tunes spread evenly over the list (so a quick run still sees every collection)."""
    if limit is None or limit >= len(tunes):
        return tunes
    if limit < 1:
        raise ValueError(f"--limit {limit} converts nothing: send a positive number of tunes")
    return [tunes[i * len(tunes) // limit] for i in range(limit)]


def _prepare_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a folder; choose another OUT_DIR")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        out_dir.mkdir(parents=True, exist_ok=True)
        return
    if not (out_dir / INDEX_NAME).exists():
        raise FileExistsError(f"{out_dir} holds files that are not a folk conversion; choose an empty or new OUT_DIR")
    if not force:
        raise FileExistsError(f"{out_dir} already holds a folk conversion; pass --force to convert again")
    for folder in COLLECTIONS.values():
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    (out_dir / INDEX_NAME).unlink()


def convert_folk(
    out_dir: str | Path,
    collections: list[str] | None = None,
    workers: int | None = None,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> FolkResult:
    """Convert the music21 folk collections into OUT_DIR/<collection>/<nnnn>_<title>.mid + folk_index.json."""
    out_dir = Path(out_dir)
    tunes = sample_evenly(find_folk_tunes(collections), limit)
    workers = max(1, workers or os.cpu_count() or 1)
    _prepare_out_dir(out_dir, force)
    widths = Counter()
    for tune in tunes:
        widths[tune.collection] = max(widths[tune.collection], len(str(tune.number)))
    jobs = [(i, t, str(out_dir), tune_file_name(t, max(4, widths[t.collection]))) for i, t in enumerate(tunes)]
    started = time.perf_counter()
    entries: list[dict | None] = [None] * len(jobs)
    with tqdm(total=len(jobs), desc="folk", unit="tune", disable=not progress) as bar:
        for index, entry in _run(jobs, workers):
            entries[index] = entry
            bar.update(1)
    seconds = time.perf_counter() - started
    done = [e for e in entries if e is not None]
    skipped = Counter(e["skipped"] for e in done if "skipped" in e)
    converted = [e for e in done if "file" in e]
    per_collection = {
        name: {"converted": sum(e["collection"] == name for e in converted),
               "skipped": sum(e["collection"] == name and "skipped" in e for e in done)}
        for name in dict.fromkeys(t.collection for t in tunes)
    }
    index = {
        "source": "music21 corpus (installed package, nothing downloaded)",
        "bpm": BPM,
        "counts": {
            "tunes": len(tunes),
            "converted": len(converted),
            "skipped": dict(sorted(skipped.items())),
            "repeats": dict(sorted(Counter(e["repeats"] for e in converted).items())),
            "per_collection": per_collection,
        },
        "seconds": round(seconds, 1),
        "tunes": converted,
        "skipped_tunes": [e for e in done if "skipped" in e],
    }
    index_path = out_dir / INDEX_NAME
    index_path.write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return FolkResult(out_dir, len(tunes), len(converted), dict(skipped), seconds, index_path)


def _run(jobs: list, workers: int):
    if workers == 1 or len(jobs) < 4:
        yield from map(_convert_job, jobs)
        return
    with get_context("fork" if os.name != "nt" else "spawn").Pool(workers, maxtasksperchild=500) as pool:
        yield from pool.imap_unordered(_convert_job, jobs, chunksize=8)
