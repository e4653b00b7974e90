"""Personal models (Magenta.js MidiMe's idea): a trained model's latent prior and attribute vectors refitted on one
user's melodies, so `sample` plays in their style, in seconds on a CPU.

The windows of the user's MIDI files are encoded; the prior becomes a kernel density over their latents
(`LatentPrior.fit_personal`: with few windows it borrows the base prior's covariance shape), its bandwidth chosen
by the data-copying test (evaluate/copying.py) once there are windows to hold out; the attribute vectors are
refitted as `seqvae attributes` fits them (evaluate/attributes.py), each one the user's set cannot define (too few
windows, or an attribute constant over them) kept from the base. An optional short fine-tune (train/fine_tune.py)
also bends the weights. The result is a model directory like any other, plus `personalized.json` saying where it
came from; the server builds the same from a client's slots at run time (`personal_engine`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqvae.codec import Melody, MidiReadError, read_midi
from seqvae.codec.atomic_files import atomic_write_bytes
from seqvae.codec.midi import is_midi_path
from seqvae.engine.clips import split_windows
from seqvae.engine.engine import SAMPLE_TEMPERATURE, Engine
from seqvae.engine.inputs import shipped_models_for
from seqvae.evaluate.attributes import compute_attribute_vectors
from seqvae.evaluate.copying import BandwidthChoice, match_held_out_novelty
from seqvae.models.attribute_vectors import AttributeVectors
from seqvae.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from seqvae.models.latent_prior import MAX_CENTERS, PERSONAL_MIN_WINDOWS, LatentPrior

PROVENANCE_FILE = "personalized.json"
MIN_WINDOWS = PERSONAL_MIN_WINDOWS  # below this there is no spread to fit: refused
ATTRIBUTE_MIN_WINDOWS = 8  # quartiles of fewer windows are single melodies: the base vectors are kept
BANDWIDTH_MIN_WINDOWS = 10  # from here a fifth of the windows is held out to choose the kernel bandwidth
BANDWIDTH_SAMPLES = 256
MAX_MODEL_BYTES = 25_000_000  # a personal model directory stays under this (the prior's centres are capped)


def midi_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """The MIDI files named, folders searched recursively for .mid/.midi; a named file that is not MIDI is refused."""
    if not paths:
        raise ValueError("no files given: send MIDI files or folders of them")
    files: list[Path] = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_midi_path(p))
            if not found:
                raise ValueError(f"{path} holds no .mid/.midi files: send a folder of MIDI files")
            files += found
        elif path.is_file():
            if not is_midi_path(path):
                raise ValueError(f"{path} is not a MIDI file (suffix {path.suffix or 'none'}): send .mid or .midi "
                                 "files, or a folder of them")
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist: send MIDI files or folders of them")
    return list(dict.fromkeys(files))


@dataclass
class UserWindows:
    """Every window the model can read from the user's files, and why the other files gave none."""

    events: np.ndarray  # int64 [N, steps]
    per_file: dict[str, int]  # file -> windows taken from it
    skipped: dict[str, str] = field(default_factory=dict)  # file -> the reason it gave no window


def _why_no_window(engine: Engine, path: Path) -> str:
    """A file that gave no window: say so, naming the model that reads its meter when that is the reason."""
    meters = {meter for _, meter in read_midi(path).meters if meter is not None}
    if meters and not any(meter.fits(engine.steps) for meter in meters):
        shown = ", ".join(sorted(str(m) for m in meters))
        readers = sorted({name for meter in meters for name in shipped_models_for(meter)})
        hint = (" or ".join(f"--model {name}" for name in readers)) if readers else "a model of that meter"
        return (f"{path}: in {shown}, whose bars do not fill this model's {engine.steps}-step window "
                f"({engine.meter}); personalize {hint} for it")
    return f"{path}: no bar with notes in a meter this model reads ({engine.meter})"


def read_user_windows(engine: Engine, files: Sequence[Path], progress: Callable[[int], None] | None = None,
                      track: int | str | None = None) -> UserWindows:
    """Every non-empty window of every melodic line of `files` (or of line `track` of each); files without one are
    skipped with the reason. An error when no file gives a window (listing why) or when fewer than MIN_WINDOWS are
    found."""
    rows: list[np.ndarray] = []
    per_file: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for path in files:
        try:
            windows = engine.windows_from_midi(path, track=track)
            if not windows:
                skipped[str(path)] = _why_no_window(engine, path)
        except MidiReadError as exc:
            skipped[str(path)] = f"{exc} (not a readable MIDI file)"
            windows = []
        except ValueError as exc:  # no melodic line (only drums, or no notes), or no such track
            skipped[str(path)] = str(exc)
            windows = []
        if windows:
            per_file[str(path)] = len(windows)
            rows += [w.melody.events for w in windows]
        if progress is not None:
            progress(1)
    if not rows:
        reasons = list(skipped.values())
        shown = "; ".join(reasons[:5]) + (f"; and {len(reasons) - 5} more" if len(reasons) > 5 else "")
        raise ValueError(f"none of the {len(files)} file(s) has a melody this model can read: {shown}")
    if len(rows) < MIN_WINDOWS:
        bars = engine.steps // engine.meter.steps_per_bar
        raise ValueError(
            f"found {len(rows)} window(s) of {bars} bars of {engine.meter} in {len(per_file)} file(s); a personal "
            f"model needs at least {MIN_WINDOWS}: send more or longer melodies"
        )
    return UserWindows(np.stack(rows).astype(np.int64), per_file, skipped)


@dataclass
class PersonalFit:
    """The refitted prior and vectors, and how each was made, for the caller to report and record."""

    prior: LatentPrior
    vectors: AttributeVectors | None
    windows: int
    bandwidth: BandwidthChoice | None  # None: too few windows to hold some out, the default bandwidth
    refitted: list[str]  # attribute vectors fitted on the user's windows
    from_base: list[str]  # attribute vectors kept from the base model

    def summary(self) -> dict:
        out = {"windows": self.windows, "prior": self.prior.describe(),
               "attributes": {"refitted": self.refitted, "from_base": self.from_base}}
        if self.bandwidth is not None:
            out["bandwidth"] = {"chosen": self.bandwidth.bandwidth, "target_distance": self.bandwidth.target,
                                "samples_distance": self.bandwidth.reached}
        return out


def fit_personal(engine: Engine, events: np.ndarray, base_prior: LatentPrior | None,
                 base_vectors: AttributeVectors | None, seed: int = 0,
                 max_centers: int | None = None) -> PersonalFit:
    """Fit a personal prior and attribute vectors to event windows [N, steps] with `engine`'s encoder; the base
    model's prior lends its covariance shape, its vectors stand in for those the windows cannot define."""
    events = np.asarray(events, dtype=np.int64)
    if len(events) < MIN_WINDOWS:
        raise ValueError(f"a personal model needs at least {MIN_WINDOWS} windows, got {len(events)}")
    mu, _ = engine.encode_events(events)
    prior = LatentPrior.fit_personal(mu, base_prior, seed=seed, max_centers=max_centers)
    choice = None
    if len(events) >= BANDWIDTH_MIN_WINDOWS:
        order = np.random.default_rng(seed).permutation(len(events))
        held, kept = order[:len(events) // 5], order[len(events) // 5:]
        trial = LatentPrior.fit_personal(mu[kept], base_prior, seed=seed, max_centers=max_centers)

        def decode(z: np.ndarray) -> np.ndarray:
            return engine.decode_events(z, temperature=SAMPLE_TEMPERATURE, seed=seed)

        choice = match_held_out_novelty(trial, decode, events[kept], events[held], samples=BANDWIDTH_SAMPLES,
                                        seed=seed)
        prior = prior.with_bandwidth(choice.bandwidth, f"{prior.bandwidth_rule}; bandwidth where samples differ "
                                     f"from their nearest window of yours in {choice.reached:.0%} of steps, as "
                                     f"held-out ones do in {choice.target:.0%}")
    vectors, refitted, from_base = _personal_vectors(engine, mu, events, base_vectors)
    return PersonalFit(prior, vectors, len(events), choice, refitted, from_base)


def _personal_vectors(engine: Engine, mu: np.ndarray, events: np.ndarray, base: AttributeVectors | None,
                      ) -> tuple[AttributeVectors | None, list[str], list[str]]:
    own = None
    if len(events) >= ATTRIBUTE_MIN_WINDOWS:
        try:
            own = compute_attribute_vectors(mu, events, min_pitch=engine.codec.min_pitch)
        except ValueError:  # every attribute is constant over the user's windows
            own = None
    names = list(dict.fromkeys((base.names if base else []) + (own.names if own else [])))
    if not names:
        return None, [], []
    vectors, infos, refitted, from_base = [], [], [], []
    for name in names:
        source = own if own is not None and name in own.names else base
        index = source.names.index(name)
        vectors.append(source.vectors[index])
        if index < len(source.info):
            infos.append(source.info[index])
        (refitted if source is own else from_base).append(name)
    meta = {"personal": True, "windows": int(len(events)), "refitted": refitted, "from_base": from_base}
    return AttributeVectors(names, np.stack(vectors).astype(np.float32), infos, meta), refitted, from_base


@dataclass
class PersonalModel:
    """A personal engine built at run time (one server client's), with what it was fitted on, so it can be saved."""

    engine: Engine
    fit: PersonalFit
    sources: list[str]  # where its windows came from (slot names)


def personal_engine(engine: Engine, melodies: Sequence[Melody], name: str, sources: Sequence[str],
                    seed: int = 0) -> PersonalModel:
    """A view of `engine`'s model (see `Engine.with_priors`) with a prior and vectors fitted to `melodies`, for one
    server client; always fitted against the loaded model's own prior and vectors, never a previous view's."""
    base = engine.base_engine or engine
    rows = [split_windows(m, base.steps) for m in melodies]  # a clip slot gives each of its windows
    events = np.concatenate(rows) if rows else np.zeros((0, base.steps), np.int64)
    fit = fit_personal(base, events, base.latent_prior, base.attribute_vectors, seed=seed)
    return PersonalModel(base.with_priors(fit.prior, fit.vectors, name), fit, list(sources))


def save_personal_model(personal: PersonalModel, out: str | Path, command: str) -> Path:
    """Write a run-time personal model as a model directory (see `write_personal_model`), the base's weights
    beside its prior and vectors."""
    base = personal.engine.base_engine or personal.engine
    if base.directory is None:
        raise ValueError(f"model '{base.model_name}' has no checkpoint directory to take the weights from")
    provenance = {"base": {"name": base.model_name, "directory": str(base.directory)},
                  "slots": personal.sources, "command": command, "fine_tune": None}
    return write_personal_model(out, base.directory, personal.fit, provenance)


def check_new_directory(out: str | Path) -> Path:
    """`out` as a model directory still to be made: an existing path is never overwritten."""
    path = Path(out).expanduser()
    if path.exists():
        raise FileExistsError(f"{path} already exists and a personal model never overwrites anything: send a new "
                              "--out name (or remove that folder yourself)")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} does not exist: send an --out inside an existing folder")
    return path


def write_personal_model(out: str | Path, weights_dir: Path, fit: PersonalFit, provenance: dict) -> Path:
    """Make the model directory `out`: the weights of `weights_dir` (hard-linked when on the same disk, else copied:
    either way the directory stands alone), its config, the personal prior and vectors and personalized.json. It
    appears whole (built beside it, then renamed) and never replaces anything."""
    out = check_new_directory(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the model from other users
        try:
            os.link(weights_dir / WEIGHTS_FILE, staging / WEIGHTS_FILE)
            weights = "hard link"
        except OSError:
            shutil.copy2(weights_dir / WEIGHTS_FILE, staging / WEIGHTS_FILE)
            weights = "copy"
        shutil.copy2(weights_dir / CONFIG_FILE, staging / CONFIG_FILE)
        fit.prior.save(staging)
        if fit.vectors is not None:
            fit.vectors.save(staging)
        record = {**provenance, **fit.summary(), "weights": f"{weights} of {weights_dir / WEIGHTS_FILE}",
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write_bytes(staging / PROVENANCE_FILE, (json.dumps(record, indent=2) + "\n").encode())
        if out.exists():
            raise FileExistsError(f"{out} appeared while the personal model was being written: send a new --out")
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def centre_budget(weights_dir: Path, z_size: int) -> int:
    """How many kernel centres (float16) keep the directory under MAX_MODEL_BYTES beside these weights."""
    fixed = (weights_dir / WEIGHTS_FILE).stat().st_size + 4 * z_size * (z_size + 1) + 1_000_000  # + mean, L, rest
    return int(max(MIN_WINDOWS, min(MAX_CENTERS, (MAX_MODEL_BYTES - fixed) // (2 * z_size))))


@dataclass
class Personalized:
    """What `personalize` made: the directory, the fit, the user's windows and the seconds it took."""

    directory: Path
    fit: PersonalFit
    user: UserWindows
    seconds: float
    fine_tune_steps: int


def personalize(base: str | Path, inputs: Sequence[str | Path], out: str | Path, steps: int = 0,
                learning_rate: float | None = None, seed: int = 0, device: str | None = None,
                command: str = "seqvae personalize", on_file: Callable[[int], None] | None = None,
                track: int | str | None = None) -> Personalized:
    """The whole `seqvae personalize`: read the files, optionally fine-tune for `steps`, fit, write `out`.
    `on_file` is called once per file read (for a progress bar); the fine-tune shows the trainer's own."""
    from seqvae.train.fine_tune import FINE_TUNE_LEARNING_RATE, fine_tune

    started = time.perf_counter()
    out = check_new_directory(out)
    files = midi_inputs(inputs)
    engine = Engine.load(base, device=device)
    user = read_user_windows(engine, files, on_file, track)
    provenance = {
        "base": {"name": engine.model_name, "directory": str(engine.directory)},
        "files": user.per_file, "skipped": user.skipped, "command": command,
        "fine_tune": None,
    }
    with tempfile.TemporaryDirectory(prefix=".personalize.", dir=out.parent) as work:
        weights_dir, fitter = engine.directory, engine
        if steps:
            rate = FINE_TUNE_LEARNING_RATE if learning_rate is None else learning_rate
            weights_dir = fine_tune(engine.directory, engine.config, user.events, engine.meter, engine.codec,
                                    Path(work), steps, rate, seed, device, command)
            fitter = Engine.load(weights_dir, device=device)
            provenance["fine_tune"] = {"steps": steps, "learning_rate": rate}
        fit = fit_personal(fitter, user.events, engine.latent_prior, engine.attribute_vectors, seed=seed,
                           max_centers=centre_budget(weights_dir, engine.z_size))
        directory = write_personal_model(out, weights_dir, fit, provenance)
    return Personalized(directory, fit, user, time.perf_counter() - started, steps)
