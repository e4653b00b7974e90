"""The numpy step plan for ConditionedLSTM: the fallback backend where the C kernel (native.py) cannot be built.

Per call, the conditioning's contribution to the first layer's gates is computed once; the previous
token's one-hot matmul is a row lookup in a precomputed table (biases folded in), and so is a step
feature's (a chord class: its row of the feature weights); deeper layers do one
matmul over [h_below, h_own]; all buffers are preallocated and every ufunc writes with out=. The
sigmoid gates come out of the same tanh call as the cell candidate, because their weight rows are
pre-scaled by 1/2 and sigmoid(x) = (1 + tanh(x / 2)) / 2.

It implements `decoder.StepPlan`; `plans.plan_for` chooses it and caches it on the core.
"""

from __future__ import annotations

import numpy as np
import torch

from seqvae.models.decoder import Generation
from seqvae.models.sampling import choose_tokens_numpy, token_log_probs_numpy


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


class _Buffers:
    """Per batch size: gate, state and concat buffers with their views made once."""

    def __init__(self, plan: NumpyLSTMPlan, batch: int) -> None:
        sizes = plan.sizes
        self.gates = [np.empty((batch, 4 * h), np.float32) for h in sizes]
        self.cells = [np.empty((batch, h), np.float32) for h in sizes]
        # concat[l] = [h_{l-1}, h_l] is layer l's matmul input (l >= 1). A layer's new h is written where the
        # layer above reads it (hidden[l]); a middle layer also copies it into its own slot (own[l]) for the
        # next step; the top layer's hidden and own slot are the same view.
        self.concat = [None] + [np.empty((batch, sizes[i - 1] + sizes[i]), np.float32) for i in range(1, len(sizes))]
        self.own = [None] + [self.concat[i][:, sizes[i - 1]:] for i in range(1, len(sizes))]
        self.hidden = [
            self.concat[i + 1][:, :h] if i + 1 < len(sizes)
            else self.own[i] if i > 0
            else np.empty((batch, h), np.float32)
            for i, h in enumerate(sizes)
        ]
        self.views = []
        for g, h in zip(self.gates, sizes, strict=True):
            self.views.append((g[:, :h], g[:, h:2 * h], g[:, 2 * h:3 * h], g[:, 3 * h:]))
        self.logits = np.empty((batch, plan.num_classes), np.float32)
        self.scratch = np.empty((batch, plan.num_classes), np.float32)
        self.lookup = np.empty((batch, 4 * sizes[0]), np.float32)
        self.feature_lookup = np.empty((batch, 4 * sizes[0]), np.float32)


class NumpyLSTMPlan:
    """Weights of one ConditionedLSTM laid out for the step loop."""

    has_bf16_dot = False  # bfloat16 arithmetic is the C kernel's alone

    def __init__(self, core) -> None:
        self.num_classes, self.sizes, self.feature_size = core.num_classes, core.sizes, core.feature_size
        c, d = core.num_classes, core.cond_size
        self.scales = []
        for h in self.sizes:
            scale = np.full(4 * h, 0.5, np.float32)
            scale[2 * h:3 * h] = 1.0  # gate order i, f, g, o: only g is a plain tanh
            self.scales.append(scale)
        first = core.layers[0]
        s0 = self.scales[0][:, None]
        w_ih = _numpy(first.weight_ih_l0) * s0
        bias = (_numpy(first.bias_ih_l0) + _numpy(first.bias_hh_l0)) * self.scales[0]
        table = np.zeros((c + 1, 4 * self.sizes[0]), np.float32)  # row c = START (zero one-hot)
        table[:c] = w_ih[:, :c].T
        self.table = table + bias
        self.w_cond = np.ascontiguousarray(w_ih[:, c:c + d].T)
        self.w_feature = np.ascontiguousarray(w_ih[:, c + d:].T)  # [F, 4 H0]: a row per step feature class
        self.w_hh0 = np.ascontiguousarray((_numpy(first.weight_hh_l0) * s0).T)
        self.w_cat, self.b_cat = [None], [None]
        for i in range(1, len(self.sizes)):
            layer, s = core.layers[i], self.scales[i][:, None]
            w = np.concatenate([_numpy(layer.weight_ih_l0), _numpy(layer.weight_hh_l0)], axis=1) * s
            self.w_cat.append(np.ascontiguousarray(w.T))
            self.b_cat.append((_numpy(layer.bias_ih_l0) + _numpy(layer.bias_hh_l0)) * self.scales[i])
        self.post_mul = [np.where(s == 1.0, 1.0, 0.5).astype(np.float32) for s in self.scales]
        self.post_add = [np.where(s == 1.0, 0.0, 0.5).astype(np.float32) for s in self.scales]
        self.w_out = np.ascontiguousarray(_numpy(core.output.weight).T)
        self.b_out = _numpy(core.output.bias)
        self.w_init = np.ascontiguousarray(_numpy(core.init_state.weight).T)
        self.b_init = _numpy(core.init_state.bias)
        self._buffers: dict[int, _Buffers] = {}

    def buffers(self, batch: int) -> _Buffers:
        if batch not in self._buffers:
            if len(self._buffers) > 8:
                self._buffers.clear()
            self._buffers[batch] = _Buffers(self, batch)
        return self._buffers[batch]

    def generate(self, cond: torch.Tensor, generation: Generation, *, steps: int, prev: torch.Tensor | None = None,
                 offset: int = 0) -> torch.Tensor:
        if generation.bfloat16:
            raise ValueError("bfloat16 decoding needs the C kernel; decode in float32 instead")
        temperature, uniforms = generation.temperature, generation.uniforms
        forced, mask = generation.forced, generation.mask
        cond_np = cond.detach().to("cpu", torch.float32).numpy()
        batch = cond_np.shape[0]
        classes = generation.feature_classes(self.feature_size, batch, offset, steps)
        buf = self.buffers(batch)
        sizes = self.sizes
        n_layers = len(sizes)
        # initial states: tanh(dense(cond)), laid out [h0, c0, h1, c1, ...]
        flat = np.tanh(cond_np @ self.w_init + self.b_init)
        off = 0
        for i, h in enumerate(sizes):
            buf.hidden[i][...] = flat[:, off:off + h]
            if i >= 1 and i + 1 < n_layers:
                buf.own[i][...] = flat[:, off:off + h]
            buf.cells[i][...] = flat[:, off + h:off + 2 * h]
            off += 2 * h
        cond_gates = cond_np @ self.w_cond
        prev_np = (np.full(batch, self.num_classes, np.int64) if prev is None
                   else prev.detach().cpu().numpy().astype(np.int64))
        forced_np = mask_np = None
        if forced is not None:
            forced_np = forced.detach().cpu().numpy()[:, offset:offset + steps].astype(np.int64)
            mask_np = mask.detach().cpu().numpy()[:, offset:offset + steps].astype(bool)
        u_np = None if uniforms is None else uniforms.numpy()[offset:offset + steps]
        penalty = None  # -inf on the classes a free step may not choose, 0 elsewhere
        if generation.allowed is not None:
            penalty = np.where(generation.allowed.cpu().numpy(), 0.0, -np.inf).astype(np.float32)
        out = np.empty((batch, steps), np.int64)
        log_probs = None if generation.log_probs is None else generation.log_probs.numpy()
        top = buf.hidden[-1]
        for t in range(steps):
            for i in range(n_layers):
                g = buf.gates[i]
                if i == 0:
                    np.matmul(buf.hidden[0], self.w_hh0, out=g)
                    np.take(self.table, prev_np, axis=0, out=buf.lookup)
                    np.add(g, buf.lookup, out=g)
                    np.add(g, cond_gates, out=g)
                    if classes is not None:
                        np.take(self.w_feature, classes[:, t], axis=0, out=buf.feature_lookup)
                        np.add(g, buf.feature_lookup, out=g)
                else:
                    np.matmul(buf.concat[i], self.w_cat[i], out=g)
                    np.add(g, self.b_cat[i], out=g)
                np.tanh(g, out=g)
                np.multiply(g, self.post_mul[i], out=g)
                np.add(g, self.post_add[i], out=g)
                gi, gf, gg, go = buf.views[i]
                c = buf.cells[i]
                np.multiply(c, gf, out=c)
                np.multiply(gi, gg, out=gi)
                np.add(c, gi, out=c)
                np.tanh(c, out=gg)
                np.multiply(go, gg, out=buf.hidden[i])
                if i >= 1 and i + 1 < n_layers:
                    buf.own[i][...] = buf.hidden[i]
            np.matmul(top, self.w_out, out=buf.logits)
            np.add(buf.logits, self.b_out, out=buf.logits)
            logits = buf.logits
            if penalty is not None:
                logits = logits + penalty
                if forced_np is not None:
                    np.copyto(logits, buf.logits, where=mask_np[:, t, None])
            token = choose_tokens_numpy(logits, temperature, None if u_np is None else u_np[t], buf.scratch)
            if forced_np is not None:
                token = np.where(mask_np[:, t], forced_np[:, t], token)
            out[:, t] = token
            if log_probs is not None:
                log_probs[:, offset + t] = token_log_probs_numpy(logits, token)
            prev_np = token
        return torch.from_numpy(out)

