"""Token choice shared by every decoder and both execution paths (torch and numpy).

Sampling uses inverse-CDF lookups on uniforms drawn up front from the caller's torch.Generator, so the
fast numpy path and the torch reference path pick the same tokens for the same seed.
"""

from __future__ import annotations

import numpy as np
import torch


def draw_uniforms(steps: int, batch: int, temperature: float, generator: torch.Generator | None) -> torch.Tensor | None:
    """[steps, batch] uniforms for sampling, or None for greedy (greedy leaves the generator untouched)."""
    if temperature <= 0:
        return None
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(steps, batch, generator=generator, device=device).cpu()


def choose_tokens(logits: torch.Tensor, temperature: float | torch.Tensor,
                  uniforms: torch.Tensor | None) -> torch.Tensor:
    """argmax when temperature is 0, else a draw from softmax(logits / temperature) via the given uniforms. A 0-d
    tensor temperature (with uniforms) is read on the device, never compared on the host: a CUDA graph replays one
    recorded choice at any temperature."""
    greedy = uniforms is None or (not isinstance(temperature, torch.Tensor) and temperature <= 0)
    if greedy:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature
    probs = torch.softmax(scaled, dim=-1)
    cdf = probs.cumsum(dim=-1)
    target = uniforms.to(cdf.device, cdf.dtype).unsqueeze(-1) * cdf[..., -1:]
    return (cdf < target).sum(dim=-1).clamp_(max=logits.shape[-1] - 1)


def choose_tokens_numpy(
    logits: np.ndarray, temperature: float, uniforms: np.ndarray | None, scratch: np.ndarray | None = None
) -> np.ndarray:
    """numpy twin of choose_tokens; `scratch` (same shape as logits) avoids allocations in a hot loop."""
    if temperature <= 0 or uniforms is None:
        return logits.argmax(axis=1)
    buf = scratch if scratch is not None else np.empty_like(logits)
    np.multiply(logits, 1.0 / temperature, out=buf)
    buf -= buf.max(axis=1, keepdims=True)
    np.exp(buf, out=buf)
    np.cumsum(buf, axis=1, out=buf)
    target = uniforms[:, None] * buf[:, -1:]
    return np.minimum((buf < target).sum(axis=1), logits.shape[1] - 1)


def token_log_probs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] per row, at temperature 1: how likely the model finds each chosen token."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def token_log_probs_numpy(logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """numpy twin of token_log_probs."""
    top = logits.max(axis=1)
    lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    return logits[np.arange(len(tokens)), tokens] - lse
