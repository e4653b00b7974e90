"""Every named model setup in one place: architecture sizes plus the training recipe that goes with them.

A config is plain data (JSON round-trips it), so a checkpoint carries the exact setup it was trained
with and `build_model(config)` rebuilds the network without any other file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from seqvae.codec.chords import NUM_CHORD_CLASSES

ARCHITECTURES = ("lstm", "hier", "transformer")
SCHEDULED_SAMPLING_MODES = ("exact", "parallel")


@dataclass
class ModelConfig:
    """One model and its recipe. Names keep one meaning each: `steps` is the window length in 16th-note steps;
    counts of optimizer steps say so (`train_steps`, `latent_train_steps`); `segments` are what a hierarchical
    model splits its window into (2 bars each in the 16-bar models)."""

    name: str
    architecture: str  # 'lstm' | 'hier' | 'transformer'
    steps: int = 32  # window length in 16th-note steps
    family: str = "duple"
    min_pitch: int = 21
    max_pitch: int = 108
    z_size: int = 256
    # Recurrent encoder: bidirectional LSTM layer sizes (units per direction).
    encoder_sizes: tuple[int, ...] = (512,)
    # Recurrent decoder: LSTM layer sizes (the segment-level decoder for 'hier').
    decoder_sizes: tuple[int, ...] = (256, 256)
    # 'hier' only: conductor LSTM layer sizes and how many equal segments of the window it emits.
    conductor_sizes: tuple[int, ...] = (256,)
    segments: int = 1
    # 'hier' only: > 0 makes both sides two-level. Each segment is encoded to and decoded from a segment latent of
    # this size by a flat 2-bar model's encoder and decoder shapes; a bidirectional LSTM of conductor_sizes reads
    # the segment latents into z, and the conductor writes them back.
    segment_z_size: int = 0
    # 'transformer' only.
    d_model: int = 256
    n_heads: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 4
    ff_size: int = 1024
    dropout: float = 0.0
    # Training recipe (MusicVAE names where they exist).
    batch_size: int = 64
    learning_rate: float = 1e-3
    decay_rate: float = 0.9999  # lr = (lr0 - min_lr) * decay_rate**step + min_lr
    min_learning_rate: float = 1e-5
    max_beta: float = 0.2
    beta_rate: float = 0.99999  # beta = max_beta * (1 - beta_rate**step)
    free_bits: float = 0.0  # nats over the whole z, free of the KL penalty
    sampling_rate: float = 1000.0  # inverse sigmoid: p(sample) = 1 - k / (k + exp(step / k)); 0 = teacher forcing
    scheduled_sampling: str = "parallel"  # 'exact' (per-step loop) or 'parallel' (two-pass approximation)
    grad_clip: float = 1.0  # global gradient norm
    # Two-level 'hier': start the segment level from this trained flat model (name or directory), and keep it
    # fixed while the upper level learns (a new run only reads it; its weights then live in the run).
    init_segments: str = ""
    freeze_segments: bool = False
    # Two-level 'hier' with a frozen segment level: the first latent_train_steps optimizer steps fit the upper level
    # to the segment encoder's posteriors (no pass over events, see train/segment_latents.py); cross-entropy takes
    # over after them.
    latent_train_steps: int = 0
    # Fine-tuning: start every weight from this trained model (shipped name or directory) of the same shapes; the
    # schedules (learning rate, KL weight, scheduled sampling) go on from the step that model records it was trained
    # to, instead of restarting (models/warm_start.py).
    init_from: str = ""
    # Chord conditioning (flat 'lstm' only): > 0 feeds a one-hot of this many chord classes per step to the encoder
    # and the decoder (seqvae.codec.chords: 49, no chord then 12 roots x 4 triad qualities); 0 = unconditioned.
    chord_classes: int = 0
    # Share of a batch's rows whose decoder hears a draw from the prior in place of their posterior sample: for
    # those rows a chord model has to find the melody from its chords alone, so it cannot learn to ignore them.
    z_dropout: float = 0.0
    transpose_low: int = -5
    transpose_high: int = 6
    eval_every: int = 500
    checkpoint_every: int = 500
    train_steps: int = 50000  # optimizer steps of a run unless `seqvae train --steps` says otherwise
    notes: str = ""

    def __post_init__(self) -> None:
        for key in ("encoder_sizes", "decoder_sizes", "conductor_sizes"):
            setattr(self, key, tuple(int(v) for v in getattr(self, key)))
        problems = self.problems()
        if problems:
            raise ValueError(f"model config {self.name!r} is not usable: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        """Event vocabulary size: hold, note-off, one note-on per pitch (matches EventCodec)."""
        return self.max_pitch - self.min_pitch + 3

    @property
    def segment_steps(self) -> int:
        return self.steps // self.segments

    def problems(self) -> list[str]:
        out = []
        if self.architecture not in ARCHITECTURES:
            out.append(f"architecture {self.architecture!r} is unknown (use one of {', '.join(ARCHITECTURES)})")
        if self.steps < 2 or self.segments < 1 or self.steps % self.segments:
            out.append(f"steps={self.steps} must be >= 2 and split into segments={self.segments} equal parts")
        if not 0 <= self.min_pitch <= self.max_pitch <= 127:
            out.append(f"pitch range {self.min_pitch}..{self.max_pitch} must lie within 0..127")
        if self.z_size < 1 or not self.encoder_sizes or not self.decoder_sizes:
            out.append("z_size, encoder_sizes and decoder_sizes must be non-empty and positive")
        if self.architecture == "hier" and not self.conductor_sizes:
            out.append("a hierarchical model needs conductor_sizes")
        if self.segment_z_size < 0 or (self.segment_z_size and self.architecture != "hier"):
            out.append("segment_z_size must be >= 0, and > 0 only for a hierarchical model")
        if (self.init_segments or self.freeze_segments) and not self.segment_z_size:
            out.append("init_segments and freeze_segments need a two-level model (segment_z_size > 0)")
        if self.freeze_segments and not self.init_segments:
            out.append("freeze_segments needs init_segments: a frozen segment level must start trained")
        if self.latent_train_steps < 0 or (self.latent_train_steps and not self.freeze_segments):
            out.append("latent_train_steps must be >= 0, and > 0 only with freeze_segments: the latent stage fits the "
                       "upper level to a trained, fixed segment level")
        if self.init_from and self.init_segments:
            out.append("init_from and init_segments exclude each other: start the whole model or its segment level")
        if self.chord_classes < 0 or (self.chord_classes and (self.architecture != "lstm" or self.segment_z_size)):
            out.append("chord_classes must be >= 0, and > 0 only for a flat 'lstm' model (the chord-conditioned "
                       "encoder and decoder are the flat ones)")
        if not 0 <= self.z_dropout < 1:
            out.append(f"z_dropout={self.z_dropout} must be in [0, 1): the share of rows decoded from a prior draw")
        if self.architecture == "transformer" and self.d_model % self.n_heads:
            out.append(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.scheduled_sampling not in SCHEDULED_SAMPLING_MODES:
            out.append(f"scheduled_sampling must be one of {', '.join(SCHEDULED_SAMPLING_MODES)}")
        if self.batch_size < 1 or self.learning_rate <= 0:
            out.append("batch_size and learning_rate must be positive")
        return out


def config_to_dict(config: ModelConfig) -> dict:
    """JSON-ready dict (tuples become lists)."""
    out = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


# Fields that configs once had and no longer do: files written then (shipped ones included) still load. A fine-tune's
# schedule offset was run history, not recipe: the trainer now reads it from the init_from model.
_RETIRED_FIELDS = ("schedule_offset",)
# Fields renamed so that each name has one meaning: old files still load.
_RENAMED_FIELDS = {"bars": "segments", "default_steps": "train_steps", "latent_steps": "latent_train_steps"}


def config_from_dict(data: dict) -> ModelConfig:
    """Inverse of config_to_dict; unknown keys are an error so a typo is never silently ignored."""
    data = {_RENAMED_FIELDS.get(key, key): value for key, value in data.items() if key not in _RETIRED_FIELDS}
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"model config has unknown fields {unknown}; known fields: {sorted(known)}")
    return ModelConfig(**data)


# What a triple twin changes beyond the meter. The shipped `triple` model is mel_2bar_small_triple fine-tuned from
# `default`; its schedules go on from the step `default` was trained to. mel_16bar_hier_triple pays ten times
# the KL weight, which holds its KL near the free bits, so its prior samples stay in key and in step more often
# (docs/models/16bar_triple.md has the runs). The same change made the duple 16-bar model worse, so
# mel_16bar_hier keeps its weight. Two-level triple twins take `triple` as their fixed segment level.
_TRIPLE_CHANGES = {
    "mel_2bar_small": {"init_from": "default", "train_steps": 2000},
    "mel_16bar_hier": {"max_beta": 2.0},
}


def _triple(config: ModelConfig) -> ModelConfig:
    """The 3/4 and 6/8 twin of a duple config: 12-step bars, 24 or 192 steps."""
    segment_model = "triple" if config.init_segments else ""
    return dataclasses.replace(config, name=f"{config.name}_triple", steps=config.steps * 3 // 4, family="triple",
                               init_segments=segment_model, **_TRIPLE_CHANGES.get(config.name, {}))


_BASE = [
    ModelConfig(
        name="mel_2bar_small",
        architecture="lstm",
        notes="MusicVAE cat-mel_2bar_small: bi-LSTM 512 encoder, z 256, 2x256 LSTM decoder.",
    ),
    ModelConfig(
        name="mel_16bar_hier",
        architecture="hier",
        steps=256,
        segments=8,
        z_size=512,
        segment_z_size=256,
        encoder_sizes=(512,),
        conductor_sizes=(512,),
        decoder_sizes=(256, 256),
        free_bits=256.0,
        beta_rate=0.9999,
        sampling_rate=0.0,
        init_segments="default",
        freeze_segments=True,
        latent_train_steps=10000,
        eval_every=1000,
        train_steps=10000,
        notes="MusicVAE hierdec-mel_16bar with a hierarchical encoder too; its 2-bar segment level is the shipped "
        "model named by init_segments, kept fixed, so training on CPUs only has to learn how 8 segments follow one "
        "another, in segment-latent space (latent_train_steps). Steps past them train through the fixed decoder on "
        "events (scheduled sampling off: the fixed decoder cannot learn from it).",
    ),
    ModelConfig(
        name="mel_2bar_transformer",
        architecture="transformer",
        d_model=256,
        n_heads=4,
        encoder_layers=4,
        decoder_layers=3,
        ff_size=512,
        batch_size=512,
        train_steps=30000,
        eval_every=1000,
        notes="Transformer encoder (mean-pooled) and decoder with z added to every layer; MusicVAE's batch of 512, a "
        "GPU recipe (a step costs a GPU about what a batch of 64 does). Three decoder layers with "
        "512-wide feed-forwards: a sample(1) reads each decoder weight once per step, and this size keeps it within "
        "2x the LSTM default's time on the CPU (4 layers of 1024 took 2.85x). Scheduled sampling as the LSTM's: "
        "teacher forcing alone left greedy decoding far behind (0.58 against 0.84 teacher-forced at step 3,387).",
    ),
    ModelConfig(
        name="mel_16bar_transformer",
        architecture="transformer",
        steps=256,
        segments=16,
        z_size=512,
        d_model=256,
        n_heads=4,
        encoder_layers=4,
        decoder_layers=6,
        ff_size=1024,
        free_bits=256.0,
        sampling_rate=0.0,
    ),
]

# mel_2bar_small reading a chord per step, trained from scratch. Warm-started from `default` (as `triple` is), its
# decoder leaned on the chords too little (on-beat chord tones 0.75 against the real melodies' 0.81): `default`'s
# latent already spells the melody out, key and all. From scratch it reaches 0.78 (docs/models/chords.md).
_CHORDS = [
    dataclasses.replace(_BASE[0], name="mel_2bar_chords", chord_classes=NUM_CHORD_CLASSES, train_steps=20000,
                        notes="mel_2bar_small conditioned on one triad per step (49 classes: no chord, 12 roots x "
                        "major/minor/aug/dim) fed to encoder and decoder; trained from scratch. Needs a corpus "
                        "built with `seqvae data build --chords`."),
]

_TINY = [
    ModelConfig(
        name="tiny_lstm", architecture="lstm", z_size=8, encoder_sizes=(32,), decoder_sizes=(32, 32),
        batch_size=16, learning_rate=1e-2, max_beta=0.05, beta_rate=0.99, free_bits=4.0, sampling_rate=100.0,
        eval_every=50, checkpoint_every=50, train_steps=300, notes="For tests: trains in seconds.",
    ),
    ModelConfig(
        name="tiny_chords", architecture="lstm", z_size=8, encoder_sizes=(32,), decoder_sizes=(32, 32),
        chord_classes=NUM_CHORD_CLASSES, batch_size=16, learning_rate=1e-2, max_beta=0.05, beta_rate=0.99,
        free_bits=4.0, sampling_rate=100.0, eval_every=50, checkpoint_every=50, train_steps=300,
        notes="For tests: tiny_lstm reading a chord per step.",
    ),
    ModelConfig(
        name="tiny_hier", architecture="hier", steps=32, segments=4, z_size=8, encoder_sizes=(32,),
        conductor_sizes=(16,), decoder_sizes=(32,), batch_size=16, learning_rate=1e-2, max_beta=0.05,
        beta_rate=0.99, free_bits=4.0, sampling_rate=100.0, eval_every=50, checkpoint_every=50, train_steps=300,
        notes="For tests: 4 segments of 8 steps.",
    ),
    ModelConfig(
        name="tiny_hier2", architecture="hier", steps=32, segments=2, z_size=8, segment_z_size=8, encoder_sizes=(32,),
        conductor_sizes=(16,), decoder_sizes=(32,), batch_size=16, learning_rate=1e-2, max_beta=0.05,
        beta_rate=0.99, free_bits=4.0, sampling_rate=100.0, eval_every=50, checkpoint_every=50, train_steps=300,
        notes="For tests: two-level, 2 segments of 16 steps.",
    ),
    ModelConfig(
        name="tiny_hier2_latent", architecture="hier", steps=256, segments=8, z_size=8, segment_z_size=256,
        encoder_sizes=(512,), conductor_sizes=(16,), decoder_sizes=(256, 256), batch_size=16, learning_rate=1e-2,
        max_beta=0.05, beta_rate=0.99, free_bits=4.0, sampling_rate=0.0, init_segments="default",
        freeze_segments=True, latent_train_steps=40, eval_every=50, checkpoint_every=50, train_steps=44,
        notes="For tests: a small upper level over the shipped default model; 40 latent-stage steps, then events.",
    ),
    ModelConfig(
        name="tiny_transformer", architecture="transformer", z_size=8, d_model=32, n_heads=2,
        encoder_layers=1, decoder_layers=2, ff_size=64, batch_size=16, learning_rate=3e-3, max_beta=0.05,
        beta_rate=0.99, free_bits=4.0, sampling_rate=0.0, eval_every=50, checkpoint_every=50, train_steps=300,
        notes="For tests.",
    ),
]

CONFIGS: dict[str, ModelConfig] = {}
for _config in _BASE:
    CONFIGS[_config.name] = _config
    _twin = _triple(_config)
    CONFIGS[_twin.name] = _twin
for _config in _CHORDS + _TINY:
    CONFIGS[_config.name] = _config


def get_config(name: str) -> ModelConfig:
    """A fresh copy of a named config (callers may edit it without touching the registry)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown model config {name!r}: use one of {', '.join(sorted(CONFIGS))}")
    return dataclasses.replace(CONFIGS[name])


def override_config(config: ModelConfig, settings: Sequence[str]) -> ModelConfig:
    """`config` with KEY=VALUE settings applied (`seqvae train --set`), each value read as its field's type: a
    number, true/false, text, or comma-separated sizes. A run records the result in full, so it stays reproducible."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(ModelConfig) if f.name != "name"}
    changes = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ValueError(f"--set {setting!r}: send KEY=VALUE with KEY one of {', '.join(sorted(fields))}")
        changes[key] = _parse_field(key, text.strip(), fields[key])
    return dataclasses.replace(config, **changes)


def _parse_field(key: str, text: str, current: object) -> object:
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(current, tuple):
            return tuple(int(v) for v in text.split(",") if v.strip())
        return type(current)(text)
    except ValueError:
        kind = {bool: "true or false", tuple: "comma-separated whole numbers, e.g. 256,256", int: "a whole number",
                float: "a number"}.get(type(current), "text")
        raise ValueError(f"--set {key}={text!r}: {key} takes {kind}") from None


def list_configs() -> list[str]:
    return sorted(CONFIGS)

