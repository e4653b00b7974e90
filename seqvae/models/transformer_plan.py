"""The transformer decoder packed for transformer_kernel.c's step loop: a `decoder.StepPlan` for TransformerDecoder.

Eager PyTorch spends a decode step of the 4-layer decoder on dispatching a hundred small operations; the C loop
runs the same arithmetic (a key/value cache, one position per step) with the weights packed once, as the LSTM's
plan does (native.py). Matrices stream as bfloat16 where every weight is a bfloat16 value (a checkpoint saved in
bfloat16 storage), which changes no result. There is no bfloat16 arithmetic path: `has_bf16_dot` is False, so
precision "auto" decodes a transformer in float32.
"""

from __future__ import annotations

import ctypes

import numpy as np
import torch

from seqvae.models import native
from seqvae.models.decoder import Generation

MAX_BLOCKS = 8
_floats = ctypes.c_void_p * MAX_BLOCKS


class _TransformerWeights(ctypes.Structure):
    _fields_ = [
        ("num_classes", ctypes.c_int), ("padded_classes", ctypes.c_int), ("d_model", ctypes.c_int),
        ("n_heads", ctypes.c_int), ("blocks", ctypes.c_int), ("ff_size", ctypes.c_int), ("max_steps", ctypes.c_int),
        ("bf16", ctypes.c_int), ("embed", ctypes.c_void_p), ("position", ctypes.c_void_p),
        ("ln1_w", _floats), ("ln1_b", _floats), ("ln2_w", _floats), ("ln2_b", _floats),
        ("w_qkv", _floats), ("b_qkv", _floats), ("w_proj", _floats), ("b_proj", _floats),
        ("w_ff1", _floats), ("b_ff1", _floats), ("w_ff2", _floats), ("b_ff2", _floats),
        ("norm_w", ctypes.c_void_p), ("norm_b", ctypes.c_void_p), ("w_out", ctypes.c_void_p),
        ("b_out", ctypes.c_void_p),
    ]


def _vector(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(native.as_float32(t))


class NativeTransformerPlan:
    """A TransformerDecoder's weights laid out for transformer_generate."""

    has_bf16_dot = False

    def __init__(self, decoder, lib: ctypes.CDLL) -> None:
        self.lib = lib
        bf16 = native.bfloat16_exact(decoder)
        c, d = decoder.num_classes, decoder.embed.embedding_dim
        self.keep: list[np.ndarray] = []
        w = _TransformerWeights()
        w.num_classes, w.d_model, w.n_heads, w.blocks = c, d, decoder.n_heads, len(decoder.blocks)
        w.ff_size, w.max_steps, w.bf16 = decoder.blocks[0].ff[0].out_features, decoder.steps, int(bf16)
        w.padded_classes = -(-c // native.LANES) * native.LANES

        def held(array: np.ndarray) -> int:
            self.keep.append(array)
            return native.pointer(array)

        def panels(linear: torch.nn.Linear) -> int:
            return held(native.pack_panels(native.as_float32(linear.weight).T, bf16))

        w.embed, w.position = held(_vector(decoder.embed.weight)), held(_vector(decoder.position))
        for i, block in enumerate(decoder.blocks):
            w.ln1_w[i], w.ln1_b[i] = held(_vector(block.norm1.weight)), held(_vector(block.norm1.bias))
            w.ln2_w[i], w.ln2_b[i] = held(_vector(block.norm2.weight)), held(_vector(block.norm2.bias))
            for name, linear in (("qkv", block.qkv), ("proj", block.proj), ("ff1", block.ff[0]), ("ff2", block.ff[2])):
                getattr(w, f"w_{name}")[i] = panels(linear)
                getattr(w, f"b_{name}")[i] = held(_vector(linear.bias))
        w.norm_w, w.norm_b = held(_vector(decoder.norm.weight)), held(_vector(decoder.norm.bias))
        w.w_out = panels(decoder.output)
        b_out = np.full(w.padded_classes, -1e30, np.float32)
        b_out[:c] = native.as_float32(decoder.output.bias)
        w.b_out = held(b_out)
        self.weights = w
        z_weights = np.concatenate([native.as_float32(b.z_proj.weight).T for b in decoder.blocks], axis=1)
        z_bias = np.concatenate([native.as_float32(b.z_proj.bias) for b in decoder.blocks])
        self.z_terms = native.PackedAffine(lib, z_weights, z_bias, bf16)  # every block's z term in one product
        self.num_classes, self.d_model, self.blocks = c, d, len(decoder.blocks)

    @staticmethod
    def supports(decoder) -> bool:
        """The shapes the kernel takes: widths in whole 16-float panels, at most MAX_BLOCKS blocks."""
        d, ff = decoder.embed.embedding_dim, decoder.blocks[0].ff[0].out_features
        return len(decoder.blocks) <= MAX_BLOCKS and d % native.LANES == 0 and ff % native.LANES == 0

    def generate(self, cond: torch.Tensor, generation: Generation, *, steps: int, prev: torch.Tensor | None = None,
                 offset: int = 0) -> torch.Tensor:
        """As decoder.StepPlan, with `cond` the latent z [B, Z]; a transformer always decodes its whole window from
        START (`prev` None, `offset` 0)."""
        if prev is not None or offset:
            raise ValueError("the transformer plan decodes whole windows from START: send prev=None and offset=0")
        if generation.bfloat16:
            raise ValueError("the transformer decoder has no bfloat16 arithmetic path; decode in float32 instead")
        batch = cond.shape[0]
        z_terms = self.z_terms(native.as_float32(cond))  # [B, blocks * d] -> [blocks, B, d]
        z_terms = np.ascontiguousarray(z_terms.reshape(batch, self.blocks, self.d_model).transpose(1, 0, 2))
        tokens = native.TokenArrays.of(generation, batch, steps)
        ref = ctypes.byref(self.weights)
        threads = max(1, torch.get_num_threads())
        size = self.lib.transformer_generate_workspace(ref, batch, steps, threads)
        work = np.empty(size, np.float32)
        code = self.lib.transformer_generate(ref, batch, steps, native.pointer(z_terms), float(generation.temperature),
                                             *tokens.pointers(), native.pointer(work), size, threads)
        if code:
            raise RuntimeError(f"C transformer decoding kernel failed (code {code})")
        return tokens.finish(generation)
