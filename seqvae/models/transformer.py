"""Transformer encoder (mean-pooled to mu/sigma) and a causal decoder conditioned on z in every layer.

The decoder keeps a key/value cache during generation, so each new step attends over the stored keys
instead of re-running the whole prefix: decoding T steps costs T single-step passes. `generate` below is the
torch reference; on the CPU the C loop of transformer_plan.py runs the same arithmetic, chosen in plans.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqvae.models.decoder import Decoder, Generation, StepPlan, shift_right, two_pass_previous


class TransformerEncoder(nn.Module):
    def __init__(self, num_classes: int, steps: int, z_size: int, d_model: int, n_heads: int, layers: int,
                 ff_size: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, d_model)
        self.position = nn.Parameter(torch.zeros(steps, d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, ff_size, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.mu = nn.Linear(d_model, z_size)
        self.sigma = nn.Linear(d_model, z_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(x) + self.position[: x.shape[1]]
        pooled = self.norm(self.layers(h)).mean(dim=1)
        return self.mu(pooled), F.softplus(self.sigma(pooled)) + 1e-5


class DecoderBlock(nn.Module):
    """Pre-norm causal self-attention + feed-forward, with z added to the block's input."""

    def __init__(self, d_model: int, n_heads: int, ff_size: int, dropout: float, z_size: int) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.z_proj = nn.Linear(z_size, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_size), nn.GELU(), nn.Linear(ff_size, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, z_term: torch.Tensor, cache: torch.Tensor | None = None,
                position: int = 0) -> torch.Tensor:
        """x [B, T, d]; with `cache` [2, B, heads, steps, d_head], x is the step at `position` (T = 1)."""
        batch, length, width = x.shape
        x = x + z_term
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        if cache is None:
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                  dropout_p=self.dropout if self.training else 0.0)
        else:
            cache[0, :, :, position:position + length] = k
            cache[1, :, :, position:position + length] = v
            end = position + length
            attn = F.scaled_dot_product_attention(q, cache[0, :, :, :end], cache[1, :, :, :end], is_causal=length > 1)
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(batch, length, width)))
        return x + self.drop(self.ff(self.norm2(x)))


class TransformerDecoder(Decoder):
    def __init__(self, num_classes: int, steps: int, z_size: int, d_model: int, n_heads: int, layers: int,
                 ff_size: int, dropout: float) -> None:
        super().__init__()
        self.num_classes, self.steps, self.n_heads = num_classes, steps, n_heads
        self.embed = nn.Embedding(num_classes + 1, d_model)  # + START
        self.position = nn.Parameter(torch.zeros(steps, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList(DecoderBlock(d_model, n_heads, ff_size, dropout, z_size) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, num_classes)

    @property
    def step_core(self) -> TransformerDecoder:
        """The whole decoder: a step plan runs all of it (plans.py)."""
        return self

    def _z_terms(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [block.z_proj(z).unsqueeze(1) for block in self.blocks]

    def _logits_for_prev(self, prev: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.embed(prev) + self.position[: prev.shape[1]]
        for block, z_term in zip(self.blocks, self._z_terms(z), strict=True):
            h = block(h, z_term)
        return self.output(self.norm(h))

    def teacher_forced(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self._logits_for_prev(shift_right(x, self.num_classes), z)

    def scheduled(
        self, x: torch.Tensor, z: torch.Tensor, prob: float, uniforms: torch.Tensor, mode: str
    ) -> torch.Tensor:
        """Scheduled sampling for a transformer is always the two-pass form (a step loop buys nothing here)."""
        coin = uniforms[..., 0] < prob
        return self._logits_for_prev(two_pass_previous(self.teacher_forced, x, z, coin, uniforms, self.num_classes), z)

    @property
    def start_token(self) -> int:
        return self.num_classes

    @property
    def cond_size(self) -> int:
        return self.blocks[0].z_proj.in_features

    def initial_states(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], int]:
        """What a step loop carries: an empty key/value cache [layers, 2, B, heads, steps, d_head], each block's z
        term, and the step the next call decodes."""
        d_head = self.blocks[0].qkv.out_features // 3 // self.n_heads
        caches = torch.empty(len(self.blocks), 2, z.shape[0], self.n_heads, self.steps, d_head, device=z.device,
                             dtype=z.dtype)
        return caches, self._z_terms(z), 0

    def cell_step(self, token: torch.Tensor, z: torch.Tensor, states: tuple[torch.Tensor, list[torch.Tensor], int]
                  ) -> tuple[torch.Tensor, tuple[torch.Tensor, list[torch.Tensor], int]]:
        """(logits [B, classes], states) of the next step after `token` [B] (START first), filling the cache's
        row for that step: the step interface of ConditionedLSTM.cell_step, which the CUDA graph plan records. `z`
        is already in the states' z terms."""
        caches, z_terms, t = states
        h = self.embed(token.unsqueeze(1)) + self.position[t]
        for i, block in enumerate(self.blocks):
            h = block(h, z_terms[i], caches[i], t)
        return self.output(self.norm(h[:, 0])), (caches, z_terms, t + 1)

    def generate(self, z: torch.Tensor, generation: Generation, plan: StepPlan | None) -> torch.Tensor:
        """Step-by-step generation with a key/value cache, through `plan` when one is given."""
        if plan is not None:
            return plan.generate(z, generation, steps=self.steps).to(z.device)
        states = self.initial_states(z)
        token = torch.full((z.shape[0],), self.start_token, dtype=torch.long, device=z.device)
        out = torch.empty(z.shape[0], self.steps, dtype=torch.long, device=z.device)
        for t in range(self.steps):
            logits, states = self.cell_step(token, z, states)
            token = generation.choose(t, logits)
            out[:, t] = token
        return out
