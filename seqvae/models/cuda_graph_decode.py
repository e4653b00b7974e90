"""The CUDA graph step plan for a ConditionedLSTM or a TransformerDecoder: the GPU's backend for free-running
decoding.

On a GPU a small decode is bound by kernel launches (a dozen or so per step, 32 steps and more per window),
not by arithmetic. This plan records the whole step loop (initial states, every cell step, every token
choice) once per batch-size bucket and variant as a torch.cuda.CUDAGraph over static buffers, then replays
it: one launch per decode. The recorded body is the torch reference itself (`ConditionedLSTM.cell_step`, or
`TransformerDecoder.cell_step` over its key/value cache, and `Generation.choose`), so the graph decodes
what the torch path decodes. A transformer's step t attends over the cache's first t + 1 positions, a shape
fixed per step, so the unrolled loop records as any other. Rows are padded up to the bucket (a
power of two, at most MAX_ROWS) and larger batches run in MAX_ROWS pieces; rows never see one another.

A variant is what changes the recorded work: the steps per call, greedy or sampled, and whether there are
forced steps, an allowed-class mask and log-probabilities to keep. The temperature, the draws, the tokens
and the mask are data in the buffers, so turning a knob replays the same graph.

`plans.plan_for` chooses this plan for a core on a CUDA device; on the CPU the C kernel and numpy plans stay.
With capture=False the same buffers and body run eagerly: how the CPU tests check it against the reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from seqvae.models.decoder import Generation
from seqvae.models.lstm import ConditionedLSTM
from seqvae.models.transformer import TransformerDecoder

MAX_ROWS = 4096  # the largest graph: the engine's decode chunk, beyond which launches no longer dominate


def bucket_rows(rows: int) -> int:
    """The graph size a piece of `rows` rows runs in: the next power of two, at most MAX_ROWS."""
    return min(MAX_ROWS, 1 << max(0, rows - 1).bit_length())


@dataclass
class GraphVariant:
    """One recorded loop: its static inputs (None where the variant has none), outputs and how to run it."""

    cond: torch.Tensor  # [rows, cond]
    prev: torch.Tensor  # [rows] token fed into the first step
    temperature: torch.Tensor  # 0-d
    uniforms: torch.Tensor | None  # [steps, rows]
    forced: torch.Tensor | None  # [rows, steps]
    mask: torch.Tensor | None  # [rows, steps]
    allowed: torch.Tensor | None  # [classes]
    log_probs: torch.Tensor | None  # [rows, steps] output
    tokens: torch.Tensor  # [rows, steps] output
    run: Callable[[], None] | None = None  # the graph's replay, or the eager body; set once the loop is recorded


class CudaGraphPlan:
    """A decoder core's step loop as replayable CUDA graphs, built lazily per (bucket, variant)."""

    has_bf16_dot = False  # bfloat16 decoding arithmetic is the CPU kernel's alone

    def __init__(self, core: ConditionedLSTM | TransformerDecoder, capture: bool | None = None) -> None:
        self.core = core
        self.device = next(core.parameters()).device
        self.capture = self.device.type == "cuda" if capture is None else capture
        self.pool = torch.cuda.graph_pool_handle() if self.capture else None  # one memory pool for all graphs
        self.variants: dict[tuple, GraphVariant] = {}

    def generate(self, cond: torch.Tensor, generation: Generation, *, steps: int, prev: torch.Tensor | None = None,
                 offset: int = 0) -> torch.Tensor:
        if generation.bfloat16:
            raise ValueError("bfloat16 decoding needs the CPU's C kernel; decode in float32 on a GPU")
        if generation.features is not None:
            raise ValueError("the CUDA graph plan reads no step features (chords): decode with plan=None")
        rows = cond.shape[0]
        if prev is None:
            prev = torch.full((rows,), self.core.start_token, dtype=torch.long, device=cond.device)
        pieces = [self.run_piece(cond, prev, generation, slice(first, min(rows, first + MAX_ROWS)), steps, offset)
                  for first in range(0, rows, MAX_ROWS)]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def run_piece(self, cond: torch.Tensor, prev: torch.Tensor, generation: Generation, rows: slice, steps: int,
                  offset: int) -> torch.Tensor:
        """Copy one piece's rows (and its window steps offset..offset + steps) into a graph's buffers, replay it,
        copy the results out."""
        n, window = rows.stop - rows.start, slice(offset, offset + steps)
        key = (bucket_rows(n), steps, cond.dtype, generation.uniforms is not None, generation.forced is not None,
               generation.allowed is not None, generation.log_probs is not None)
        variant = self.variants.get(key) or self.build(*key)
        variant.cond[:n].copy_(cond[rows])
        variant.prev[:n].copy_(prev[rows])
        if variant.uniforms is not None:
            variant.temperature.fill_(float(generation.temperature))
            variant.uniforms[:, :n].copy_(generation.uniforms[window, rows])
        if variant.forced is not None:
            variant.forced[:n].copy_(generation.forced[rows, window])
            variant.mask[:n].copy_(generation.mask[rows, window])
        if variant.allowed is not None:
            variant.allowed.copy_(generation.allowed)
        variant.run()
        if variant.log_probs is not None:
            generation.log_probs[rows, window] = variant.log_probs[:n].to(generation.log_probs.device)
        return variant.tokens[:n].clone()

    def build(self, rows: int, steps: int, dtype: torch.dtype, sampled: bool, forced: bool, allowed: bool,
              scored: bool) -> GraphVariant:
        """Allocate a variant's buffers with valid contents (padding rows decode harmlessly) and record its loop."""
        core, device = self.core, self.device

        def buffer(present: bool, shape: tuple, fill, kind: torch.dtype) -> torch.Tensor | None:
            return torch.full(shape, fill, dtype=kind, device=device) if present else None

        variant = GraphVariant(
            cond=torch.zeros(rows, core.cond_size, dtype=dtype, device=device),
            prev=torch.full((rows,), core.start_token, dtype=torch.long, device=device),
            temperature=torch.ones((), dtype=torch.float32, device=device),
            uniforms=buffer(sampled, (steps, rows), 0.5, torch.float32),
            forced=buffer(forced, (rows, steps), 0, torch.long),
            mask=buffer(forced, (rows, steps), False, torch.bool),
            allowed=buffer(allowed, (core.num_classes,), True, torch.bool),
            log_probs=buffer(scored, (rows, steps), 0.0, torch.float32),
            tokens=torch.zeros(rows, steps, dtype=torch.long, device=device),
        )
        choice = Generation(variant.temperature, variant.uniforms, variant.forced, variant.mask,
                            log_probs=variant.log_probs, allowed=variant.allowed)

        def body() -> None:
            states, token = core.initial_states(variant.cond), variant.prev
            for t in range(steps):
                logits, states = core.cell_step(token, variant.cond, states)
                token = choice.choose(t, logits)
                variant.tokens[:, t] = token

        variant.run = self.record(body) if self.capture else body
        self.variants[(rows, steps, dtype, sampled, forced, allowed, scored)] = variant
        return variant

    def record(self, body: Callable[[], None]) -> Callable[[], None]:
        """`body` as a CUDA graph's replay. One eager run on a side stream first sets up cuBLAS and the
        allocator outside the capture, as torch.cuda.graphs asks; thread-local capture lets other threads
        (a server's receiving loop) go on using CUDA meanwhile. Where this torch or driver cannot capture the
        loop, the variant runs its body eagerly (the same tokens, more launches) and says so once."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                body()
        except RuntimeError as exc:
            warnings.warn(f"CUDA graph capture of the decode loop failed ({exc}); decoding without graphs",
                          RuntimeWarning, stacklevel=2)
            return body
        return graph.replay
