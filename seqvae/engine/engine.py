"""The inference facade: load a checkpoint once, then play with its latent space.

Both the CLI and the OSC server go through `Engine`, so everything a musician can do lives here
once: sample, encode/decode, interpolate, grid, morph, variations, attribute shifts, infill,
novelty, embeddings, and reading melodies from MIDI files or note lists.

Latents cross this API as float32 numpy arrays (cheap to cache, blend and send over the wire);
torch only runs inside the model lock, in inference mode, on the engine's device. The lock is taken
per model call, so a server's short requests can run between the pieces of heavy work (model_lock.py).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqvae.codec import EventCodec, Melody, Meter
from seqvae.codec.chords import PROGRESSION_FORMS, parse_progression
from seqvae.codec.scales import Key, PitchRange, allowed_classes
from seqvae.engine import latent as lat
from seqvae.engine.infill import infill_events
from seqvae.engine.inputs import (
    MidiWindow,
    clip_from_midi,
    clip_from_notes,
    default_meter,
    melody_from_midi,
    melody_from_notes,
    windows_from_midi,
)
from seqvae.engine.model_lock import ModelLock
from seqvae.models.attribute_vectors import ATTRIBUTE_FILE, AttributeVectors
from seqvae.models.chord_bank import ChordBank
from seqvae.models.device import pick_device
from seqvae.models.latent_prior import LatentPrior
from seqvae.models.precision import parse_precision
from seqvae.models.sampling import draw_uniforms

LatentLike = Melody | np.ndarray | Sequence[float]
CACHE_SIZE = 512
ENCODE_CHUNK = 512  # rows per encoder call: bounds memory, costs nothing in speed
DECODE_CHUNK = 4096  # rows per decoder call (the most `sample` asks for, so sampled results never depend on it)
NOVELTY_SAMPLES = 8
SAMPLE_TEMPERATURE = 0.5  # what `sample` decodes at unless told otherwise


def _check_temperature(temperature: float) -> float:
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature {temperature!r} is not a number: send 0 (greedy) or more") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"temperature {temperature!r} must be 0 (greedy) or a positive number such as 0.5")
    return value


def _check_seed(seed: int | None) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed {seed!r} must be a whole number from 0 up")
    return int(seed)


def _check_count(n: int, what: str, high: int = 4096) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= high:
        raise ValueError(f"{what}={n!r}: send a whole number from 1 to {high}")
    return int(n)


class Engine:
    """A loaded model plus everything needed to turn its latents into melodies and back.

    Safe to share between threads: each model call holds the model lock, the latent cache its own.
    Heavy work takes the model in pieces of at most `piece_rows` rows (None: as many as one call
    holds, for the CLI; a server sets a few) unless it runs inside `urgent()`. The
    engine owns the model it is given: it moves it to the device, puts it in eval mode and
    switches off its parameters' gradients (nothing here trains it).
    """

    def __init__(self, model: torch.nn.Module, directory: str | Path | None = None,
                 device: str | torch.device | None = None, name: str | None = None,
                 codec: EventCodec | None = None, extra: dict | None = None, precision: str = "auto") -> None:
        self.device_obj = pick_device(device)
        self.model = model.to(self.device_obj).eval()
        self.model.requires_grad_(False)
        self.precision = self.model.decoding_precision(parse_precision(precision))
        config = model.config
        self.config = config
        self.steps = int(config.steps)
        self.z_size = int(config.z_size)
        self.family = getattr(config, "family", None)
        self.model_name = name or str(getattr(config, "name", "model"))
        self.directory = Path(directory) if directory is not None else None
        self.extra = dict(extra or {})
        self.codec = codec or _codec_for(config, self.extra)
        self.meter = default_meter(self.steps, self.family)
        self._lock = ModelLock()
        self._cache_lock = threading.Lock()
        self.piece_rows: int | None = None
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._attributes: AttributeVectors | None = None
        if self.directory is not None and (self.directory / ATTRIBUTE_FILE).is_file():
            self._attributes = AttributeVectors.load(self.directory, self.z_size)
        self._prior = LatentPrior.load(self.directory, self.z_size) if self.directory is not None else None
        self.base_engine: Engine | None = None  # the engine a `with_priors` or `constrained` view was made from
        self.key: Key | None = None  # the constraints of a `constrained` view
        self.pitch_range: PitchRange | None = None
        self._allowed: torch.Tensor | None = None  # their allowed-class mask, read by every decode
        self.chord_classes = int(getattr(config, "chord_classes", 0) or 0)
        self.chord_bank = (ChordBank.load(self.directory, self.steps)
                           if self.directory is not None and self.chord_classes else None)
        self.progression: str | np.ndarray | None = None  # the chords of a `with_chords` view, read by every call

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, name_or_path: str | Path = "default", device: str | torch.device | None = None,
             threads: int | None = None, precision: str = "auto") -> Engine:
        """Load a shipped model by name ("default") or a checkpoint directory; CUDA if available. `precision`
        ("auto", "float32", "bfloat16") is the decoding arithmetic: see `SequenceVAE.decoding_precision`."""
        from seqvae.models import load_model

        if threads is not None:
            torch.set_num_threads(_check_count(threads, "threads", 256))
        dev = pick_device(device)
        loaded = load_model(name_or_path, device=str(dev))
        directory = Path(loaded.directory)
        name = directory.parent.name if directory.name == "model" else directory.name  # RUN_DIR/model -> RUN_DIR
        return cls(loaded.model, directory=loaded.directory, device=dev, name=name, extra=loaded.extra,
                   precision=precision)

    def with_priors(self, prior: LatentPrior | None, vectors: AttributeVectors | None, name: str) -> Engine:
        """A view named `name` that samples from `prior` and shifts along `vectors` but shares this engine's model,
        lock and latent cache (a personal model for one server client: nothing is loaded or copied)."""
        view = copy.copy(self)
        view.model_name = name
        view.base_engine = self.base_engine or self
        view.set_latent_prior(prior)
        view.set_attribute_vectors(vectors)
        return view

    def constrained(self, key: Key | str | None = None, pitch_range: PitchRange | str | None = None) -> Engine:
        """A view whose every melody is decoded in `key` and `pitch_range` (None: unconstrained), sharing this
        engine's model, lock, caches and priors: the masks act inside decoding, so a note-on outside is never
        chosen (seqvae.codec.scales). Strings parse as "D dorian" and "57-76"; a pair that leaves no pitch is
        a clear ValueError."""
        key = Key.parse(key) if isinstance(key, str) else key
        pitch_range = PitchRange.parse(pitch_range) if isinstance(pitch_range, str) else pitch_range
        allowed = None
        if key is not None or pitch_range is not None:
            allowed = torch.from_numpy(allowed_classes(self.codec, key, pitch_range))
        view = copy.copy(self)
        view.base_engine = self.base_engine or self
        view.key, view.pitch_range, view._allowed = key, pitch_range, allowed
        return view

    def with_chords(self, progression: str | Sequence[int] | np.ndarray) -> Engine:
        """A view of a chord model whose every encode and decode hears `progression`, sharing this engine's model,
        lock, caches, priors and constraints. A string ("Am F", "Am:2 F:2") is read in the engine's meter from the
        window's start; per-step classes (0 = no chord) are taken as they are. Either repeats when shorter than a
        window and is cut when longer (a whole clip reads on: see `chord_steps`). A model without chords, or a bad
        symbol, is a clear ValueError."""
        if not self.chord_classes:
            raise ValueError(f"model {self.model_name!r} takes no chords: use a chord model, e.g. --model chords "
                             "(a checkpoint of mel_2bar_chords), or leave --chords out")
        if isinstance(progression, str):
            parse_progression(progression, self.meter, self.steps)  # a bad symbol fails here, not at the first call
            spec: str | np.ndarray = progression
        else:
            spec = _check_chord_steps(progression, self.chord_classes)
        view = copy.copy(self)
        view.base_engine = self.base_engine or self
        view.progression = spec
        return view

    def chord_steps(self, n_steps: int) -> np.ndarray:
        """The view's chord class per step for `n_steps` steps from the window's (or clip's) start: the
        progression repeats when shorter and is cut when longer."""
        if self.progression is None:
            raise ValueError(f"engine {self.model_name!r} has no progression: make a view with with_chords(\"Am F\")")
        if isinstance(self.progression, str):
            return parse_progression(self.progression, self.meter, int(n_steps))
        return np.resize(self.progression, int(n_steps)).astype(np.uint8)

    def _row_chords(self, rows: int, chords: np.ndarray | None) -> np.ndarray | None:
        """Chord classes [rows, steps] for one model call: those given, else the view's progression on every row
        (None for a model without chords)."""
        if chords is not None:
            arr = np.asarray(chords)
            if arr.shape != (rows, self.steps) or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"chords have shape {arr.shape} ({arr.dtype}); send [{rows}, {self.steps}] "
                                 "integer chord classes, a row per window")
            return np.ascontiguousarray(arr, dtype=np.int64)
        if not self.chord_classes:
            return None
        if self.progression is None:
            raise ValueError(f"model {self.model_name!r} is chord-conditioned: give it a progression with --chords, "
                             f"e.g. --chords \"Am F\" ({PROGRESSION_FORMS}), or Engine.with_chords(\"Am F\")")
        return np.ascontiguousarray(np.broadcast_to(self.chord_steps(self.steps), (rows, self.steps)), dtype=np.int64)

    @property
    def device(self) -> str:
        return str(self.device_obj)

    def urgent(self) -> AbstractContextManager[None]:
        """Model calls of this thread inside the block go before waiting heavy work, and in one piece."""
        return self._lock.urgent()

    def _rows_per_call(self, most: int, piece_rows: int | None = None) -> int:
        pieces = piece_rows or self.piece_rows
        if pieces is None or self._lock.is_urgent():
            return most
        return max(1, min(most, pieces))

    def __repr__(self) -> str:
        chords = self.progression if isinstance(self.progression, str) or self.progression is None else "per-step"
        constraints = "".join(f", {what}={value}" for what, value in (("key", self.key), ("range", self.pitch_range),
                                                                         ("chords", chords)) if value is not None)
        return (f"Engine({self.model_name!r}, {self.steps} steps, z={self.z_size}, device={self.device}, "
                f"precision={self.precision}{constraints})")

    # ------------------------------------------------------------ conversions
    def _events_of(self, melodies: Melody | Iterable[Melody]) -> np.ndarray:
        items = [melodies] if isinstance(melodies, Melody) else list(melodies)
        if not items:
            raise ValueError("no melodies given: send at least one")
        out = np.empty((len(items), self.steps), dtype=np.int64)
        for i, melody in enumerate(items):
            out[i] = self._events_one(melody, i)
        return out

    def _events_one(self, melody: Melody, index: int = 0) -> np.ndarray:
        if not isinstance(melody, Melody):
            raise ValueError(f"item {index + 1} is a {type(melody).__name__}, not a Melody: read one with "
                             "melody_from_midi or melody_from_notes")
        if melody.n_steps != self.steps:
            raise ValueError(
                f"melody {index + 1} has {melody.n_steps} steps but this model reads {self.steps}-step windows "
                f"({self.steps // self.meter.steps_per_bar} bars of {self.meter}): pick a window with "
                "melody_from_midi(..., bar=N) / --bar N, or play it whole, window by window, with seqvae.engine.clips"
            )
        if melody.codec.num_classes != self.codec.num_classes or melody.codec != self.codec:
            raise ValueError(f"melody {index + 1} uses pitch range {melody.codec.min_pitch}..{melody.codec.max_pitch}"
                             f" but the model uses {self.codec.min_pitch}..{self.codec.max_pitch}")
        return melody.events

    def _melodies(self, tokens: np.ndarray, like: Melody | None = None) -> list[Melody]:
        """Decoded token rows as melodies, carrying the tempo/sound/meter of `like` when given."""
        if like is not None:
            meter, bpm, program, velocity = like.meter, like.bpm, like.program, like.velocity
            if not meter.fits(self.steps):
                meter = self.meter
        else:
            meter, bpm, program, velocity = self.meter, 120.0, 0, 80
        return [Melody(row, meter=meter, bpm=bpm, program=program, velocity=velocity, codec=self.codec)
                for row in tokens]

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        return torch.Generator(device=self.device_obj).manual_seed(seed)

    # ------------------------------------------------------------- model calls
    def encode_events(self, events: np.ndarray, progress: Callable[[int], None] | None = None,
                      chords: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma), each float32 [n, Z], for event windows [n, steps]: the one place encoding is batched.
        `progress` is called with the number of windows after each batch. A chord model hears `chords` [n, steps]
        (default: the view's progression on every window)."""
        events = self._check_event_rows(events)
        row_chords = self._row_chords(len(events), chords)
        mu, sigma = [], []
        chunk = self._rows_per_call(ENCODE_CHUNK)
        for i in range(0, len(events), chunk):
            x = torch.from_numpy(events[i:i + chunk]).to(self.device_obj)
            c = None if row_chords is None else torch.from_numpy(row_chords[i:i + chunk]).to(self.device_obj)
            with self._lock, torch.inference_mode():
                m, s = self.model.encode(x) if c is None else self.model.encode(x, chords=c)
            mu.append(m.float().cpu().numpy())
            sigma.append(s.float().cpu().numpy())
            if progress is not None:
                progress(len(m))
        return np.concatenate(mu), np.concatenate(sigma)

    def decode_events(self, z: np.ndarray, temperature: float = 0.0, seed: int | None = None,
                      forced: np.ndarray | None = None, mask: np.ndarray | None = None,
                      chords: np.ndarray | None = None, piece_rows: int | None = None) -> np.ndarray:
        """Event windows [n, steps] for latents [n, Z]: the one place decoding is batched. Greedy unless
        `temperature` > 0 (then `seed` makes it repeatable); where `mask` [n, steps] is True the step is
        `forced`'s token, kept and fed back. A chord model decodes under `chords` [n, steps] (default: the view's
        progression on every row). `piece_rows` overrides the engine's pieces for this call's heavy work."""
        return self._decode_rows(z, temperature, seed, forced, mask, scored=False, chords=chords,
                                 piece_rows=piece_rows)[0]

    def decode_scored(self, z: np.ndarray, temperature: float = 0.0, seed: int | None = None,
                      forced: np.ndarray | None = None, mask: np.ndarray | None = None,
                      chords: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """As `decode_events`, plus each step's log-probability under the model (float32 [n, steps]): the
        likelihood of forced steps comes from the same pass that decodes the free ones."""
        tokens, scores = self._decode_rows(z, temperature, seed, forced, mask, scored=True, chords=chords)
        assert scores is not None
        return tokens, scores

    def _decode_rows(self, z: np.ndarray, temperature: float, seed: int | None, forced: np.ndarray | None,
                     mask: np.ndarray | None, scored: bool, chords: np.ndarray | None = None,
                     piece_rows: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        arr = self._check_latent_rows(z)
        row_chords = self._row_chords(len(arr), chords)
        temperature, seed = _check_temperature(temperature), _check_seed(seed)
        if (forced is None) != (mask is None):
            raise ValueError("forced and mask go together: send both or neither")
        if forced is not None:
            forced = self._check_event_rows(forced, "forced tokens")
            mask = np.asarray(mask, dtype=bool)
            if forced.shape != (len(arr), self.steps) or mask.shape != forced.shape:
                raise ValueError(f"forced tokens {forced.shape} and mask {mask.shape} must both be "
                                 f"[{len(arr)}, {self.steps}], a row per latent")
        generator = self._generator(seed) if temperature > 0 else None
        # The sampling draws of each block of rows are taken before it is cut into pieces, so a seeded sample's
        # notes never depend on the pieces (nor on who else is waiting for the model).
        chunk = self._rows_per_call(DECODE_CHUNK, piece_rows)
        parts, scores = [], []
        for block in range(0, len(arr), DECODE_CHUNK):
            draws = draw_uniforms(self.steps, len(arr[block:block + DECODE_CHUNK]), temperature, generator)
            for i in range(block, min(block + DECODE_CHUNK, len(arr)), chunk):
                rows = arr[i:i + chunk]
                score = torch.empty(len(rows), self.steps, dtype=torch.float32) if scored else None
                with self._lock:
                    parts.append(self._decode(rows, temperature, None if forced is None else forced[i:i + chunk],
                                              None if mask is None else mask[i:i + chunk], score,
                                              None if draws is None else draws[:, i - block:i - block + len(rows)],
                                              None if row_chords is None else row_chords[i:i + chunk]
                                              ).cpu().numpy())
                if score is not None:
                    scores.append(score.numpy())
        return np.concatenate(parts), np.concatenate(scores) if scored else None

    def _decode(self, z: np.ndarray | torch.Tensor, temperature: float, forced: np.ndarray | None,
                mask: np.ndarray | None, log_probs: torch.Tensor | None, uniforms: torch.Tensor | None,
                chords: np.ndarray | None = None) -> torch.Tensor:
        """One decoder call on the engine's device, in its precision (the caller holds the lock)."""
        zt = torch.as_tensor(z, dtype=torch.float32, device=self.device_obj)
        if forced is not None:
            forced = torch.as_tensor(forced, device=self.device_obj)
            mask = torch.as_tensor(mask, device=self.device_obj)
        extra = {} if chords is None else {"chords": torch.as_tensor(chords, device=self.device_obj)}
        return self.model.decode(zt, temperature=temperature, forced=forced, forced_mask=mask,
                                 precision=self.precision, log_probs=log_probs, uniforms=uniforms,
                                 allowed=self._allowed, **extra)

    def _check_event_rows(self, events: np.ndarray, what: str = "events") -> np.ndarray:
        arr = np.asarray(events)
        if arr.ndim != 2 or arr.shape[1] != self.steps or len(arr) < 1:
            raise ValueError(f"{what} have shape {tuple(arr.shape)}; send [n, {self.steps}] event windows")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{what} must hold whole event classes, got {arr.dtype}")
        return np.ascontiguousarray(arr, dtype=np.int64)

    def _check_latent_rows(self, z: np.ndarray | Sequence[float]) -> np.ndarray:
        arr = np.asarray(z, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != self.z_size or arr.shape[0] < 1:
            raise ValueError(f"latents have shape {tuple(arr.shape)}; send [n, {self.z_size}] or [{self.z_size}]")
        if not np.all(np.isfinite(arr)):
            raise ValueError("latents contain NaN or infinity: send finite numbers")
        return np.ascontiguousarray(arr)

    def _latents(self, items: Sequence[LatentLike]) -> list[np.ndarray]:
        """Latent vectors for melodies (posterior mean, cached by content) or for given vectors."""
        out: list[np.ndarray | None] = [None] * len(items)
        missing: dict[bytes, list[int]] = {}
        rows: list[np.ndarray] = []
        # Views share the cache: a melody's latent under one progression is not its latent under another.
        heard = b"" if self.progression is None else b"chords:" + self.chord_steps(self.steps).tobytes()
        for i, item in enumerate(items):
            if isinstance(item, Melody):
                events = self._events_one(item, i)
                key = events.tobytes() + heard
                with self._cache_lock:
                    hit = self._cache.get(key)
                    if hit is not None:
                        self._cache.move_to_end(key)
                if hit is not None:
                    out[i] = hit
                else:
                    if key not in missing:
                        rows.append(events)
                    missing.setdefault(key, []).append(i)
            else:
                out[i] = lat.as_latent(item, self.z_size, f"latent {i + 1}")
        if rows:
            mu, _ = self.encode_events(np.stack(rows))  # outside the cache lock: other threads read it meanwhile
            with self._cache_lock:
                for (key, where), z in zip(missing.items(), mu, strict=True):
                    self._cache[key] = z  # shared, never written: public accessors hand out copies
                    for i in where:
                        out[i] = z
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return out  # type: ignore[return-value]

    @staticmethod
    def _template(*items: LatentLike) -> Melody | None:
        return next((item for item in items if isinstance(item, Melody)), None)

    # --------------------------------------------------------- the operations
    def sample(self, n: int = 1, temperature: float = SAMPLE_TEMPERATURE, seed: int | None = None) -> list[Melody]:
        """`n` melodies from the prior (see `draw_prior`), decoded at `temperature` (0 = greedy)."""
        n = _check_count(n, "n")
        temperature = _check_temperature(temperature)
        seed = _check_seed(seed)
        z = self.draw_prior(n, np.random.default_rng(seed))
        return self._melodies(self.decode_events(z, temperature, seed))

    def draw_prior(self, n: int, rng: np.random.Generator, chords: np.ndarray | None = None) -> np.ndarray:
        """[n, Z] latents: from the checkpoint's fitted latent prior when it has one, else N(0, I). A chord model
        with a chord bank draws from p(z | chords) under the view's progression, or under `chords` [n, steps] one
        progression per row (seqvae.models.chord_bank)."""
        if self.chord_bank is not None and self._prior is not None and (chords is not None or self.progression
                                                                         is not None):
            return self._draw_under_chords(n, rng, chords)
        if self._prior is not None:
            return self._prior.sample(n, rng)
        return rng.standard_normal((n, self.z_size), dtype=np.float32)

    @property
    def prior_draw_runs_model(self) -> bool:
        """Whether `draw_prior` (without per-row chords) runs the encoder: a chord bank under a progression does.
        The server then draws on its inference worker, not on its receiving loop."""
        return self.chord_bank is not None and self._prior is not None and self.progression is not None

    def _draw_under_chords(self, n: int, rng: np.random.Generator, chords: np.ndarray | None) -> np.ndarray:
        """Kernel draws around the latents of the bank's windows nearest each row's progression, encoded under it."""
        return self.chord_bank.draw_latents(self._row_chords(n, chords), rng,
                                            lambda melodies, heard: self.encode_events(melodies, chords=heard)[0],
                                            self._prior, self.codec.num_classes)

    @property
    def latent_prior(self) -> LatentPrior | None:
        return self._prior

    def set_latent_prior(self, prior: LatentPrior | None) -> None:
        """Sample from this prior (e.g. just fitted), or from N(0, I) with None."""
        if prior is not None and prior.z_size != self.z_size:
            raise ValueError(f"the latent prior has {prior.z_size} dims but the model's latent has {self.z_size}")
        self._prior = prior

    def encode(self, melodies: Melody | Iterable[Melody]) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma), each [n, Z]: the posterior over z for each melody."""
        return self.encode_events(self._events_of(melodies))

    def decode(self, z: np.ndarray | Sequence[float], temperature: float = 0.0, seed: int | None = None,
               like: Melody | None = None, chords: np.ndarray | None = None,
               piece_rows: int | None = None) -> list[Melody]:
        """Melodies for latents [n, Z] (or one [Z]); greedy unless `temperature` > 0. A chord model hears `chords`
        [n, steps] when given (a clip's windows, each its own part), else the view's progression on every row.
        `piece_rows` overrides the engine's pieces for this call (see the class docstring)."""
        return self._melodies(self.decode_events(z, temperature, seed, chords=chords, piece_rows=piece_rows), like)

    def reconstruct(self, melody: Melody, temperature: float = 0.0, seed: int | None = None) -> Melody:
        """Encode to the posterior mean and decode again: what the model makes of this melody."""
        (z,) = self._latents([melody])
        return self.decode(z, temperature, seed, like=melody)[0]

    def latent(self, item: LatentLike) -> np.ndarray:
        """The latent vector [Z] of a melody (cached posterior mean) or of a given vector (a copy)."""
        return self._latents([item])[0].copy()

    def slerp(self, za: np.ndarray, zb: np.ndarray, t: float) -> np.ndarray:
        """Spherical interpolation between two latents (numpy only, no model call)."""
        return lat.slerp(lat.as_latent(za, self.z_size, "za"), lat.as_latent(zb, self.z_size, "zb"),
                         lat.check_position(t))

    def latent_path(self, a: LatentLike, b: LatentLike, t: float, method: str = "slerp") -> np.ndarray:
        """The latent at position t between a and b (melodies are encoded once and cached)."""
        za, zb = self._latents([a, b])
        return lat.interpolate_latents(za, zb, lat.check_position(t), method)

    def interpolate(self, a: LatentLike, b: LatentLike, points: int = 8, method: str = "slerp",
                    temperature: float = 0.0, seed: int | None = None) -> list[Melody]:
        """`points` melodies from a to b, both ends included (the ends are decoded, as Magenta does)."""
        positions = lat.path_positions(points)
        za, zb = self._latents([a, b])
        z = lat.interpolate_latents(za, zb, positions, method)
        return self.decode(z, temperature, seed, like=self._template(a, b))

    def grid(self, a: LatentLike, b: LatentLike, c: LatentLike, d: LatentLike, rows: int = 4, cols: int = 4,
             method: str = "slerp", temperature: float = 0.0, seed: int | None = None) -> list[list[Melody]]:
        """rows x cols melodies spanning four corners: a top-left, b top-right, c bottom-left, d bottom-right."""
        corners = self._latents([a, b, c, d])
        z = lat.grid_latents(*corners, rows, cols, method)
        flat = self.decode(z.reshape(-1, self.z_size), temperature, seed, like=self._template(a, b, c, d))
        return [flat[r * cols:(r + 1) * cols] for r in range(rows)]

    def morph(self, a: LatentLike, b: LatentLike, t: float, temperature: float = 0.0, seed: int = 0,
              method: str = "slerp") -> Melody:
        """The melody at knob position t (0 = a, 1 = b); deterministic, endpoints cached.

        Greedy by default; with a temperature the fixed `seed` keeps it repeatable, so a knob
        returning to a position returns to the same melody.
        """
        z = self.latent_path(a, b, t, method)
        return self.decode(z, temperature, seed, like=self._template(a, b))[0]

    def morph_xy(self, a: LatentLike, b: LatentLike, c: LatentLike, d: LatentLike, x: float, y: float,
                 temperature: float = 0.0, seed: int = 0, method: str = "slerp") -> Melody:
        """The melody at (x, y) of an XY pad with corners a (0,0), b (1,0), c (0,1), d (1,1)."""
        corners = self._latents([a, b, c, d])
        z = lat.blend_corners(*corners, lat.check_position(x, "x"), lat.check_position(y, "y"), method)
        return self.decode(z, temperature, seed, like=self._template(a, b, c, d))[0]

    def similar(self, melody: LatentLike, n: int = 4, amount: float = 0.3, seed: int | None = None,
                temperature: float = 0.0) -> list[Melody]:
        """`n` variations: amount 0 is the melody's own reconstruction, 1 is an unrelated prior sample."""
        n = _check_count(n, "n")
        seed = _check_seed(seed)
        (z,) = self._latents([melody])
        zs = lat.variations(z, n, amount, np.random.default_rng(seed), self.draw_prior)
        return self.decode(zs, temperature, seed, like=self._template(melody))

    # -------------------------------------------------------------- attributes
    @property
    def attributes(self) -> list[str]:
        """Names of the attribute vectors this checkpoint has (empty until `seqvae attributes` ran)."""
        return [] if self._attributes is None else list(self._attributes.names)

    @property
    def attribute_vectors(self) -> AttributeVectors | None:
        return self._attributes

    def set_attribute_vectors(self, vectors: AttributeVectors | None) -> None:
        """Use these vectors for `shift` (e.g. just computed, before or without saving them)."""
        if vectors is not None and vectors.vectors.shape[1] != self.z_size:
            raise ValueError(f"attribute vectors have {vectors.vectors.shape[1]} dims but the model's latent has "
                             f"{self.z_size}: compute them for this model with `seqvae attributes`")
        self._attributes = vectors

    def attribute_vector(self, attribute: str) -> np.ndarray:
        """The stored direction for `attribute` [Z]; a clear error naming the command when there are none."""
        if self._attributes is None:
            where = self.directory or self.model_name
            raise ValueError(
                f"model '{self.model_name}' has no attribute vectors yet: compute them with "
                f"`seqvae attributes {where} --data BUILT_DIR` (writes {ATTRIBUTE_FILE} beside the weights)"
            )
        return self._attributes.vector(attribute)

    def shift(self, melody: LatentLike, attribute: str, amount: float = 1.0, temperature: float = 0.0,
              seed: int | None = None) -> Melody:
        """Move a melody along an attribute vector; amount 1 = the gap between the top and bottom quartiles."""
        vector = self.attribute_vector(attribute)
        amount = lat.check_position(amount, "amount", -10.0, 10.0)
        (z,) = self._latents([melody])
        return self.decode(z + np.float32(amount) * vector, temperature, seed, like=self._template(melody))[0]

    # ------------------------------------------------------------------ infill
    def bar_span(self, melody: Melody, first_bar: int, last_bar: int) -> tuple[int, int]:
        """Steps [start, end) of bars first..last (1-based, inclusive) in this melody's meter."""
        per_bar = melody.meter.steps_per_bar if melody.meter.fits(self.steps) else self.meter.steps_per_bar
        n_bars = self.steps // per_bar
        for name, value in (("first bar", first_bar), ("last bar", last_bar)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= n_bars:
                raise ValueError(f"{name} {value!r} does not exist: this melody has bars 1..{n_bars}")
        if first_bar > last_bar:
            raise ValueError(f"bars {first_bar}-{last_bar} run backwards: send first <= last, e.g. 1-{n_bars - 1}")
        if first_bar == 1 and last_bar == n_bars:
            raise ValueError(f"bars 1-{n_bars} are the whole melody: keep at least one bar (or use sample)")
        return (first_bar - 1) * per_bar, last_bar * per_bar

    def infill(self, melody: Melody, first_bar: int, last_bar: int, seed: int | None = None,
               temperature: float = 0.5) -> Melody:
        """Regenerate bars first..last (1-based, inclusive); every other bar sounds exactly as before.

        A search (infill.py): latents near the melody with the gap blanked, then near the best gaps found,
        each decoded with the kept steps forced and ranked by their likelihood; a note held into a kept bar is
        struck again where the new gap ends on another pitch. Greedy at temperature 0; a seed makes it repeatable.
        """
        events = self._events_one(melody)
        start, end = self.bar_span(melody, first_bar, last_bar)
        tokens = infill_events(self, events, start, end, _check_temperature(temperature), _check_seed(seed))
        return self._melodies(tokens[None], like=melody)[0]

    # ----------------------------------------------------------------- scoring
    def novelty(self, melodies: Melody | Iterable[Melody], samples: int = NOVELTY_SAMPLES,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Negative ELBO per step (nats) for each melody: high means unlike what the model learned.

        Reconstruction is averaged over `samples` draws of z from the posterior, using the same fixed
        noise for every melody, so a melody gets the same score alone or in any batch. Each draw's
        likelihood is a decode with every step forced, scored (`decode_scored`): the fast decoding path.
        """
        events = self._events_of(melodies)
        samples = _check_count(samples, "samples", 256)
        noise = np.random.default_rng(0).standard_normal((samples, 1, self.z_size)).astype(np.float32)
        scores = np.empty(len(events), dtype=np.float64)
        chunk = max(1, self._rows_per_call(ENCODE_CHUNK) // samples)
        for i in range(0, len(events), chunk):
            part = events[i:i + chunk]
            mu, sigma = self.encode_events(part)
            z = (mu[None] + sigma[None] * noise).reshape(-1, self.z_size)
            x = np.ascontiguousarray(np.broadcast_to(part[None], (samples, *part.shape)).reshape(-1, self.steps))
            _, log_probs = self.decode_scored(z, forced=x, mask=np.ones(x.shape, dtype=bool))
            recon = -log_probs.astype(np.float64).reshape(samples, len(part), self.steps).sum(-1).mean(0)
            sig = np.maximum(sigma.astype(np.float64), 1e-12)
            kl = 0.5 * np.sum(mu.astype(np.float64) ** 2 + sig**2 - 1.0 - 2.0 * np.log(sig), axis=1)
            scores[i:i + len(part)] = (recon + kl) / self.steps
            if progress is not None:
                progress(len(part))
        return scores

    def embed(self, melodies: Melody | Iterable[Melody]) -> np.ndarray:
        """Posterior means [n, Z]: where each melody sits in the latent space (for maps, search)."""
        return self.encode(melodies)[0]

    # ------------------------------------------------------------------ input
    def melody_from_notes(self, notes: Sequence[Sequence[float]], bpm: float = 120.0, program: int = 0,
                          meter: Meter | str | None = None) -> Melody:
        """A melody from (pitch, start_beat, duration_beats, velocity) tuples, in this model's window."""
        chosen = self._meter(meter)
        return melody_from_notes(notes, self.steps, self.codec, chosen, bpm=bpm, program=program)

    def melody_from_midi(self, path: str | Path, track: int | str | None = None, bar: int | None = None) -> Melody:
        """One window of one line of a MIDI file; a clear error lists the tracks/bars to choose from."""
        return melody_from_midi(path, self.steps, self.codec, track=track, bar=bar)

    def clip_from_notes(self, notes: Sequence[Sequence[float]], bpm: float = 120.0, program: int = 0,
                        meter: Meter | str | None = None) -> Melody:
        """As `melody_from_notes`, but notes may run past one window: a clip of whole bars (engine/clips.py)."""
        return clip_from_notes(notes, self.steps, self.codec, self._meter(meter), bpm=bpm, program=program)

    def clip_from_midi(self, path: str | Path, track: int | str | None = None) -> Melody:
        """One line of a MIDI file whole, as a clip of whole bars (one window when it fits in one)."""
        return clip_from_midi(path, self.steps, self.codec, track=track)

    def windows_from_midi(self, path: str | Path, track: int | str | None = None) -> list[MidiWindow]:
        """Every non-overlapping, non-empty window of a file's melodic lines (for maps and novelty)."""
        return windows_from_midi(path, self.steps, self.codec, track=track)

    def _meter(self, meter: Meter | str | None) -> Meter:
        if meter is None:
            return self.meter
        chosen = Meter.parse(meter) if isinstance(meter, str) else meter
        if not chosen.fits(self.steps):
            raise ValueError(f"meter {chosen} does not fill this model's {self.steps}-step window; "
                             f"send e.g. {self.meter}")
        return chosen


def _check_chord_steps(progression: Sequence[int] | np.ndarray, classes: int) -> np.ndarray:
    arr = np.asarray(progression)
    if arr.ndim != 1 or len(arr) < 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"chords {arr.shape} ({arr.dtype}) must be a progression string ({PROGRESSION_FORMS}) or a "
                         "non-empty row of whole chord classes, one per step")
    if arr.min() < 0 or arr.max() >= classes:
        raise ValueError(f"chord classes must lie in 0..{classes - 1} (0 = no chord, see seqvae.codec.chords)")
    return arr.astype(np.uint8)


def _codec_for(config: Any, extra: dict) -> EventCodec:
    """The codec a model was trained with: from the checkpoint if it says, else the default range."""
    spec = extra.get("codec") if isinstance(extra, dict) else None
    if spec is None:
        low, high = getattr(config, "min_pitch", None), getattr(config, "max_pitch", None)
        spec = {"min_pitch": low, "max_pitch": high} if low is not None and high is not None else None
    codec = EventCodec(**spec) if spec else EventCodec()
    classes = getattr(config, "num_classes", codec.num_classes)
    if int(classes) != codec.num_classes:
        raise ValueError(f"model has {classes} output classes but the codec {codec} has {codec.num_classes}; "
                         "the checkpoint's codec range is missing from its config")
    return codec
