"""The training loop: built corpus in, RUN_DIR out (checkpoint, metrics.csv, the latest shippable model).

Randomness is a pure function of (seed, step): the batch order, the transposition, the
reparameterisation noise and the scheduled-sampling draws of step s are derived from
SeedSequence([seed, s]) for the whole global batch, and each data-parallel rank takes its slice.
That is what makes `--resume` exact (nothing random to restore but torch's own generator) and makes
N processes compute the same update as one process with the same global batch.
"""

from __future__ import annotations

import math
import shlex
import signal
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seqvae.codec.atomic_files import atomic_write_bytes
from seqvae.data.corpus import load_corpus
from seqvae.evaluate.reconstruction import reconstruction_metrics
from seqvae.models import (
    LossTerms,
    ModelConfig,
    SequenceVAE,
    build_model,
    config_from_dict,
    config_to_dict,
    get_config,
    latent_loss,
    save_model,
    vae_loss,
)
from seqvae.models.precision import parse_precision
from seqvae.models.registry import override_config
from seqvae.models.segments import copy_segment_level, freeze_segment_level
from seqvae.models.warm_start import copy_weights
from seqvae.train.batches import BatchSource
from seqvae.train.distributed import Distributed, setup_distributed
from seqvae.train.metrics import MetricsLog
from seqvae.train.schedules import kl_weight, learning_rate, sampling_probability
from seqvae.train.segment_latents import SegmentLatents
from seqvae.train.state import TRAIN_STATE_FILE, TrainState, load_train_state, save_train_state

MODEL_DIR = "model"
COMMAND_FILE = "train_command.txt"
MODEL_DTYPES = ("bfloat16", "float32", "float16")


@dataclass
class TrainOptions:
    data: Path
    out: Path
    # registry name, or a config itself (a personal fine-tune starts from its base model's); None when resuming
    config: str | ModelConfig | None = None
    settings: tuple[str, ...] = ()  # KEY=VALUE changes to a new run's config (`seqvae train --set`)
    train_steps: int | None = None  # total optimizer steps of the run (default: the config's train_steps)
    batch_size: int | None = None  # GLOBAL batch, split evenly over data-parallel ranks
    resume: bool = False
    threads: int | None = None
    seed: int = 0
    device: str | None = None  # 'cpu' | 'cuda' | None (CUDA when available)
    # auto: bfloat16 autocast on CUDA, float32 on CPU. fp32 and bf16 are read as float32 and bfloat16.
    precision: str = "auto"
    log_every: int = 10
    eval_every: int | None = None
    checkpoint_every: int | None = None
    valid_limit: int = 1024  # validation windows (greedy decoding on up to 256 of them)
    # RUN_DIR/model weights: bfloat16 halves the file and lets the C kernel stream half the bytes (results on
    # those weights are identical on every path); the resumable checkpoint always keeps float32.
    model_dtype: str = "bfloat16"
    progress: bool = True
    command: str = field(default_factory=lambda: shlex.join(["seqvae", *sys.argv[1:]]))

    def __post_init__(self) -> None:
        self.precision = parse_precision(self.precision)
        if self.model_dtype not in MODEL_DTYPES:
            raise ValueError(f"model dtype {self.model_dtype!r} is unknown: use one of {', '.join(MODEL_DTYPES)}")


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    train: dict
    valid: dict | None
    examples_per_second: float
    stopped_early: bool = False


def train(options: TrainOptions) -> TrainResult:
    """Run (or resume) training to `options.train_steps` total steps; see the module docstring for the guarantees."""
    dist_info = setup_distributed(options.device)
    try:
        return _loop(_start(options, dist_info))
    finally:
        dist_info.close()


@dataclass
class _Run:
    """What set-up fixed for one start or resume of a run; the steps, validations and checkpoints read it."""

    options: TrainOptions
    run_dir: Path
    dist: Distributed
    config: ModelConfig
    model: SequenceVAE
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper that averages gradients over ranks
    optimizer: torch.optim.Optimizer
    start_step: int
    resumed: bool
    total_steps: int
    batch_size: int  # global
    schedule_offset: int  # a fine-tune's schedules go on from the step its init_from model was trained to
    info: dict  # what the training checkpoint keeps besides weights, optimizer state and RNG
    log: MetricsLog
    events: BatchSource
    latents: SegmentLatents | None  # the latent stage's table; None once a run starts past that stage
    valid_events: np.ndarray
    valid_chords: np.ndarray | None  # a chord model's validation chords, else None

    @property
    def rows(self) -> slice:
        """This rank's rows of a global batch."""
        local = self.batch_size // self.dist.world_size
        return slice(self.dist.rank * local, (self.dist.rank + 1) * local)

    def autocast(self) -> AbstractContextManager:
        precision, device = self.options.precision, self.dist.device
        if precision == "bfloat16" or (precision == "auto" and device.type == "cuda"):
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return nullcontext()

    def schedules(self, step: int) -> tuple[float, float, float]:
        """(scheduled-sampling probability, KL weight, learning rate) of `step`."""
        return tuple(schedule(self.config, step, self.schedule_offset)
                     for schedule in (sampling_probability, kl_weight, learning_rate))

    def latent_stage_loss(self, step: int, beta: float) -> LossTerms:
        """The latent stage: the upper level learns to reproduce the frozen segment encoder's posteriors."""
        device = self.dist.device
        target_mu, target_sigma, eps = (torch.as_tensor(a[self.rows], device=device)
                                        for a in self.latents.batch(step, self.batch_size))
        with self.autocast():
            out = self.net(None, eps=eps, segments=(target_mu, target_sigma))
        return latent_loss(out, beta, self.config.free_bits)

    def event_stage_loss(self, step: int, beta: float, sampling_prob: float) -> LossTerms:
        """The event stage: reconstruct windows, the decoder reading its own samples with `sampling_prob`."""
        device, rows = self.dist.device, self.rows
        events, chords, eps, uniforms = self.events.batch(step, sampling_prob)
        x = torch.as_tensor(events[rows], device=device)
        chords = torch.as_tensor(chords[rows], device=device) if chords is not None else None
        eps = torch.as_tensor(eps[rows], device=device)
        uniforms = torch.as_tensor(uniforms[rows], device=device) if uniforms is not None else None
        prior = self.events.prior_rows(step)
        prior = None if prior is None else tuple(torch.as_tensor(a[rows], device=device) for a in prior)
        with self.autocast():
            out = self.net(x, eps=eps, sampling_prob=sampling_prob, sampling_uniforms=uniforms, chords=chords,
                           prior_rows=prior)
        return vae_loss(out, x, beta, self.config.free_bits)

    def update(self, terms: LossTerms, step: int, lr: float) -> float:
        """One optimizer step on `terms.loss`; returns the gradient norm before clipping (nan without clipping)."""
        if not torch.isfinite(terms.loss):
            raise ValueError(f"training diverged at step {step} (loss {float(terms.loss)}): resume from the last "
                             "checkpoint with a lower learning rate in the config, or check the corpus")
        self.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        grad_norm = float("nan")
        if self.config.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return grad_norm

    def validate(self, step: int) -> dict | None:
        """A metrics.csv valid row (main process only; None elsewhere or without validation windows)."""
        if not self.dist.is_main or len(self.valid_events) == 0:
            return None
        self.model.forget_inference_plans()  # fused Adam updates weights without bumping their versions
        metrics = reconstruction_metrics(self.model, self.valid_events, batch_size=256, greedy_limit=256,
                                         chords=self.valid_chords)
        self.model.train()
        beta = kl_weight(self.config, step, self.schedule_offset)
        row = {
            "step": step, "split": "valid", "recon": metrics.recon_nats, "kl": metrics.kl,
            "accuracy": metrics.teacher_forced_accuracy, "greedy_accuracy": metrics.greedy_accuracy,
            "active_units": metrics.active_units, "beta": beta,
            "loss": metrics.recon_nats + beta * max(metrics.kl - self.config.free_bits, 0.0),
        }
        self.log.write(row)
        return row

    def checkpoint(self, step: int, valid: dict | None) -> None:
        """The resumable checkpoint and RUN_DIR/model, both at `step` (main process only)."""
        if not self.dist.is_main:
            return
        save_train_state(self.run_dir / TRAIN_STATE_FILE, self.model, self.optimizer, step, self.info)
        extra = {"step": step, "train_examples": step * self.batch_size, "data": str(self.options.data),
                 "valid": valid}
        if self.schedule_offset:  # a fine-tune says where its schedules began: its init_from model's step
            extra["schedule_offset"] = self.schedule_offset
        save_model(self.model, self.run_dir / MODEL_DIR, extra=extra, storage_dtype=self.options.model_dtype)


def _start(options: TrainOptions, dist_info: Distributed) -> _Run:
    """Set-up: the config and state to start or resume from, the corpus, the model and optimizer, the run dir."""
    if options.threads:
        torch.set_num_threads(options.threads)
    elif dist_info.enabled and dist_info.device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads() // dist_info.world_size))
    run_dir = Path(options.out)
    config, state = _resolve_config(options, run_dir)
    corpus = load_corpus(options.data)
    _check_corpus(corpus, config)
    batch_size, seed = _batch_size_and_seed(options, config, state, dist_info.world_size)
    model, optimizer, schedule_offset = _start_model(config, state, seed, dist_info.device)
    net = model
    if dist_info.enabled:
        cuda = dist_info.device.type == "cuda"
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dist_info.device.index] if cuda else None)
    if dist_info.is_main:
        (run_dir / MODEL_DIR).mkdir(parents=True, exist_ok=True)
        _record_command(run_dir / MODEL_DIR, options.command)
    start_step = state.step if state else 0
    log = MetricsLog(run_dir, start_step if state else None, dist_info.is_main)
    train_events = corpus.split("train").events
    chords = config.chord_classes > 0  # a chord model reads each split's chords (_check_corpus saw they exist)
    latents = None
    if start_step < config.latent_train_steps:  # the latent stage reads a table of segment posteriors, built at start
        latents = SegmentLatents(model, train_events, corpus.codec, seed,
                                 progress=options.progress and dist_info.is_main)
    total_steps = options.train_steps if options.train_steps is not None else config.train_steps
    info = {"config": config_to_dict(config), "seed": seed, "batch_size": batch_size, "data": str(options.data),
            "precision": options.precision, "schedule_offset": schedule_offset, "total_steps": total_steps}
    return _Run(
        options=options, run_dir=run_dir, dist=dist_info, config=config, model=model, net=net, optimizer=optimizer,
        start_step=start_step, resumed=state is not None, total_steps=total_steps, batch_size=batch_size,
        schedule_offset=schedule_offset, info=info, log=log,
        events=BatchSource(train_events, batch_size, seed, config, corpus.codec,
                           corpus.split("train").chords if chords else None), latents=latents,
        valid_events=corpus.split("valid").events[: options.valid_limit],
        valid_chords=corpus.split("valid").chords[: options.valid_limit] if chords else None,
    )


def _batch_size_and_seed(options: TrainOptions, config: ModelConfig, state: TrainState | None,
                         world_size: int) -> tuple[int, int]:
    """A resume keeps its run's global batch and seed: anything else would not continue it exactly."""
    batch_size = options.batch_size or (state.info["batch_size"] if state else config.batch_size)
    if state and batch_size != state.info["batch_size"]:
        raise ValueError(f"this run trains with batch size {state.info['batch_size']}; resuming with {batch_size} "
                         "would not continue it exactly: drop --batch-size")
    if batch_size % world_size:
        raise ValueError(f"batch size {batch_size} does not split over {world_size} processes: "
                         "use a multiple of the process count")
    return batch_size, state.info["seed"] if state else options.seed


def _start_model(config: ModelConfig, state: TrainState | None, seed: int,
                 device: torch.device) -> tuple[SequenceVAE, torch.optim.Optimizer, int]:
    """The model and optimizer a run starts or resumes with, and the step its schedules are offset by."""
    torch.manual_seed(seed)
    model = build_model(config)
    if state is None:
        schedule_offset = 0
        if config.init_segments:
            copy_segment_level(model, config.init_segments)
        if config.init_from:
            schedule_offset = copy_weights(model, config.init_from)
    else:  # runs from before the offset left the config kept it there
        schedule_offset = state.info.get("schedule_offset", state.info["config"].get("schedule_offset", 0))
    if config.freeze_segments:
        freeze_segment_level(model)
    model = model.to(device)
    optimizer = _make_optimizer(model, config.learning_rate)
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        torch.set_rng_state(state.torch_rng)
    return model, optimizer, schedule_offset


def _loop(run: _Run) -> TrainResult:
    """Steps until the run's total (or a stop request), logging, validating and checkpointing on their cadences."""
    from tqdm import tqdm

    config, options, total = run.config, run.options, run.total_steps
    eval_every = options.eval_every or config.eval_every
    checkpoint_every = options.checkpoint_every or config.checkpoint_every
    bar = tqdm(total=total, initial=run.start_step, desc=f"train {config.name}", unit="step",
               disable=not (options.progress and run.dist.is_main), dynamic_ncols=True)
    meter = _Meter()
    last_train: dict = {}
    last_valid: dict | None = None
    step, stopped = run.start_step, False
    run.model.train()
    with _StopFlag() as stop:
        while step < total:
            started = time.perf_counter()
            prob, beta, lr = run.schedules(step)
            if step < config.latent_train_steps:
                terms = run.latent_stage_loss(step, beta)
            else:
                terms = run.event_stage_loss(step, beta, prob)
            grad_norm = run.update(terms, step, lr)
            step += 1
            meter.add(terms, grad_norm, time.perf_counter() - started, run.batch_size)
            bar.update(1)
            if _due(step, options.log_every, total):
                last_train = meter.train_row(step, config, run.dist, beta, lr, prob)
                run.log.write(last_train)
                bar.set_postfix(_postfix(last_train))
            if _due(step, eval_every, total):
                last_valid = run.validate(step)
            if _due(step, checkpoint_every, total):
                run.checkpoint(step, last_valid)
            if stop.requested:
                stopped = True
                if not _due(step, checkpoint_every, total):
                    run.checkpoint(step, last_valid)
                break
    bar.close()
    run.log.close()
    run.dist.barrier()
    if not run.resumed and step == 0:  # --steps 0: still leave a loadable (untrained) model behind
        run.checkpoint(step, None)
    return TrainResult(run.run_dir, step, last_train, last_valid, meter.examples_per_second(), stopped)


def _due(step: int, every: int, total: int) -> bool:
    return step % every == 0 or step == total


def _postfix(row: dict) -> dict:
    """The progress bar's summary of a train row."""
    accuracy = row["accuracy"]
    return {"loss": f"{row['loss']:.2f}", "acc": "latent" if accuracy is None else f"{accuracy:.3f}",
            "kl": f"{row['kl']:.1f}", "ex_s": f"{row['examples_per_s']:.0f}"}


class _Meter:
    """Train-row means since the last log line, and examples per second of compute since the run (re)started."""

    def __init__(self) -> None:
        self.sums = torch.zeros(5, dtype=torch.float64)  # loss, recon, kl, accuracy, grad norm
        self.count, self.seconds, self.examples = 0, 0.0, 0
        self.past_seconds, self.past_examples = 0.0, 0
        self.started = time.perf_counter()

    def add(self, terms: LossTerms, grad_norm: float, seconds: float, examples: int) -> None:
        self.seconds += seconds
        self.examples += examples
        self.sums += torch.tensor([float(terms.loss.detach()), float(terms.recon.detach()), float(terms.kl.detach()),
                                   float(terms.accuracy), grad_norm], dtype=torch.float64)
        self.count += 1

    def train_row(self, step: int, config: ModelConfig, dist: Distributed, beta: float, lr: float,
                  prob: float) -> dict:
        """A metrics.csv train row: the means over every rank since the last row, which this one starts anew."""
        mean = dist.all_mean(self.sums / self.count)
        speed = self.examples / self.seconds if self.seconds > 0 else 0.0
        row = {
            "step": step, "split": "train", "stage": "latent" if step <= config.latent_train_steps else "events",
            "loss": float(mean[0]), "recon": float(mean[1]), "kl": float(mean[2]),
            "accuracy": None if math.isnan(mean[3]) else float(mean[3]),  # None: the latent stage has no events
            "grad_norm": float(mean[4]), "beta": beta, "learning_rate": lr, "sampling_prob": prob,
            "examples_per_s": speed, "elapsed_s": time.perf_counter() - self.started,
        }
        self.sums.zero_()
        self.past_seconds, self.past_examples = self.past_seconds + self.seconds, self.past_examples + self.examples
        self.count, self.seconds, self.examples = 0, 0.0, 0
        return row

    def examples_per_second(self) -> float:
        seconds, examples = self.past_seconds + self.seconds, self.past_examples + self.examples
        return examples / seconds if seconds > 0 else 0.0


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop at the next step boundary, after writing a checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = {}

    def __enter__(self) -> _StopFlag:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no handlers, the run stops only when done
            pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _resolve_config(options: TrainOptions, run_dir: Path) -> tuple[ModelConfig, TrainState | None]:
    state_path = run_dir / TRAIN_STATE_FILE
    if options.resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"nothing to resume in {run_dir} (no {TRAIN_STATE_FILE}): run without --resume")
        state = load_train_state(state_path)
        config = config_from_dict(state.info["config"])
        if options.config and options.config != config.name:
            raise ValueError(
                f"{run_dir} trains {config.name!r}, not {options.config!r}: drop --config or use a new --out"
            )
        if options.settings:
            raise ValueError(f"{run_dir} resumes with the config it started with: drop --set, or start a new --out")
        return config, state
    if state_path.is_file():
        raise FileExistsError(
            f"{run_dir} already holds a training run: pass --resume to continue it, or choose a new --out"
        )
    if not options.config:
        raise ValueError("--config is required for a new run (e.g. --config mel_2bar_small)")
    base = options.config if isinstance(options.config, ModelConfig) else get_config(options.config)
    return override_config(base, options.settings), None


def _check_corpus(corpus, config: ModelConfig) -> None:
    if corpus.steps != config.steps:
        raise ValueError(
            f"the corpus at {corpus.path} holds {corpus.steps}-step windows but {config.name!r} needs {config.steps}: "
            f"build one with `seqvae data build MIDI_DIR --out DIR --steps {config.steps}` or pick a "
            f"{corpus.steps}-step config"
        )
    if (corpus.codec.min_pitch, corpus.codec.max_pitch) != (config.min_pitch, config.max_pitch):
        raise ValueError(
            f"the corpus pitch range {corpus.codec.min_pitch}..{corpus.codec.max_pitch} differs from the model's "
            f"{config.min_pitch}..{config.max_pitch}"
        )
    if len(corpus.split("train")) == 0:
        raise ValueError(f"the corpus at {corpus.path} has an empty train split: add MIDI files and rebuild it")
    if config.chord_classes and any(corpus.split(name).chords is None for name in ("train", "valid")):
        raise ValueError(f"{config.name!r} reads a chord per step but the corpus at {corpus.path} has no chords: "
                         f"rebuild it with `seqvae data build MIDI_DIR --out DIR --chords`")


def _record_command(model_dir: Path, command: str) -> None:
    """train_command.txt: every command that contributed to this model, oldest first (a resume adds a line)."""
    path = model_dir / COMMAND_FILE
    lines = path.read_text().splitlines() if path.is_file() else []
    if not lines or lines[-1] != command:
        lines.append(command)
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def _make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # fused kernels missing for this device/dtype
        return torch.optim.Adam(model.parameters(), lr=lr)



def describe(result: TrainResult) -> str:
    """One paragraph for the terminal after a run."""
    parts = [f"step {result.step}", f"{result.examples_per_second:.0f} examples/s"]
    if result.train:
        accuracy = result.train["accuracy"]
        parts.append(f"train loss {result.train['loss']:.3f} "
                     + ("(latent stage)" if accuracy is None else f"acc {accuracy:.3f}"))
    if result.valid:
        greedy = result.valid.get("greedy_accuracy")
        parts.append(
            f"valid acc {result.valid['accuracy']:.3f}"
            + (f" greedy {greedy:.3f}" if greedy is not None and not math.isnan(greedy) else "")
            + f" KL {result.valid['kl']:.1f} active {result.valid['active_units']}"
        )
    stopped = " (stopped early; --resume continues)" if result.stopped_early else ""
    return f"{result.run_dir}: " + ", ".join(parts) + stopped + f"\nmodel: {result.run_dir / MODEL_DIR}"

