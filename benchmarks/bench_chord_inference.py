"""Chord inference against written chords, and its speed in windows per second.

    python benchmarks/bench_chord_inference.py
    python benchmarks/bench_chord_inference.py --seconds 10 --json runs/bench_chord_inference.json

Agreement: every tune with chord symbols that ships inside music21 (the Nottingham ABC file, the lead
sheets) is cut into 2-bar windows as `seqvae data build --chords` cuts them; each chord span (a half bar in
4/4) is compared at its first step, written chord against the chord inferred from the melody alone: the
same triad, and the same root. The five folk collections carry no chord symbols of their own, so these
few tunes are the only written harmony music21 ships. Speed: synthetic 2-bar windows, one process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class TuneAgreement:
    tune: str
    spans: int
    same_triad: float
    same_root: float


def _span_agreement(name: str, written: np.ndarray, inferred: np.ndarray, span: int) -> TuneAgreement:
    from seqvae.codec.chords import NO_CHORD

    given, guess = written[:, ::span].ravel(), inferred[:, ::span].ravel()
    keep = given != NO_CHORD
    given, guess = given[keep].astype(int), guess[keep].astype(int)
    same_root = ((given - 1) // 4 == (guess - 1) // 4) & (guess != NO_CHORD)
    return TuneAgreement(name, int(keep.sum()), float((given == guess).mean()), float(same_root.mean()))


def abc_tunes(corpus: Path, tmp: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(title, windows, meters, written chords) of every chorded ABC tune, through the build's own path."""
    from seqvae.codec.midi import read_midi
    from seqvae.data.abc_to_midi import convert_abc_text
    from seqvae.data.abc_tunes import split_abc_tunes
    from seqvae.data.extract import WindowRules, extract_windows

    out = []
    for path in sorted((corpus / "nottingham-dataset").glob("*.abc")):
        for tune in split_abc_tunes(path.read_text(), path.name, "nottingham"):
            midi = tmp / f"{tune.reference}.mid"
            convert_abc_text(tune.text, midi)
            ex = extract_windows(read_midi(midi), WindowRules(steps=32, chords=True))
            given = ex.chords_given
            out.append((tune.title, ex.windows[given], ex.meters[given], ex.chords[given]))
    return out


def lead_sheets(corpus: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, windows, meters, written chords) of music21's MusicXML lead sheets: top melody note, 2-bar windows."""
    import music21

    from seqvae.codec.events import EventCodec, Note
    from seqvae.data.music21_abc import abc_chord_symbol
    from seqvae.data.window_chords import chords_per_step

    codec = EventCodec()
    out = []
    for path in sorted((corpus / "leadSheet").glob("*.mxl")):
        part = music21.converter.parse(str(path)).parts[0].flatten()
        signature = part.getElementsByClass(music21.meter.TimeSignature).first()
        window = 2 * 16 * signature.numerator // signature.denominator
        n_steps = int(round(float(part.highestTime) * 4))
        notes = [Note(max(p.midi for p in n.pitches), round(float(n.offset) * 4),
                      round(float(n.offset + n.quarterLength) * 4))
                 for n in part.notes if not isinstance(n, music21.harmony.Harmony) and n.quarterLength > 0]
        events = codec.notes_to_events([n for n in notes if codec.min_pitch <= n.pitch <= codec.max_pitch], n_steps)
        symbols = [(round(float(h.offset) * 4), s) for h in part.getElementsByClass(music21.harmony.Harmony)
                   if (s := abc_chord_symbol(h)) is not None]
        chords = chords_per_step(symbols, n_steps)
        n = n_steps // window
        windows = events[: n * window].reshape(n, window)
        meters = np.tile([signature.numerator, signature.denominator], (n, 1))
        out.append((path.stem, windows, meters, chords[: n * window].reshape(n, window)))
    return out


def agreement(tmp: Path) -> list[TuneAgreement]:
    import music21

    from seqvae.codec.meter import Meter
    from seqvae.data.chord_inference import infer_corpus_chords, span_steps

    corpus = Path(music21.__file__).parent / "corpus"
    rows = []
    for name, windows, meters, written in abc_tunes(corpus, tmp) + lead_sheets(corpus):
        inferred = infer_corpus_chords(windows, meters)
        rows.append(_span_agreement(name, written, inferred, span_steps(Meter(*meters[0].tolist()))))
    return rows


def windows_per_second(seconds: float) -> float:
    from seqvae.codec.meter import Meter
    from seqvae.data.chord_inference import infer_window_chords
    from seqvae.data.synthetic import synthetic_windows

    windows = synthetic_windows(1024, 32, seed=0)
    done, started = 0, time.perf_counter()
    while True:
        infer_window_chords(windows, Meter(4, 4))
        done += len(windows)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time the speed run for at least this long")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rows = agreement(Path(tmp))
    spans = sum(r.spans for r in rows)
    triad = sum(r.same_triad * r.spans for r in rows) / spans
    root = sum(r.same_root * r.spans for r in rows) / spans
    for r in rows:
        print(f"{r.tune[:40]:40s} {r.spans:4d} spans  same triad {r.same_triad:.2f}  same root {r.same_root:.2f}")
    print(f"{'all':40s} {spans:4d} spans  same triad {triad:.2f}  same root {root:.2f}")
    rate = windows_per_second(args.seconds)
    print(f"inference: {rate:.0f} two-bar windows/s in one process")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "tunes": [asdict(r) for r in rows], "spans": spans, "same_triad": triad, "same_root": root,
            "windows_per_second": rate, "machine": f"{platform.processor() or platform.machine()}, "
                                                   f"{os.cpu_count()} cores", "python": sys.version.split()[0],
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
