"""The training loop: built corpus in, RUN_DIR out (checkpoint, metrics.csv, the latest shippable model).

Randomness is a pure function of (seed, step): the batch order, the transposition, the
reparameterisation noise and the scheduled-sampling draws of step s are derived from
SeedSequence([seed, s]) for the whole global batch, and each data-parallel rank takes its slice.
That is what makes `--resume` exact (nothing random to restore but torch's own generator) and makes
N processes compute the same update as one process with the same global batch.
"""

from __future__ import annotations

import csv
import math
import shlex
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seqvae.data.augment import random_transpose
from seqvae.data.corpus import load_corpus
from seqvae.evaluate.reconstruction import reconstruction_metrics
from seqvae.models import (
    ModelConfig,
    build_model,
    config_from_dict,
    config_to_dict,
    get_config,
    latent_loss,
    save_model,
    vae_loss,
)
from seqvae.models.checkpoint import atomic_write_bytes
from seqvae.models.segments import copy_segment_level, freeze_segment_level
from seqvae.models.warm_start import copy_weights
from seqvae.train.distributed import Distributed, setup_distributed
from seqvae.train.schedules import kl_weight, learning_rate, sampling_probability
from seqvae.train.segment_latents import SegmentLatents
from seqvae.train.state import TRAIN_STATE_FILE, load_train_state, save_train_state

METRICS_FILE = "metrics.csv"
MODEL_DIR = "model"
COMMAND_FILE = "train_command.txt"
METRIC_COLUMNS = [  # stage (train rows): 'latent' while recon is the latent stage's NLL, else 'events'
    "step", "split", "stage", "loss", "recon", "kl", "accuracy", "greedy_accuracy", "active_units", "beta",
    "learning_rate", "sampling_prob", "grad_norm", "examples_per_s", "elapsed_s",
]
PRECISIONS = ("auto", "fp32", "bf16")
MODEL_DTYPES = ("bfloat16", "float32", "float16")


@dataclass
class TrainOptions:
    data: Path
    out: Path
    config: str | None = None  # registry name; None when resuming (the run's own config is used)
    steps: int | None = None  # total optimizer steps of the run (default: the config's default_steps)
    batch_size: int | None = None  # GLOBAL batch, split evenly over data-parallel ranks
    resume: bool = False
    threads: int | None = None
    seed: int = 0
    device: str | None = None  # 'cpu' | 'cuda' | None (CUDA when available)
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    log_every: int = 10
    eval_every: int | None = None
    checkpoint_every: int | None = None
    valid_limit: int = 1024  # validation windows (greedy decoding on up to 256 of them)
    # RUN_DIR/model weights: bfloat16 halves the file and lets the C kernel stream half the bytes (results on
    # those weights are identical on every path); the resumable checkpoint always keeps float32.
    model_dtype: str = "bfloat16"
    progress: bool = True
    command: str = field(default_factory=lambda: shlex.join(["seqvae", *sys.argv[1:]]))


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    train: dict
    valid: dict | None
    examples_per_second: float
    stopped_early: bool = False


class BatchSource:
    """Global batches by step from an in-memory (or memory-mapped) [N, T] event array."""

    def __init__(self, events: np.ndarray, batch_size: int, seed: int, config: ModelConfig, codec) -> None:
        nbytes = events.shape[0] * events.shape[1]
        self.events = np.asarray(events) if nbytes < (1 << 30) else events
        self.batch_size, self.seed, self.config, self.codec = batch_size, seed, config, codec
        self.per_epoch = max(1, len(self.events) // batch_size)
        self._epoch, self._order = -1, None

    def indices(self, step: int) -> np.ndarray:
        n, b = len(self.events), self.batch_size
        if n < b:  # tiny corpora: draw with replacement
            return np.random.default_rng([self.seed, 2, step]).integers(0, n, size=b)
        epoch, position = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, 0, epoch]).permutation(n)
            self._epoch = epoch
        return self._order[position * b:(position + 1) * b]

    def batch(self, step: int, sampling_prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(events int64 [B, T], eps float32 [B, Z], scheduled-sampling uniforms [B, T, 2] or None)."""
        rng = np.random.default_rng([self.seed, 1, step])
        events = np.asarray(self.events[np.sort(self.indices(step))], dtype=np.int64)
        if self.config.transpose_low or self.config.transpose_high:
            events = random_transpose(events, rng, self.codec, self.config.transpose_low, self.config.transpose_high)
        eps = rng.standard_normal((self.batch_size, self.config.z_size), dtype=np.float32)
        uniforms = rng.random((self.batch_size, events.shape[1], 2), dtype=np.float32) if sampling_prob > 0 else None
        return events, eps, uniforms


class MetricsLog:
    """metrics.csv (append-only; a resume first drops rows past the checkpoint) and TensorBoard if installed."""

    def __init__(self, run_dir: Path, resume_step: int | None, enabled: bool) -> None:
        self.path = run_dir / METRICS_FILE
        self.enabled = enabled
        self.board = None
        if not enabled:
            return
        rows = []
        if resume_step is not None and self.path.is_file():  # steps past the checkpoint are about to be redone
            with self.path.open(newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= resume_step]
        self._rewrite(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.board = None

    def _rewrite(self, rows: list[dict]) -> None:
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, METRIC_COLUMNS).writerow({k: _fmt(row.get(k)) for k in METRIC_COLUMNS})
        if self.board is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.board.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


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


def _resolve_config(options: TrainOptions, run_dir: Path) -> tuple[ModelConfig, object | None]:
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
        return config, state
    if state_path.is_file():
        raise FileExistsError(
            f"{run_dir} already holds a training run: pass --resume to continue it, or choose a new --out"
        )
    if not options.config:
        raise ValueError("--config is required for a new run (e.g. --config mel_2bar_small)")
    return get_config(options.config), None


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


def train(options: TrainOptions) -> TrainResult:
    """Run (or resume) training to `options.steps` total steps; see the module docstring for the guarantees."""
    if options.precision not in PRECISIONS:
        raise ValueError(f"precision {options.precision!r} is unknown: use one of {', '.join(PRECISIONS)}")
    if options.model_dtype not in MODEL_DTYPES:
        raise ValueError(f"model dtype {options.model_dtype!r} is unknown: use one of {', '.join(MODEL_DTYPES)}")
    run_dir = Path(options.out)
    dist_info = setup_distributed(options.device)
    try:
        return _train(options, run_dir, dist_info)
    finally:
        dist_info.close()


def _train(options: TrainOptions, run_dir: Path, dist_info: Distributed) -> TrainResult:
    if options.threads:
        torch.set_num_threads(options.threads)
    elif dist_info.enabled and dist_info.device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads() // dist_info.world_size))
    config, state = _resolve_config(options, run_dir)
    corpus = load_corpus(options.data)
    _check_corpus(corpus, config)
    batch_size = options.batch_size or (state.info["batch_size"] if state else config.batch_size)
    if state and batch_size != state.info["batch_size"]:
        raise ValueError(f"this run trains with batch size {state.info['batch_size']}; resuming with {batch_size} "
                         "would not continue it exactly: drop --batch-size")
    seed = state.info["seed"] if state else options.seed
    if batch_size % dist_info.world_size:
        raise ValueError(f"batch size {batch_size} does not split over {dist_info.world_size} processes: "
                         "use a multiple of the process count")
    local = batch_size // dist_info.world_size
    total_steps = options.steps if options.steps is not None else config.default_steps
    eval_every = options.eval_every or config.eval_every
    checkpoint_every = options.checkpoint_every or config.checkpoint_every
    device = dist_info.device

    torch.manual_seed(seed)
    model = build_model(config)
    if config.init_segments and state is None:
        copy_segment_level(model, config.init_segments)
    if config.init_from and state is None:
        copy_weights(model, config.init_from)
    if config.freeze_segments:
        freeze_segment_level(model)
    model = model.to(device)
    optimizer = _make_optimizer(model, config.learning_rate)
    start_step = 0
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        torch.set_rng_state(state.torch_rng)
        start_step = state.step
    if dist_info.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    else:
        ddp_model = model
    use_bf16 = options.precision == "bf16" or (options.precision == "auto" and device.type == "cuda")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext

    is_main = dist_info.is_main
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / MODEL_DIR).mkdir(exist_ok=True)
        _record_command(run_dir / MODEL_DIR, options.command)
    log = MetricsLog(run_dir, start_step if state else None, is_main)
    source = BatchSource(corpus.split("train").events, batch_size, seed, config, corpus.codec)
    latents = None
    if start_step < config.latent_steps:  # the latent stage reads a table of segment posteriors, built at (re)start
        latents = SegmentLatents(model, corpus.split("train").events, corpus.codec, seed,
                                 progress=options.progress and is_main)
    valid_events = corpus.split("valid").events[: options.valid_limit]
    info = {"config": config_to_dict(config), "seed": seed, "batch_size": batch_size, "data": str(options.data),
            "precision": options.precision}
    rows = slice(dist_info.rank * local, (dist_info.rank + 1) * local)

    def checkpoint(step: int, valid: dict | None) -> None:
        if not is_main:
            return
        save_train_state(run_dir / TRAIN_STATE_FILE, model, optimizer, step, {**info, "total_steps": total_steps})
        extra = {"step": step, "train_examples": step * batch_size, "data": str(options.data), "valid": valid}
        save_model(model, run_dir / MODEL_DIR, extra=extra, storage_dtype=options.model_dtype)

    def validate(step: int) -> dict | None:
        if not is_main or len(valid_events) == 0:
            return None
        model.forget_inference_plans()  # fused Adam updates weights without bumping their versions
        metrics = reconstruction_metrics(model, valid_events, batch_size=256, greedy_limit=256)
        model.train()
        row = {
            "step": step, "split": "valid", "recon": metrics.recon_nats, "kl": metrics.kl,
            "accuracy": metrics.teacher_forced_accuracy, "greedy_accuracy": metrics.greedy_accuracy,
            "active_units": metrics.active_units, "beta": kl_weight(config, step),
            "loss": metrics.recon_nats + kl_weight(config, step) * max(metrics.kl - config.free_bits, 0.0),
        }
        log.write(row)
        return row

    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=start_step, desc=f"train {config.name}", unit="step",
               disable=not (options.progress and is_main), dynamic_ncols=True)
    sums = torch.zeros(5, dtype=torch.float64)  # loss, recon, kl, accuracy, grad norm
    count, run_start, compute_time, examples = 0, time.perf_counter(), 0.0, 0
    total_compute, total_examples = 0.0, 0
    last_train: dict = {}
    last_valid: dict | None = None
    step = start_step
    stopped = False
    model.train()
    with _StopFlag() as stop:
        while step < total_steps:
            t0 = time.perf_counter()
            prob = sampling_probability(config, step)
            beta = kl_weight(config, step)
            lr = learning_rate(config, step)
            if step < config.latent_steps:
                target_mu, target_sigma, eps = (torch.as_tensor(a[rows], device=device)
                                                for a in latents.batch(step, batch_size))
                with autocast():
                    out = ddp_model(None, eps=eps, segments=(target_mu, target_sigma))
                terms = latent_loss(out, beta, config.free_bits)
            else:
                events, eps, uniforms = source.batch(step, prob)
                x = torch.as_tensor(events[rows], device=device)
                eps_t = torch.as_tensor(eps[rows], device=device)
                u_t = torch.as_tensor(uniforms[rows], device=device) if uniforms is not None else None
                with autocast():
                    out = ddp_model(x, eps=eps_t, sampling_prob=prob, sampling_uniforms=u_t)
                terms = vae_loss(out, x, beta, config.free_bits)
            if not torch.isfinite(terms.loss):
                raise ValueError(f"training diverged at step {step} (loss {float(terms.loss)}): resume from the last "
                                 "checkpoint with a lower learning rate in the config, or check the corpus")
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            if config.grad_clip > 0:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
            else:
                grad_norm = float("nan")
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            step += 1
            compute_time += time.perf_counter() - t0
            examples += batch_size
            sums += torch.tensor([float(terms.loss.detach()), float(terms.recon.detach()), float(terms.kl.detach()),
                                  float(terms.accuracy), grad_norm], dtype=torch.float64)
            count += 1
            bar.update(1)
            if step % options.log_every == 0 or step == total_steps:
                mean = dist_info.all_mean(sums / count)
                speed = examples / compute_time if compute_time > 0 else 0.0
                accuracy = None if math.isnan(mean[3]) else float(mean[3])  # None: the latent stage has no events
                last_train = {
                    "step": step, "split": "train", "stage": "latent" if step <= config.latent_steps else "events",
                    "loss": float(mean[0]), "recon": float(mean[1]),
                    "kl": float(mean[2]), "accuracy": accuracy, "grad_norm": float(mean[4]), "beta": beta,
                    "learning_rate": lr, "sampling_prob": prob, "examples_per_s": speed,
                    "elapsed_s": time.perf_counter() - run_start,
                }
                log.write(last_train)
                bar.set_postfix(loss=f"{mean[0]:.2f}", acc="latent" if accuracy is None else f"{accuracy:.3f}",
                                kl=f"{mean[2]:.1f}", ex_s=f"{speed:.0f}")
                sums.zero_()
                total_compute, total_examples = total_compute + compute_time, total_examples + examples
                count, compute_time, examples = 0, 0.0, 0
            if step % eval_every == 0 or step == total_steps:
                last_valid = validate(step)
            if step % checkpoint_every == 0 or step == total_steps:
                checkpoint(step, last_valid)
            if stop.requested:
                stopped = True
                if step % checkpoint_every and step != total_steps:
                    checkpoint(step, last_valid)
                break
    bar.close()
    log.close()
    dist_info.barrier()
    total_compute, total_examples = total_compute + compute_time, total_examples + examples
    speed = total_examples / total_compute if total_compute > 0 else 0.0
    if state is None and step == 0:  # --steps 0: still leave a loadable (untrained) model behind
        checkpoint(step, None)
    return TrainResult(run_dir, step, last_train, last_valid, speed, stopped)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """metrics.csv rows with numbers parsed (empty cells become None)."""
    with (Path(run_dir) / METRICS_FILE).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        parsed = {}
        for key, value in row.items():
            if key in ("split", "stage"):
                parsed[key] = value
            elif value == "":
                parsed[key] = None
            else:
                number = float(value)
                parsed[key] = int(number) if key in ("step", "active_units") else number
        out.append(parsed)
    return out


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

