"""Inference backends for the decoders, chosen here and nowhere else: on a GPU, a recurrent core's step loop as
CUDA graphs (cuda_graph_decode.py); on the CPU, for a recurrent core the C kernel (native.py), else the numpy step
plan (numpy_plan.py), and for a transformer decoder its C loop (transformer_plan.py); torch runs whatever none
covers.

The networks never import this module: the VAE asks `plan_for` for a decoder's `step_core` and hands the plan to
the decoder's `generate`. Plans hold copies of the weights, so each is cached on its module and rebuilt when a
parameter changes; `forget_plans` drops them after updates that leave parameter versions alone (fused Adam).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from seqvae.models import native
from seqvae.models.cuda_graph_decode import CudaGraphPlan
from seqvae.models.decoder import StepPlan
from seqvae.models.lstm import BidirectionalLSTMEncoder
from seqvae.models.numpy_plan import NumpyLSTMPlan
from seqvae.models.transformer import TransformerDecoder, TransformerEncoder
from seqvae.models.transformer_plan import NativeTransformerEncoderPlan, NativeTransformerPlan

PLAN_ATTRIBUTE = "_inference_plan"  # where a module's cached plan lives in its __dict__
T = TypeVar("T")


def cached_plan(module: nn.Module, backend: str, build: Callable[[], T]) -> T:
    """A plan stored on the module, rebuilt when the backend or any parameter changed (data pointer or version)."""
    key = (backend, tuple((p.data_ptr(), p._version) for p in module.parameters()))
    cached = module.__dict__.get(PLAN_ATTRIBUTE)
    if cached is None or cached[0] != key:
        cached = (key, build())
        module.__dict__[PLAN_ATTRIBUTE] = cached
    return cached[1]


def forget_plans(model: nn.Module) -> None:
    """Drop every cached plan under `model`; the next fast call rebuilds from the current weights."""
    for module in model.modules():
        module.__dict__.pop(PLAN_ATTRIBUTE, None)


def device_type(module: nn.Module) -> str:
    return next(module.parameters()).device.type


def plan_for(core: nn.Module) -> StepPlan | None:
    """The fastest available step plan for a decoder's step core: on a GPU, CUDA graphs (a ConditionedLSTM or a
    TransformerDecoder); on the CPU, for a ConditionedLSTM the C kernel, else numpy, and for a
    TransformerDecoder its C loop, else None (it then decodes in torch)."""
    if device_type(core) == "cuda":
        return cached_plan(core, "cuda_graph", lambda: CudaGraphPlan(core))
    lib = native.library()
    if isinstance(core, TransformerDecoder):
        if lib is None or not NativeTransformerPlan.supports(core):
            return None
        return cached_plan(core, "native", lambda: NativeTransformerPlan(core, lib))
    if lib is not None and native.NativeLSTMPlan.supports(core):
        return cached_plan(core, "native", lambda: native.NativeLSTMPlan(core, lib))
    return cached_plan(core, "numpy", lambda: NumpyLSTMPlan(core))


def encoder_plan_for(encoder: nn.Module) -> native.NativeEncoderPlan | NativeTransformerEncoderPlan | None:
    """The C encoder for a one-layer bidirectional LSTM encoder or a transformer encoder on the CPU, or None (then
    the encoder runs in torch: cuDNN's fused LSTM on a GPU)."""
    lib = native.library()
    if lib is None or device_type(encoder) != "cpu":
        return None
    if isinstance(encoder, TransformerEncoder) and NativeTransformerEncoderPlan.supports(encoder, lib):
        return cached_plan(encoder, "native", lambda: NativeTransformerEncoderPlan(encoder, lib))
    if not isinstance(encoder, BidirectionalLSTMEncoder) or not native.NativeEncoderPlan.supports(encoder):
        return None
    return cached_plan(encoder, "native", lambda: native.NativeEncoderPlan(encoder, lib))
