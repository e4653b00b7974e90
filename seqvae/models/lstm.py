"""Recurrent encoder and decoders: the MusicVAE flat ('lstm') and hierarchical ('hier') shapes.

Training runs the fused nn.LSTM (oneDNN on CPU, cuDNN on GPU) over whole sequences. Free-running
generation runs a step plan for the decoder's ConditionedLSTM when the caller hands one in (the C kernel or
numpy, chosen in plans.py), else the torch cell loop below, which is also the reference the plans are tested
against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqvae.models.decoder import Decoder, Generation, StepPlan, shift_right, two_pass_previous
from seqvae.models.sampling import choose_tokens


class BidirectionalLSTMEncoder(nn.Module):
    """Events -> (mu, sigma): stacked bidirectional LSTMs, final states of both directions -> two heads.

    `num_classes` is the input width: the event vocabulary for `forward`, a feature size for `summarize`.
    Without `sigma` there is no sigma head and the encoder gives (mu, None): a segment encoder's means are all
    a two-level model reads. `feature_size` > 0 widens the input by per-step features (a chord one-hot) that
    `forward` concatenates after the events' one-hot, so a model without them is the same model with those
    input weights zero.
    """

    def __init__(self, num_classes: int, sizes: tuple[int, ...], z_size: int, sigma: bool = True,
                 feature_size: int = 0) -> None:
        super().__init__()
        self.num_classes, self.feature_size = num_classes, feature_size
        layers, width = [], num_classes + feature_size
        for size in sizes:
            layers.append(nn.LSTM(width, size, batch_first=True, bidirectional=True))
            width = 2 * size
        self.layers = nn.ModuleList(layers)
        self.mu = nn.Linear(width, z_size)
        self.sigma = nn.Linear(width, z_size) if sigma else None

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T] events and, for an encoder with feature_size > 0, [B, T, feature_size] features -> (mu, sigma)."""
        h = F.one_hot(x, self.num_classes).to(self.mu.weight.dtype)
        if features is not None:
            h = torch.cat([h, features.to(h.dtype)], dim=-1)
        return self.summarize(h)

    def summarize(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[B, T, num_classes] real-valued inputs -> (mu, sigma)."""
        final = None
        for layer in self.layers:
            h, (h_n, _) = layer(h)
            final = h_n
        summary = torch.cat([final[0], final[1]], dim=-1)  # forward and backward final states
        if self.sigma is None:
            return self.mu(summary), None
        return self.mu(summary), F.softplus(self.sigma(summary)) + 1e-5


class HierarchicalLSTMEncoder(nn.Module):
    """Two levels: a 2-bar-shaped encoder gives each segment its posterior mean (a segment latent), then a
    bidirectional LSTM over the segment latents gives (mu, sigma).

    The segment level has exactly a flat model's encoder shape, so it can be a trained 2-bar model's encoder:
    the upper level then only learns how segments follow one another. `segment_sigma` keeps that encoder's
    sigma head too, which only the latent training stage reads (how precisely each segment latent matters).
    """

    def __init__(self, num_classes: int, sizes: tuple[int, ...], segment_z: int, top_sizes: tuple[int, ...],
                 z_size: int, segments: int, segment_sigma: bool = False) -> None:
        super().__init__()
        self.segments = segments
        self.segment = BidirectionalLSTMEncoder(num_classes, sizes, segment_z, sigma=segment_sigma)
        self.top = BidirectionalLSTMEncoder(segment_z, top_sizes, z_size)

    def segment_posteriors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[B, T] events -> segment (mu, sigma), each [B, segments, segment_z]; sigma is None without its head."""
        batch = x.shape[0]
        mu, sigma = self.segment(x.reshape(batch * self.segments, -1))
        shape = (batch, self.segments, -1)
        return mu.reshape(shape), None if sigma is None else sigma.reshape(shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.top.summarize(self.segment_posteriors(x)[0])


class ConditionedLSTM(nn.Module):
    """LSTM decoder fed [previous one-hot, conditioning, step features] at every step, initial state
    tanh(dense(cond)).

    `cond` is z for the flat model and a bar embedding for the hierarchical one. The previous token
    of the first step is START (index num_classes), which is an all-zero one-hot. Step features
    (`feature_size` > 0: a chord one-hot per step) come last, so their input weights are extra columns a
    model without them starts from at zero.
    """

    def __init__(self, num_classes: int, cond_size: int, sizes: tuple[int, ...], feature_size: int = 0) -> None:
        super().__init__()
        self.num_classes, self.cond_size, self.sizes = num_classes, cond_size, tuple(sizes)
        self.feature_size = feature_size
        self.init_state = nn.Linear(cond_size, 2 * sum(sizes))
        layers, width = [], num_classes + cond_size + feature_size
        for size in sizes:
            layers.append(nn.LSTM(width, size, batch_first=True))
            width = size
        self.layers = nn.ModuleList(layers)
        self.output = nn.Linear(width, num_classes)

    @property
    def start_token(self) -> int:
        return self.num_classes

    def initial_states(self, cond: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        flat = torch.tanh(self.init_state(cond))
        states, offset = [], 0
        for size in self.sizes:
            states.append((flat[:, offset:offset + size], flat[:, offset + size:offset + 2 * size]))
            offset += 2 * size
        return states

    def inputs(self, prev: torch.Tensor, cond: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T] previous tokens (START allowed), [B, cond] and [B, T, F] step features (None without them) ->
        [B, T, C + cond + F] LSTM inputs."""
        one_hot = F.one_hot(prev, self.num_classes + 1)[..., : self.num_classes].to(cond.dtype)
        parts = [one_hot, cond.unsqueeze(1).expand(-1, prev.shape[1], -1)]
        if features is not None:
            parts.append(features.to(cond.dtype))
        return torch.cat(parts, dim=-1)

    def teacher_forced(self, prev: torch.Tensor, cond: torch.Tensor,
                       features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, C] for the given previous tokens, all steps at once (fused LSTM)."""
        h = self.inputs(prev, cond, features)
        for layer, (h0, c0) in zip(self.layers, self.initial_states(cond), strict=True):
            h, _ = layer(h, (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()))
        return self.output(h)

    def cell_step(
        self, prev: torch.Tensor, cond: torch.Tensor, states: list[tuple[torch.Tensor, torch.Tensor]],
        features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One step with the fused layers' own weights: logits [B, C] and the new states; features [B, F]."""
        h = self.inputs(prev.unsqueeze(1), cond, None if features is None else features.unsqueeze(1))[:, 0]
        new_states = []
        for layer, (hx, cx) in zip(self.layers, states, strict=True):
            hx, cx = torch.lstm_cell(h, (hx, cx), layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0,
                                     layer.bias_hh_l0)
            new_states.append((hx, cx))
            h = hx
        return self.output(h), new_states

    def run_cells(
        self,
        cond: torch.Tensor,
        states: list[tuple[torch.Tensor, torch.Tensor]],
        prev: torch.Tensor,
        steps: int,
        choose,
        features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step loop: `choose(t, logits_t) -> token_t` decides what is fed back; features [B, steps, F].
        Returns (logits, tokens)."""
        all_logits, tokens = [], []
        for t in range(steps):
            logits, states = self.cell_step(prev, cond, states, None if features is None else features[:, t])
            prev = choose(t, logits)
            all_logits.append(logits)
            tokens.append(prev)
        return torch.stack(all_logits, dim=1), torch.stack(tokens, dim=1)


class LSTMDecoder(Decoder):
    """The flat decoder: one ConditionedLSTM over the whole window, conditioned on z and, with
    `feature_size` > 0, on step features [B, steps, F] (a chord one-hot per step) that every method takes
    as `features` (`generate` reads them from `Generation.features`)."""

    def __init__(self, num_classes: int, z_size: int, sizes: tuple[int, ...], steps: int,
                 feature_size: int = 0) -> None:
        super().__init__()
        self.steps = steps
        self.core = ConditionedLSTM(num_classes, z_size, sizes, feature_size)

    @property
    def step_core(self) -> ConditionedLSTM:
        """The core a step plan runs; with step features the plans read them as a class per step."""
        return self.core

    def teacher_forced(self, x: torch.Tensor, z: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.core.teacher_forced(shift_right(x, self.core.start_token), z, features)

    def scheduled(
        self, x: torch.Tensor, z: torch.Tensor, prob: float, uniforms: torch.Tensor, mode: str,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training logits with scheduled sampling; uniforms [B, T, 2] (coin, sample draw)."""
        coin = uniforms[..., 0] < prob
        if mode == "parallel":
            def teacher_forced(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
                return self.teacher_forced(x, z, features)

            prev = two_pass_previous(teacher_forced, x, z, coin, uniforms, self.core.start_token)
            return self.core.teacher_forced(prev, z, features)

        def choose(t: int, logits: torch.Tensor) -> torch.Tensor:
            sampled = choose_tokens(logits.detach(), 1.0, uniforms[:, t, 1])
            return torch.where(coin[:, t], sampled, x[:, t])

        start = torch.full_like(x[:, 0], self.core.start_token)
        logits, _ = self.core.run_cells(z, self.core.initial_states(z), start, x.shape[1], choose, features)
        return logits

    def generate(self, z: torch.Tensor, generation: Generation, plan: StepPlan | None) -> torch.Tensor:
        if plan is not None:
            return plan.generate(z, generation, steps=self.steps).to(z.device)
        start = torch.full((z.shape[0],), self.core.start_token, dtype=torch.long, device=z.device)
        _, tokens = self.core.run_cells(z, self.core.initial_states(z), start, self.steps, generation.choose,
                                        generation.features)
        return tokens


class HierarchicalDecoder(Decoder):
    """MusicVAE hierdec: a conductor LSTM turns z into one embedding per segment (a bar in MusicVAE's 16-bar
    model, two bars in ours); a ConditionedLSTM decodes each segment from its embedding, carrying the previous
    token across segment boundaries.

    With `segment_z` > 0 the conductor's outputs are projected to segment latents of that size and each
    segment is decoded from START, exactly as a flat decoder decodes a whole window: the segment level is
    then a flat model's decoder and can start as a trained one.

    Teacher forcing decodes all segments in parallel (batch B * segments), so training costs one fused
    LSTM call over `segment_steps` steps instead of `steps`.
    """

    def __init__(
        self, num_classes: int, z_size: int, conductor_sizes: tuple[int, ...], sizes: tuple[int, ...],
        steps: int, segments: int, segment_z: int = 0,
    ) -> None:
        super().__init__()
        self.steps, self.segments, self.segment_steps = steps, segments, steps // segments
        self.restart = segment_z > 0
        self.conductor_init = nn.Linear(z_size, 2 * sum(conductor_sizes))
        self.conductor_sizes = tuple(conductor_sizes)
        layers, width = [], 1
        for size in conductor_sizes:
            layers.append(nn.LSTM(width, size, batch_first=True))
            width = size
        self.conductor = nn.ModuleList(layers)
        self.to_segment = nn.Linear(width, segment_z) if segment_z else None
        self.core = ConditionedLSTM(num_classes, segment_z or width, sizes)

    @property
    def step_core(self) -> ConditionedLSTM:
        return self.core

    def segment_embeddings(self, z: torch.Tensor) -> torch.Tensor:
        """[B, segments, conductor size]: the conductor reads zeros and is steered by its initial state only."""
        flat = torch.tanh(self.conductor_init(z))
        h = z.new_zeros(z.shape[0], self.segments, 1)
        offset = 0
        for layer, size in zip(self.conductor, self.conductor_sizes, strict=True):
            h0 = flat[:, offset:offset + size].unsqueeze(0).contiguous()
            c0 = flat[:, offset + size:offset + 2 * size].unsqueeze(0).contiguous()
            h, _ = layer(h, (h0, c0))
            offset += 2 * size
        return self.to_segment(h) if self.to_segment is not None else h

    def previous(self, x: torch.Tensor) -> torch.Tensor:
        """Previous-token inputs: shifted behind START per segment when segments restart, else across them."""
        if not self.restart:
            return shift_right(x, self.core.start_token)
        segments = x.reshape(x.shape[0] * self.segments, self.segment_steps)
        return shift_right(segments, self.core.start_token).reshape(x.shape)

    def carried(self, tokens: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """The token fed into the next segment's first step: the last one, or START when segments restart."""
        return start if self.restart else tokens[:, -1]

    def _per_segment(self, prev: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        batch = z.shape[0]
        emb = self.segment_embeddings(z).reshape(batch * self.segments, -1)
        logits = self.core.teacher_forced(prev.reshape(batch * self.segments, self.segment_steps), emb)
        return logits.reshape(batch, self.steps, -1)

    def teacher_forced(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self._per_segment(self.previous(x), z)

    def _step_segments(self, z: torch.Tensor, run_segment) -> list[torch.Tensor]:
        """The segment-by-segment loop: `run_segment(cond, prev, offset) -> (result, tokens)` decodes one segment
        from its embedding, the token carried in and its first window step; returns the results in order."""
        emb = self.segment_embeddings(z)
        start = torch.full((z.shape[0],), self.core.start_token, dtype=torch.long, device=z.device)
        prev, out = start, []
        for segment in range(self.segments):
            result, tokens = run_segment(emb[:, segment], prev, segment * self.segment_steps)
            prev = self.carried(tokens.to(z.device), start)
            out.append(result)
        return out

    def scheduled(
        self, x: torch.Tensor, z: torch.Tensor, prob: float, uniforms: torch.Tensor, mode: str
    ) -> torch.Tensor:
        coin = uniforms[..., 0] < prob
        if mode == "parallel":
            prev = two_pass_previous(self.teacher_forced, x, z, coin, uniforms, self.core.start_token, self.previous)
            return self._per_segment(prev, z)

        def run_segment(cond: torch.Tensor, prev: torch.Tensor, offset: int):
            def choose(t: int, logits: torch.Tensor) -> torch.Tensor:
                sampled = choose_tokens(logits.detach(), 1.0, uniforms[:, offset + t, 1])
                return torch.where(coin[:, offset + t], sampled, x[:, offset + t])

            return self.core.run_cells(cond, self.core.initial_states(cond), prev, self.segment_steps, choose)

        return torch.cat(self._step_segments(z, run_segment), dim=1)

    def generate(self, z: torch.Tensor, generation: Generation, plan: StepPlan | None) -> torch.Tensor:
        def run_segment(cond: torch.Tensor, prev: torch.Tensor, offset: int):
            if plan is not None:
                tokens = plan.generate(cond, generation, steps=self.segment_steps, prev=prev, offset=offset)
            else:
                def choose(t: int, logits: torch.Tensor) -> torch.Tensor:
                    return generation.choose(offset + t, logits)

                _, tokens = self.core.run_cells(cond, self.core.initial_states(cond), prev, self.segment_steps,
                                                choose)
            return tokens, tokens

        return torch.cat(self._step_segments(z, run_segment), dim=1).to(z.device)
