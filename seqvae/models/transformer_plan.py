"""The transformer decoder packed for transformer_kernel.c's step loop (a `decoder.StepPlan` for
TransformerDecoder), and the encoder packed for the same kernel's one-pass encoding.

Eager PyTorch spends a decode step of the 4-layer decoder on dispatching a hundred small operations; the C loop
runs the same arithmetic (a key/value cache, one position per step) with the weights packed once, as the LSTM's
plan does (native.py). Matrices stream as bfloat16 where every weight is a bfloat16 value (a checkpoint saved in
bfloat16 storage), which changes no result. On a CPU with AVX512-BF16, precision "bfloat16" (which "auto" picks for
such weights, as for the LSTM) runs the matrices in bfloat16 arithmetic: twice the float32 multiply rate, and the
weights packed a second time, as row pairs, on first use.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
        ("b_out", ctypes.c_void_p), ("dot_qkv", _floats), ("dot_proj", _floats), ("dot_ff1", _floats),
        ("dot_ff2", _floats), ("dot_out", ctypes.c_void_p),
    ]


def _vector(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(native.as_float32(t))


@dataclass(frozen=True)
class Block:
    """One pre-norm block's tensors, however its module names them: (weight [out, in], bias) per matrix."""

    norm1: nn.LayerNorm
    qkv: tuple[torch.Tensor, torch.Tensor]  # q, k, v columns, each heads x d_head
    proj: tuple[torch.Tensor, torch.Tensor]
    norm2: nn.LayerNorm
    ff1: tuple[torch.Tensor, torch.Tensor]
    ff2: tuple[torch.Tensor, torch.Tensor]


def _pair(linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    return linear.weight, linear.bias


class PackedStack:
    """Embedding, positions, blocks and final norm packed into the kernel's TransformerWeights (bfloat16 panels
    where `bf16`); the arrays it points at live as long as this object."""

    def __init__(self, embed: torch.Tensor, position: torch.Tensor, n_heads: int, blocks: list[Block],
                 norm: nn.LayerNorm, bf16: bool, output: nn.Linear | None = None) -> None:
        self.keep: list[np.ndarray] = []
        self.blocks, self.output = blocks, output  # the module's own tensors, read again by pack_dot
        self._packing = threading.Lock()  # two threads' first bfloat16 decodes pack once
        d = embed.shape[1]
        w = _TransformerWeights()
        w.d_model, w.n_heads, w.blocks, w.max_steps, w.bf16 = d, n_heads, len(blocks), position.shape[0], int(bf16)
        w.ff_size = blocks[0].ff1[0].shape[0]
        w.embed, w.position = self.held(_vector(embed)), self.held(_vector(position))
        for i, block in enumerate(blocks):
            w.ln1_w[i], w.ln1_b[i] = self.held(_vector(block.norm1.weight)), self.held(_vector(block.norm1.bias))
            w.ln2_w[i], w.ln2_b[i] = self.held(_vector(block.norm2.weight)), self.held(_vector(block.norm2.bias))
            for name in ("qkv", "proj", "ff1", "ff2"):
                weight, bias = getattr(block, name)
                getattr(w, f"w_{name}")[i] = self.held(native.pack_panels(native.as_float32(weight).T, bf16))
                getattr(w, f"b_{name}")[i] = self.held(_vector(bias))
        w.norm_w, w.norm_b = self.held(_vector(norm.weight)), self.held(_vector(norm.bias))
        if output is not None:
            c = output.out_features
            w.num_classes, w.padded_classes = c, -(-c // native.LANES) * native.LANES
            w.w_out = self.held(native.pack_panels(native.as_float32(output.weight).T, bf16))
            b_out = np.full(w.padded_classes, -1e30, np.float32)
            b_out[:c] = native.as_float32(output.bias)
            w.b_out = self.held(b_out)
        self.weights = w

    def held(self, array: np.ndarray) -> int:
        self.keep.append(array)
        return native.pointer(array)

    def pack_dot(self) -> None:
        """Pack a decoder's matrices as bfloat16 row pairs for the dot-product path, once, from the same tensors (a
        plan is rebuilt when they change); dot_out, set last, says done."""
        if self.output is None:
            raise ValueError("only a decoder stack (with its output layer) has a bfloat16 arithmetic path")
        with self._packing:
            if self.weights.dot_out:
                return
            for i, block in enumerate(self.blocks):
                for name in ("qkv", "proj", "ff1", "ff2"):
                    pairs = native.pack_pairs(native.as_float32(getattr(block, name)[0]).T)
                    getattr(self.weights, f"dot_{name}")[i] = self.held(pairs)
            self.weights.dot_out = self.held(native.pack_pairs(native.as_float32(self.output.weight).T))


def stack_supported(d_model: int, ff_size: int, blocks: int) -> bool:
    """The shapes the kernel takes: widths in whole 16-float panels, at most MAX_BLOCKS blocks."""
    return blocks <= MAX_BLOCKS and d_model % native.LANES == 0 and ff_size % native.LANES == 0


class NativeTransformerPlan:
    """A TransformerDecoder's weights laid out for transformer_generate."""

    def __init__(self, decoder, lib: ctypes.CDLL) -> None:
        self.lib = lib
        bf16 = native.bfloat16_exact(decoder)
        blocks = [Block(b.norm1, _pair(b.qkv), _pair(b.proj), b.norm2, _pair(b.ff[0]), _pair(b.ff[2]))
                  for b in decoder.blocks]
        self.stack = PackedStack(decoder.embed.weight, decoder.position, decoder.n_heads, blocks, decoder.norm, bf16,
                                 decoder.output)
        self.weights = self.stack.weights
        z_weights = np.concatenate([native.as_float32(b.z_proj.weight).T for b in decoder.blocks], axis=1)
        z_bias = np.concatenate([native.as_float32(b.z_proj.bias) for b in decoder.blocks])
        self.z_terms = native.PackedAffine(lib, z_weights, z_bias, bf16)  # every block's z term in one product
        self.d_model, self.blocks = decoder.embed.embedding_dim, len(decoder.blocks)

    @property
    def has_bf16_dot(self) -> bool:
        """Whether this CPU and build can run the matrices in bfloat16 arithmetic (AVX512-BF16)."""
        return bool(self.lib.kernel_has_bf16_dot())

    @staticmethod
    def supports(decoder) -> bool:
        return stack_supported(decoder.embed.embedding_dim, decoder.blocks[0].ff[0].out_features, len(decoder.blocks))

    def generate(self, cond: torch.Tensor, generation: Generation, *, steps: int, prev: torch.Tensor | None = None,
                 offset: int = 0) -> torch.Tensor:
        """As decoder.StepPlan, with `cond` the latent z [B, Z]; a transformer always decodes its whole window from
        START (`prev` None, `offset` 0); `generation.bfloat16` runs the matrices in bfloat16 arithmetic."""
        if prev is not None or offset:
            raise ValueError("the transformer plan decodes whole windows from START: send prev=None and offset=0")
        if generation.bfloat16:
            if not self.has_bf16_dot:
                raise ValueError("bfloat16 arithmetic needs a CPU with AVX512-BF16; decode in float32 instead")
            self.stack.pack_dot()
        batch = cond.shape[0]
        z_terms = self.z_terms(native.as_float32(cond))  # [B, blocks * d] -> [blocks, B, d]
        z_terms = np.ascontiguousarray(z_terms.reshape(batch, self.blocks, self.d_model).transpose(1, 0, 2))
        tokens = native.TokenArrays.of(generation, batch, steps)
        ref = ctypes.byref(self.weights)
        threads = native.kernel_threads()
        size = self.lib.transformer_generate_workspace(ref, batch, steps, threads)
        work = np.empty(size, np.float32)
        code = self.lib.transformer_generate(ref, batch, steps, native.pointer(z_terms), float(generation.temperature),
                                             *tokens.pointers(), native.pointer(work), size, threads,
                                             int(generation.bfloat16))
        if code:
            raise RuntimeError(f"C transformer decoding kernel failed (code {code})")
        return tokens.finish(generation)


class NativeTransformerEncoderPlan:
    """A TransformerEncoder's weights laid out for transformer_encode, its mu and sigma heads included."""

    def __init__(self, encoder, lib: ctypes.CDLL) -> None:
        self.lib = lib
        bf16 = native.bfloat16_exact(encoder)
        layers = encoder.layers.layers
        blocks = [Block(layer.norm1, (layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias),
                        _pair(layer.self_attn.out_proj), layer.norm2, _pair(layer.linear1), _pair(layer.linear2))
                  for layer in layers]
        self.stack = PackedStack(encoder.embed.weight, encoder.position, layers[0].self_attn.num_heads, blocks,
                                 encoder.norm, bf16)
        heads = np.concatenate([native.as_float32(encoder.mu.weight), native.as_float32(encoder.sigma.weight)]).T
        bias = np.concatenate([native.as_float32(encoder.mu.bias), native.as_float32(encoder.sigma.bias)])
        self.heads = native.PackedAffine(lib, heads, bias, bf16)
        self.z_size, self.d_model = encoder.mu.out_features, encoder.embed.embedding_dim

    @staticmethod
    def supports(encoder, lib: ctypes.CDLL) -> bool:
        """Pre-norm GELU layers the kernel's stack takes, over windows short enough for one pass."""
        layers = encoder.layers.layers
        return (stack_supported(encoder.embed.embedding_dim, layers[0].linear1.out_features, len(layers))
                and all(layer.norm_first and layer.activation_relu_or_gelu == 2 for layer in layers)
                and lib.transformer_encode_rows(encoder.position.shape[0]) > 0)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) [B, z] for event windows x [B, steps], a few windows per kernel call (one pass each)."""
        tokens = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.int64)
        batch, steps = tokens.shape
        per_call = self.lib.transformer_encode_rows(steps)  # >= 1: `supports` checked the window length
        ref = ctypes.byref(self.stack.weights)
        threads = native.kernel_threads()
        pooled = np.empty((batch, self.d_model), np.float32)
        for start in range(0, batch, per_call):
            part = tokens[start:start + per_call]
            size = self.lib.transformer_generate_workspace(ref, len(part), steps, threads)
            work = np.empty(size, np.float32)
            states = np.empty((len(part), steps, self.d_model), np.float32)
            if self.lib.transformer_encode(ref, len(part), steps, native.pointer(part), native.pointer(states),
                                           native.pointer(work), size, threads):
                raise RuntimeError("C transformer encoding kernel failed")
            pooled[start:start + len(part)] = states.mean(axis=1)
        heads = self.heads(pooled)
        mu = torch.from_numpy(heads[:, : self.z_size].copy())
        return mu, F.softplus(torch.from_numpy(heads[:, self.z_size:].copy())) + 1e-5
