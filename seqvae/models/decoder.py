"""The decoder interface every decoder (flat, hierarchical, transformer) implements, and the one description of
a free-running decode that every backend reads.

A decode-time feature (forced steps, the allowed-class mask of a key and range, per-step chord inputs) is a
field of `Generation`, read in `Generation.choose` by the torch paths and by each step plan, so no decoder
special-cases it. Step plans read one-hot step features as a class per step (`feature_classes`): adding a
weight row to the first layer's gates is the one-hot's matmul without the zeros.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from seqvae.models.sampling import choose_tokens, token_log_probs


@dataclass(frozen=True)
class Generation:
    """How a free-running decode chooses its tokens: shared by all decoders and backends.

    `temperature` is a number, or a 0-d tensor where a CUDA graph records the choice once for every temperature.
    `uniforms` [steps, B] are the sampling draws (None: greedy); `forced` and `mask` [B, steps] keep the forced
    tokens where mask is True; `bfloat16` runs a step plan's matrices in bfloat16 arithmetic. `log_probs`
    [B, steps] float32 (on the CPU, or a graph's buffer on its device), when given, receives each chosen token's
    log-probability (temperature 1):
    forced steps are scored in the pass that decodes the free ones. `allowed` (bool [C]) is the classes a free
    step may choose: the others' logits are -inf before the choice (and in its log-probability), so a key is
    obeyed inside the model's distribution; forced steps are never masked. `features` [B, steps, F] are the
    per-step inputs of a decoder that takes them (a chord one-hot per step). Step indices are the window's, so a
    hierarchical decoder's segment reads them from its own offset.
    """

    temperature: float | torch.Tensor
    uniforms: torch.Tensor | None = None
    forced: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    bfloat16: bool = False
    log_probs: torch.Tensor | None = None
    allowed: torch.Tensor | None = None
    features: torch.Tensor | None = None

    def choose(self, step: int, logits: torch.Tensor) -> torch.Tensor:
        """The token at window step `step` from its logits [B, C]: argmax or a draw, then the forced token if any."""
        if self.allowed is not None:
            masked = logits.masked_fill(~self.allowed, float("-inf"))
            logits = masked if self.forced is None else torch.where(self.mask[:, step, None], logits, masked)
        token = choose_tokens(logits, self.temperature, None if self.uniforms is None else self.uniforms[step])
        if self.forced is not None:
            token = torch.where(self.mask[:, step], self.forced[:, step], token)
        if self.log_probs is not None:
            self.log_probs[:, step] = token_log_probs(logits, token).to(self.log_probs.device)
        return token

    def feature_classes(self, feature_size: int, rows: int, offset: int, steps: int) -> np.ndarray | None:
        """The class of each step's one-hot features, int64 [rows, steps] for window steps offset..offset + steps,
        as a step plan of a core with `feature_size` step inputs reads them (None when it has none)."""
        return step_classes(self.features, feature_size, rows, offset, steps)


class StepPlan(Protocol):
    """A backend that runs a recurrent core's free-running loop (see seqvae.models.plans)."""

    has_bf16_dot: bool

    def generate(self, cond: torch.Tensor, generation: Generation, *, steps: int, prev: torch.Tensor | None = None,
                 offset: int = 0) -> torch.Tensor:
        """Tokens [B, steps] for conditioning [B, cond], window steps offset..offset + steps; `prev` is the token
        fed into the first step (default START)."""
        ...


class Decoder(nn.Module, ABC):
    """What the VAE asks of a decoder: teacher-forced logits, scheduled-sampling logits, free-running tokens.

    `step_core` is what a step plan can run for this decoder, a recurrent core or a whole transformer (None: it
    decodes in torch only); `generate` receives that plan, or None for the torch path.
    """

    steps: int  # window length in 16th-note steps

    @property
    def step_core(self) -> nn.Module | None:
        return None

    @abstractmethod
    def teacher_forced(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, C] given the true previous tokens."""

    @abstractmethod
    def scheduled(self, x: torch.Tensor, z: torch.Tensor, prob: float, uniforms: torch.Tensor,
                  mode: str) -> torch.Tensor:
        """Training logits with scheduled sampling; uniforms [B, T, 2] (coin, sample draw)."""

    @abstractmethod
    def generate(self, z: torch.Tensor, generation: Generation, plan: StepPlan | None) -> torch.Tensor:
        """Tokens [B, steps] decoded from z [B, Z]."""


def step_classes(features: torch.Tensor | None, feature_size: int, rows: int, offset: int,
                 steps: int) -> np.ndarray | None:
    """One-hot step features [rows, T, feature_size] -> their classes, int64 [rows, steps] from step `offset`:
    what the C kernel and the numpy plan read (a weight row per step). Missing, extra, short or non-one-hot
    features are errors naming what to send, since a plan would otherwise misread them."""
    if not feature_size:
        if features is not None:
            raise ValueError("this network takes no step features: send no chords to a model without them")
        return None
    if features is None or features.dim() != 3 or features.shape[-1] != feature_size:
        shape = None if features is None else tuple(features.shape)
        raise ValueError(f"this network reads {feature_size} one-hot step features per step (a chord class per "
                         f"step): send [batch, steps, {feature_size}], got {shape}")
    window = features[:, offset:offset + steps]
    if tuple(window.shape[:2]) != (rows, steps):
        raise ValueError(f"step features cover {tuple(window.shape[:2])} rows and steps from step {offset}; send "
                         f"[{rows}, {offset + steps}, {feature_size}], a chord class per step of each row")
    values = window.detach().to("cpu", torch.float32).numpy()
    classes = values.argmax(axis=-1)
    # one-hot: each step has a 1 at its largest value and, all steps together, no other non-zero
    if np.count_nonzero(values) != classes.size or not (np.take_along_axis(values, classes[..., None], -1) == 1).all():
        raise ValueError("step features must be one-hot (a chord class per step) for the fast decoding paths: "
                         "send chord classes, or decode with fast=False")
    return np.ascontiguousarray(classes, dtype=np.int64)


def shift_right(x: torch.Tensor, start: int) -> torch.Tensor:
    """Previous-token inputs: START then x[:, :-1]."""
    return torch.cat([torch.full_like(x[:, :1], start), x[:, :-1]], dim=1)


def two_pass_previous(teacher_forced, x: torch.Tensor, z: torch.Tensor, coin: torch.Tensor,
                      uniforms: torch.Tensor, start: int, previous=None) -> torch.Tensor:
    """Previous-token inputs for two-pass scheduled sampling: sample every step from a teacher-forced
    pass (no gradient), then mix those samples in where the coin says so. `previous` turns tokens into
    previous-token inputs (default: shift right behind START)."""
    with torch.no_grad():
        sampled = choose_tokens(teacher_forced(x, z), 1.0, uniforms[..., 1])
    mixed = torch.where(coin, sampled, x)
    return previous(mixed) if previous is not None else shift_right(mixed, start)
