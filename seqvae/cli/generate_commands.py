"""`seqvae sample | reconstruct | interpolate | grid | morph | similar | shift | infill | novelty | map | plot |
attributes`: the musician's commands, each a thin layer over `seqvae.engine.Engine`.

Every generating command writes MIDI into --out (one file with all results back to back, plus
one per result when there are several) and, with --png, a piano roll beside it; --key and --range
constrain every note it decodes (Engine.constrained), and a chord model plays under --chords
(Engine.with_chords; whole clips lay the progression over their windows; --chord-track writes it beside the
melodies as block chords). Without --bar,
reconstruct, interpolate, morph, similar, shift and infill take each input line whole,
window by window (seqvae/engine/clips.py); --bar N picks one window, as before.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from seqvae.models.precision import PRECISIONS

if TYPE_CHECKING:

    from seqvae.codec import Melody
    from seqvae.engine import Engine
    from seqvae.evaluate.copying import BandwidthChoice

DEFAULT_OUT = "seqvae_out"


# ------------------------------------------------------------------ shared options
def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="shipped model name or checkpoint directory (default: default)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA if available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="decoding arithmetic (default: auto, bfloat16 for bfloat16-stored models on CPUs with "
                   "AVX512-BF16, else float32)")
    p.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same result")


def _add_output(p: argparse.ArgumentParser, stem: str) -> None:
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output folder, or a .mid file name (default: folder {DEFAULT_OUT})")
    p.add_argument("--name", default=stem, help=f"file name stem (default: {stem})")
    p.add_argument("--png", action="store_true", help="also draw a piano roll PNG")
    p.add_argument("--bpm", type=float, default=None, help="tempo of the written MIDI (default: the input's or 120)")
    p.add_argument("--program", type=int, default=None, help="General MIDI program 0-127 of the written MIDI")
    p.add_argument("--velocity", type=int, default=None, help="note velocity 1-127 of the written MIDI")
    p.add_argument("--chord-track", action="store_true",
                   help="with --chords: also write the progression as a second track of block chords (triads "
                        "around C3-C4, one per change) with chord symbols as text events")


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--track", default=None,
                   help="which line of each input file: a number as listed, or part of its name; "
                        "comma-separated to choose per file (e.g. 1,2)")
    p.add_argument("--bar", default=None,
                   help="bar where the model's window starts in each input (1-based); comma-separated per file "
                        "(default: the whole line, window by window, where the command takes clips)")


def _add_temperature(p: argparse.ArgumentParser, default: float) -> None:
    p.add_argument("--temperature", type=float, default=default,
                   help=f"0 = greedy (most likely), higher = more adventurous (default: {default:g})")


def _key(text: str):
    from seqvae.codec.scales import Key

    try:
        return Key.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _range(text: str):
    from seqvae.codec.scales import PitchRange

    try:
        return PitchRange.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _progression(text: str) -> str:
    """A progression checked as the parser reads it (symbols and form, in 4/4); the engine reads it in its meter."""
    from seqvae.codec import Meter
    from seqvae.codec.chords import parse_progression

    try:
        parse_progression(text, Meter(4, 4), 1)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_chords(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chords", type=_progression, default=None,
                   help="chord model only: the progression it plays under, a symbol per bar ('Am F C G') or "
                        "SYMBOL:BEATS ('Am:2 F:2'), repeating; a clip longer than the model's window reads on "
                        "through it (default: none)")


def _add_constraints(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", type=_key, default=None,
                   help="decode in this key: a root and a mode (major, minor, harmonic minor, dorian, mixolydian, "
                        "pentatonic major, pentatonic minor), e.g. 'D dorian' (default: off)")
    p.add_argument("--range", dest="pitch_range", type=_range, default=None,
                   help="decode within these MIDI pitches, lowest-highest: e.g. 57-76 or A3-E5 (default: off)")
    _add_chords(p)


def _generating_parser(subparsers: argparse._SubParsersAction, name: str, summary: str, handler,
                       inputs: Sequence[tuple[str, str]] = (), temperature: float = 0.0,
                       **input_options) -> argparse.ArgumentParser:
    """A command that writes melodies: its MIDI inputs, then the options every such command shares."""
    p = subparsers.add_parser(name, help=summary)
    for dest, text in inputs:
        p.add_argument(dest, help=text, **input_options)
    _add_model(p)
    _add_output(p, name)
    if inputs:
        _add_selection(p)
    _add_temperature(p, temperature)
    _add_constraints(p)
    p.set_defaults(handler=handler)
    return p


def register(subparsers: argparse._SubParsersAction) -> None:
    one_file = [("input", "MIDI file")]
    p = _generating_parser(subparsers, "sample", "new melodies from the model's prior", cmd_sample, temperature=0.5)
    p.add_argument("--n", type=int, default=4, help="how many melodies (default: 4)")

    _generating_parser(subparsers, "reconstruct", "encode a melody and decode it again", cmd_reconstruct, one_file)

    p = _generating_parser(subparsers, "interpolate", "a path of melodies from A to B", cmd_interpolate,
                           [("a", "MIDI file where the path starts"), ("b", "MIDI file where the path ends")])
    p.add_argument("--steps", dest="points", type=int, default=8,
                   help="melodies on the path (points), both ends included (default: 8)")
    p.add_argument("--method", choices=("slerp", "lerp"), default="slerp", help="slerp (default) or lerp")

    corners = [(c, f"MIDI file at the {where} corner") for c, where in
               (("a", "top-left"), ("b", "top-right"), ("c", "bottom-left"), ("d", "bottom-right"))]
    p = _generating_parser(subparsers, "grid", "a rows x cols square of melodies between four corners", cmd_grid,
                           corners)
    p.add_argument("--rows", type=int, default=4, help="rows (default: 4)")
    p.add_argument("--cols", type=int, default=4, help="columns (default: 4)")
    p.add_argument("--method", choices=("slerp", "lerp"), default="slerp", help="slerp (default) or lerp")

    p = _generating_parser(subparsers, "morph", "one melody between A and B (--t), or four corners (--x --y)",
                           cmd_morph, [("inputs", "two MIDI files (A B), or four (A B C D) for --x/--y")],
                           nargs="+", metavar="FILE")
    p.add_argument("--t", type=float, default=None, help="position from A (0) to B (1)")
    p.add_argument("--x", type=float, default=None, help="with four files: left (0) to right (1)")
    p.add_argument("--y", type=float, default=None, help="with four files: top (0) to bottom (1)")

    p = _generating_parser(subparsers, "similar", "variations of a melody at a chosen distance", cmd_similar,
                           one_file)
    p.add_argument("--n", type=int, default=4, help="how many variations (default: 4)")
    p.add_argument("--amount", type=float, default=0.3, help="0 = the same, 1 = unrelated (default: 0.3)")

    p = _generating_parser(subparsers, "shift", "move a melody along an attribute vector (density, range, ...)",
                           cmd_shift, one_file)
    p.add_argument("--attribute", required=True,
                   help="density, interval, syncopation_16th, syncopation_8th, range or in_key")
    p.add_argument("--amount", type=float, default=1.0,
                   help="how far: 1 = the gap between the top and bottom quartiles (default: 1; negative = less)")

    p = _generating_parser(subparsers, "infill", "regenerate some bars of a melody; the others sound exactly as before",
                           cmd_infill, one_file, temperature=0.5)
    p.add_argument("--bars", required=True, help="bars to regenerate, 1-based inclusive: e.g. 2 or 2-3")

    p = subparsers.add_parser("novelty", help="how unlike the training music each file is (negative ELBO per step)")
    p.add_argument("inputs", nargs="+", metavar="FILE", help="MIDI files (every window of every line is scored)")
    _add_model(p)
    p.add_argument("--track", default=None, help="score only this line of each file (number or part of the name)")
    _add_chords(p)
    p.add_argument("--samples", type=int, default=8, help="posterior samples per melody (default: 8)")
    p.add_argument("--json", default=None, help="also write the scores to this JSON file")
    p.add_argument("--windows", action="store_true", help="print every window, not only the per-file summary")
    p.set_defaults(handler=cmd_novelty)

    p = subparsers.add_parser("map", help="a 2-D picture of a MIDI collection's latents (PCA)")
    p.add_argument("midi_dir", help="folder of MIDI files (searched recursively)")
    _add_model(p)
    p.add_argument("--out", default="map.png", help="PNG to write (default: map.png)")
    p.add_argument("--colour", "--color", dest="colour", default="file",
                   help="colour by 'file' or by an attribute: density, interval, syncopation_16th, "
                        "syncopation_8th, range, in_key (default: file)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many files")
    _add_chords(p)
    p.add_argument("--csv", default=None, help="also write the 2-D coordinates to this CSV file")
    p.set_defaults(handler=cmd_map)

    p = subparsers.add_parser("plot", help="draw a MIDI file as a piano roll PNG (no model needed)")
    p.add_argument("input", help="MIDI file")
    p.add_argument("--out", default=None, help="PNG to write (default: the input's name with .png)")
    p.set_defaults(handler=cmd_plot)

    p = subparsers.add_parser("attributes",
                              help="compute a model's attribute vectors and latent prior from its training data")
    p.add_argument("checkpoint", help="shipped model name or checkpoint directory (the vectors are stored there)")
    p.add_argument("--data", required=True, help="built corpus folder (seqvae data build)")
    p.add_argument("--split", default="train", help="split to compute from (default: train)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many windows (a random subset)")
    p.add_argument("--measure", type=int, default=64,
                   help="validation melodies for the monotonicity check (default: 64; 0 to skip)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0, help="seed for the --limit subset (default: 0)")
    p.add_argument("--centers", type=int, default=None,
                   help="most kernel centres the latent prior keeps, 2 bytes x z size each in its file (default: "
                   "8000); all --limit windows still count when its bandwidth is chosen")
    p.set_defaults(handler=cmd_attributes)


# ------------------------------------------------------------------ helpers
def _engine(args: argparse.Namespace) -> Engine:
    from seqvae.engine import Engine

    if getattr(args, "chord_track", False) and args.chords is None:
        raise ValueError("--chord-track writes the progression the melodies were played under: give it with "
                         "--chords, e.g. --chords \"Am F\" (a chord model's)")
    engine = Engine.load(args.model, device=args.device, threads=args.threads, precision=args.precision)
    key, pitch_range = getattr(args, "key", None), getattr(args, "pitch_range", None)
    if key is not None or pitch_range is not None:
        engine = engine.constrained(key, pitch_range)  # every melody the command writes is decoded under both
    chords = getattr(args, "chords", None)
    return engine if chords is None else engine.with_chords(chords)


def _per_input(value: str | None, count: int, option: str) -> list[str | None]:
    """'--track 2' applies to every input; '--track 2,1' gives one value per input, in order."""
    if value is None:
        return [None] * count
    parts = [p.strip() for p in str(value).split(",")]
    if len(parts) == 1:
        return parts * count
    if len(parts) != count:
        raise ValueError(f"--{option} {value}: give one value for all {count} inputs or exactly {count} "
                         "comma-separated values")
    return [p or None for p in parts]


def _read_inputs(engine: Engine, paths: Sequence[str], args: argparse.Namespace, whole: bool = False
                 ) -> list[Melody]:
    """One window of each file (at --bar), or with `whole` and no --bar each line whole as a clip."""
    tracks = _per_input(args.track, len(paths), "track")
    bars = _per_input(args.bar, len(paths), "bar")
    melodies = []
    for path, track, bar in zip(paths, tracks, bars, strict=True):
        if bar is not None and not bar.lstrip("-").isdigit():
            raise ValueError(f"--bar {bar}: send a bar number such as 1")
        if bar is None and whole:
            melodies.append(engine.clip_from_midi(path, track=track))
        else:
            melodies.append(engine.melody_from_midi(path, track=track, bar=int(bar) if bar is not None else None))
    return melodies


def _operation(engine: Engine, args: argparse.Namespace, name: str) -> Callable:
    """`engine.<name>` on one window with --bar, else `clips.<name>` on whole lines: the same arguments."""
    if args.bar is not None:
        return getattr(engine, name)
    from seqvae.engine import clips

    return functools.partial(getattr(clips, name), engine)


def _styled(melodies: Sequence[Melody], args: argparse.Namespace) -> list[Melody]:
    """Apply --bpm/--program/--velocity (validated by Melody itself)."""
    changes = {k: getattr(args, k) for k in ("bpm", "program", "velocity") if getattr(args, k, None) is not None}
    return [dataclasses.replace(m, **changes) for m in melodies] if changes else list(melodies)


def _write(engine: Engine, melodies: Sequence[Melody], args: argparse.Namespace, names: Sequence[str] | None = None,
           rows: Sequence[Sequence[Melody]] | None = None, row_titles: Sequence[str] | None = None) -> list[Path]:
    """<out>/<name>.mid with everything back to back, one file per melody when several, and the PNG; with
    --chord-track each file also holds the chords every melody was played under (from its first step, as the
    engine laid them).

    The picture draws `rows` (e.g. result above input) or, by default, the melodies in one row.
    """
    from seqvae.codec import write_midi

    melodies = _styled(melodies, args)
    heard = [engine.chord_steps(m.n_steps) for m in melodies] if args.chord_track else None
    out, stem = Path(args.out), args.name
    if out.suffix.lower() in (".mid", ".midi"):  # --out song.mid names the file itself
        out, stem = out.parent, out.stem
    written = [write_midi(melodies, out / f"{stem}.mid", keep_existing=True, chords=heard)]
    if len(melodies) > 1:
        width = max(2, len(str(len(melodies))))
        labels = names or [f"{i + 1:0{width}d}" for i in range(len(melodies))]
        written += [write_midi(m, out / f"{stem}_{label}.mid", keep_existing=True,
                               chords=None if heard is None else [heard[i]])
                    for i, (m, label) in enumerate(zip(melodies, labels, strict=True))]
    if args.png:
        from seqvae.engine.pictures import piano_roll_png

        written.append(piano_roll_png(rows or [list(melodies)], out / f"{stem}.png", row_titles=row_titles,
                                      title=f"seqvae {args.command}"))
    bars = sum(m.n_bars for m in melodies)
    print(f"wrote {written[0]} ({len(melodies)} melod{'y' if len(melodies) == 1 else 'ies'}, {bars:g} bars)")
    if len(written) > 1:
        print(f"wrote {len(written) - 1} more file(s) in {out}/: {', '.join(p.name for p in written[1:4])}"
              + (" ..." if len(written) > 4 else ""))
    return written


def _parse_bars(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in str(text).replace(" ", "").split("-")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"--bars {text}: send one bar (e.g. 2) or a range (e.g. 2-3), counting bars from 1")


def _midi_files(folder: str, limit: int | None) -> list[Path]:
    from seqvae.codec.midi import is_midi_path

    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder: send a folder of MIDI files")
    files = sorted(p for p in root.rglob("*") if is_midi_path(p) and p.is_file())
    if not files:
        raise ValueError(f"{folder} holds no .mid/.midi files")
    return files[:limit] if limit else files


# ------------------------------------------------------------------ handlers
def cmd_sample(args: argparse.Namespace) -> int:
    engine = _engine(args)
    melodies = engine.sample(args.n, temperature=args.temperature, seed=args.seed)
    _write(engine, melodies, args)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import numpy as np

    engine = _engine(args)
    (melody,) = _read_inputs(engine, [args.input], args, whole=True)
    result = _operation(engine, args, "reconstruct")(melody, temperature=args.temperature, seed=args.seed)
    same = int(np.sum(melody.events == result.events))
    windows = -(-melody.n_steps // engine.steps)
    print(f"reconstruction matches {same}/{melody.n_steps} steps ({same / melody.n_steps:.0%}) over "
          f"{windows} window{'s' if windows > 1 else ''}")
    _write(engine, [result], args, rows=[[result], [melody]], row_titles=["reconstruction", "input"])
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    engine = _engine(args)
    a, b = _read_inputs(engine, [args.a, args.b], args, whole=True)
    interpolate = _operation(engine, args, "interpolate")
    melodies = interpolate(a, b, args.points, method=args.method, temperature=args.temperature, seed=args.seed)
    _write(engine, melodies, args, row_titles=[f"{Path(args.a).name} -> {Path(args.b).name}, {args.points} points"])
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    engine = _engine(args)
    corners = _read_inputs(engine, [args.a, args.b, args.c, args.d], args)
    rows = engine.grid(*corners, rows=args.rows, cols=args.cols, method=args.method,
                       temperature=args.temperature, seed=args.seed)
    flat = [m for row in rows for m in row]
    names = [f"r{r + 1}_c{c + 1}" for r in range(args.rows) for c in range(args.cols)]
    _write(engine, flat, args, names=names, rows=rows, row_titles=[f"row {r + 1}" for r in range(args.rows)])
    return 0


def cmd_morph(args: argparse.Namespace) -> int:
    if len(args.inputs) == 2:
        if args.t is None or args.x is not None or args.y is not None:
            raise ValueError("with two files give --t (0 = first file, 1 = second), e.g. --t 0.3")
    elif len(args.inputs) == 4:
        if args.x is None or args.y is None or args.t is not None:
            raise ValueError("with four files give --x and --y (each 0..1), e.g. --x 0.5 --y 0.2")
    else:
        raise ValueError(f"morph takes 2 files (with --t) or 4 files (with --x --y), got {len(args.inputs)}")
    engine = _engine(args)
    inputs = _read_inputs(engine, args.inputs, args, whole=True)
    seed = 0 if args.seed is None else args.seed
    if len(inputs) == 2:
        result = _operation(engine, args, "morph")(*inputs, args.t, temperature=args.temperature, seed=seed)
    else:
        result = _operation(engine, args, "morph_xy")(*inputs, args.x, args.y, temperature=args.temperature, seed=seed)
    _write(engine, [result], args)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    engine = _engine(args)
    (melody,) = _read_inputs(engine, [args.input], args, whole=True)
    similar = _operation(engine, args, "similar")
    melodies = similar(melody, args.n, args.amount, seed=args.seed, temperature=args.temperature)
    _write(engine, melodies, args, rows=[[melody], melodies],
           row_titles=["input", f"{args.n} variations, amount {args.amount:g}"])
    return 0


def cmd_shift(args: argparse.Namespace) -> int:
    import numpy as np

    from seqvae.evaluate.attributes import attribute_values

    engine = _engine(args)
    (melody,) = _read_inputs(engine, [args.input], args, whole=True)
    shift = _operation(engine, args, "shift")
    result = shift(melody, args.attribute, args.amount, temperature=args.temperature, seed=args.seed)
    before, after = attribute_values(np.stack([melody.events, result.events]), args.attribute,
                                     engine.codec.min_pitch)
    print(f"{args.attribute}: {before:.3f} -> {after:.3f} (amount {args.amount:+g})")
    _write(engine, [result], args, rows=[[result], [melody]],
           row_titles=[f"shifted {args.attribute} {args.amount:+g}", "input"])
    return 0


def cmd_infill(args: argparse.Namespace) -> int:
    import numpy as np

    engine = _engine(args)
    first, last = _parse_bars(args.bars)
    (melody,) = _read_inputs(engine, [args.input], args, whole=True)
    result = _operation(engine, args, "infill")(melody, first, last, seed=args.seed, temperature=args.temperature)
    n_bars = int(np.ceil(melody.n_bars))
    kept = [b for b in range(1, n_bars + 1) if not first <= b <= last]
    print(f"regenerated bars {first}-{last}; kept bars {', '.join(map(str, kept))} as they sounded")
    _write(engine, [result], args, rows=[[result], [melody]],
           row_titles=[f"bars {first}-{last} regenerated", "input"])
    return 0


def cmd_novelty(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    engine = _engine(args)
    windows = []
    for path in args.inputs:
        found = engine.windows_from_midi(path, track=args.track)
        if not found:
            print(f"{path}: no non-empty window fits this model; skipped", file=sys.stderr)
        windows += found
    if not windows:
        raise ValueError("none of the files has a window this model can read")
    with tqdm(total=len(windows), desc="novelty", unit="window", disable=len(windows) < 64) as bar:
        scores = engine.novelty([w.melody for w in windows], samples=args.samples, progress=bar.update)
    by_file: dict[str, list[float]] = {}
    for window, score in zip(windows, scores, strict=True):
        by_file.setdefault(window.path, []).append(float(score))
        if args.windows:
            print(f"{score:8.3f}  {window.label}")
    print(f"{'mean':>8}  {'max':>8}  {'windows':>7}  file   (negative ELBO per step, nats; higher = more unusual)")
    for path, values in by_file.items():
        print(f"{np.mean(values):8.3f}  {np.max(values):8.3f}  {len(values):7d}  {path}")
    if args.json:
        payload = {
            "model": engine.model_name,
            "unit": "negative ELBO per step (nats)",
            "files": {p: {"mean": float(np.mean(v)), "max": float(np.max(v)), "windows": len(v)}
                      for p, v in by_file.items()},
            "windows": [{"file": w.path, "track": w.track, "bar": w.bar, "score": float(s)}
                        for w, s in zip(windows, scores, strict=True)],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from seqvae.codec import MidiReadError
    from seqvae.engine.latent import project_2d
    from seqvae.engine.pictures import latent_map_png
    from seqvae.evaluate.attributes import ATTRIBUTE_NAMES, attribute_values

    if args.colour != "file" and args.colour not in ATTRIBUTE_NAMES:
        raise ValueError(f"--colour {args.colour}: use 'file' or one of {', '.join(ATTRIBUTE_NAMES)}")
    engine = _engine(args)
    windows, skipped = [], 0
    for path in tqdm(_midi_files(args.midi_dir, args.limit), desc="reading", unit="file"):
        try:
            found = engine.windows_from_midi(path)
        except MidiReadError as exc:
            skipped += 1
            tqdm.write(f"skipped {exc}")
            continue
        except ValueError:
            found = []  # no melodic line
        skipped += not found  # also files whose meter the model cannot read
        windows += found
    if len(windows) < 2:
        raise ValueError(f"{args.midi_dir}: found {len(windows)} window(s) the model can read; a map needs at least 2")
    melodies = [w.melody for w in windows]
    chunks = range(0, len(melodies), 256)
    z = np.concatenate([engine.embed(melodies[i:i + 256]) for i in tqdm(chunks, desc="encoding", unit="batch")])
    coords, explained = project_2d(z)
    if args.colour == "file":
        groups = [Path(w.path).name for w in windows]
        latent_map_png(coords, args.out, explained, groups=groups,
                       title=f"{engine.model_name}: {len(windows)} windows from {len(set(groups))} files")
    else:
        values = attribute_values(np.stack([m.events for m in melodies]), args.colour, engine.codec.min_pitch)
        latent_map_png(coords, args.out, explained, values=values, value_name=args.colour,
                       title=f"{engine.model_name}: {len(windows)} windows coloured by {args.colour}")
    print(f"wrote {args.out} ({len(windows)} windows, PC1+PC2 explain {explained.sum():.0%}"
          + (f"; {skipped} file(s) without a window this model reads, e.g. in another meter" if skipped else "")
          + ")")
    if args.csv:
        lines = ["file,track,bar,x,y"] + [f"\"{w.path}\",{w.track},{w.bar},{x:.6f},{y:.6f}"
                                          for w, (x, y) in zip(windows, coords, strict=True)]
        Path(args.csv).write_text("\n".join(lines) + "\n")
        print(f"wrote {args.csv}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from seqvae.codec import read_midi
    from seqvae.engine.pictures import score_png

    score = read_midi(args.input)
    out = Path(args.out) if args.out else Path(args.input).with_suffix(".png")
    score_png(score, out, title=Path(args.input).name)
    lines = [line for line in score.lines if not line.is_drum and line.notes]
    print(f"wrote {out} ({len(lines)} line(s), {sum(len(line.notes) for line in lines)} notes)")
    return 0


def _print_bandwidths(choice: BandwidthChoice) -> None:
    print(f"  held-out melodies: mean distance {choice.target:.3f}, exact copies {choice.target_copies:.1%}")
    for h, d in choice.tried.items():
        mark = "  <- chosen" if h == choice.bandwidth else ""
        print(f"  bandwidth {h:<5g} samples' mean distance {d:.3f}, exact copies {choice.copies[h]:.1%}{mark}")


def cmd_attributes(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from seqvae.data.corpus import load_corpus
    from seqvae.engine import Engine
    from seqvae.engine.engine import SAMPLE_TEMPERATURE
    from seqvae.engine.side_files import fit_side_files

    engine = Engine.load(args.checkpoint, device=args.device, threads=args.threads)
    corpus = load_corpus(args.data)
    with tqdm(desc=f"encoding {args.split}", unit="window") as bar:
        fitted = fit_side_files(engine, corpus, args.split, args.limit, args.seed, args.centers, args.measure,
                                progress=bar.update)
    for choice in fitted.bandwidths:
        print(f"choosing the {choice.kernel} kernel's bandwidth: samples at T={SAMPLE_TEMPERATURE} against "
              f"{fitted.held_windows} {fitted.held_split} melodies' distance to the training windows")
        _print_bandwidths(choice)
        print(f"  its samples' weakest feature overlap with those melodies: {choice.weakest_overlap:.3f}"
              f"{'  <- kept' if choice is fitted.bandwidths[0] else ''}")
    prior_path, vectors_path = fitted.paths[0], fitted.paths[-1]
    print(f"latent prior: {fitted.prior.describe()}, from the {args.split} split, saved to {prior_path}; `sample` "
          "draws from it from now on")
    print(f"attribute vectors from {fitted.windows} {args.split} windows (top quartile minus bottom quartile of mu):")
    header = f"{'attribute':<17} {'bottom q':>9} {'top q':>9} {'|vector|':>9}"
    results = fitted.monotonicity
    if results:
        header += f" {'spearman':>9} {'up steps':>9} {'per-melody':>10}"
    print(header)
    for info in fitted.vectors.info:
        line = f"{info.name:<17} {info.low_mean:9.3f} {info.high_mean:9.3f} {info.norm:9.3f}"
        if info.name in results:
            r = results[info.name]
            line += f" {r.spearman:9.2f} {r.increasing_fraction:9.0%} {r.per_melody_spearman:10.2f}"
        print(line)
    if results:
        first = next(iter(results.values()))
        print(f"monotonicity: decoded attribute along amounts {first.amounts} on {fitted.measured_on} validation "
              "melodies (spearman of the means, fraction of steps up, mean per-melody spearman)")
    if engine.chord_bank is not None:
        bank_choice = fitted.bank_bandwidth
        if bank_choice is not None:
            print(f"choosing the chord bank's bandwidth: its samples under {fitted.held_windows} {fitted.held_split} "
                  "windows' chords against those melodies' distance to the training windows")
            _print_bandwidths(bank_choice)
        print(f"chord bank: {len(engine.chord_bank.events)} {args.split} windows and their chords, bandwidth "
              f"{engine.chord_bank.bandwidth:g}, saved to {fitted.paths[1]}; `sample` under chords draws near the "
              "windows whose chords are nearest")
    print(f"wrote {vectors_path}")
    return 0
