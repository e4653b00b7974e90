"""The GPU decoding path: the CUDA graph plan's buffers and body against the torch reference (eagerly, on the CPU),
and on a CUDA device the recorded graphs, the engine and chord models there (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqvae.data.synthetic import synthetic_windows
from seqvae.models import build_model, get_config, plans
from seqvae.models.cuda_graph_decode import MAX_ROWS, CudaGraphPlan, bucket_rows

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; CPU-only CI")
DECODERS = ["tiny_lstm", "tiny_hier", "tiny_hier2", "tiny_transformer"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def sharpened(name: str, seed: int = 0, device: str = "cpu"):
    """A tiny model whose logits have clear winners (random init is near-uniform)."""
    torch.manual_seed(seed)
    model = build_model(get_config(name)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model.to(device)


def decode_both_ways(model, rows: int, seed: int = 0, **args) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens, log-probabilities) of the plan path and of the torch reference, for one set of arguments."""
    device = model.device
    z = torch.randn(rows, model.config.z_size, generator=torch.Generator().manual_seed(seed)).to(device)
    out = []
    for fast in (True, False):
        scores = torch.full((rows, model.config.steps), float("nan"))
        tokens = model.decode(z, generator=torch.Generator(device=device).manual_seed(seed + 1), fast=fast,
                              log_probs=scores, **args)
        out.append((tokens.cpu(), scores))
    return out


def constraints(model, rows: int) -> dict:
    steps, classes = model.config.steps, model.config.num_classes
    forced = torch.as_tensor(synthetic_windows(rows, steps, seed=3), dtype=torch.long)
    mask = torch.rand(rows, steps, generator=torch.Generator().manual_seed(4)) < 0.3
    allowed = torch.zeros(classes, dtype=torch.bool)
    allowed[::3] = True
    return dict(forced=forced.to(model.device), forced_mask=mask.to(model.device), allowed=allowed)


def assert_same(pair) -> None:
    (fast, fast_scores), (reference, reference_scores) = pair
    assert torch.equal(fast, reference)
    assert torch.allclose(fast_scores, reference_scores, atol=1e-5)


def test_buckets_are_powers_of_two_up_to_the_largest_graph():
    assert [bucket_rows(n) for n in (1, 2, 3, 5, 64, 65)] == [1, 2, 4, 8, 64, 128]
    assert bucket_rows(MAX_ROWS + 1) == MAX_ROWS


@pytest.mark.parametrize("name", DECODERS)
def test_graph_body_decodes_what_the_torch_reference_decodes(name, monkeypatch):
    """The plan's static buffers and recorded body, run eagerly here: greedy and sampled, with forced steps, a key
    mask and log-probabilities, rows padded to a bucket, and one plan replayed at two temperatures."""
    eager = {}

    def plan_for(core):
        return eager.setdefault(id(core), CudaGraphPlan(core, capture=False))

    monkeypatch.setattr(plans, "plan_for", plan_for)
    model = sharpened(name, seed=1)
    for temperature in (0.0, 0.8, 1.5):
        assert_same(decode_both_ways(model, 5, temperature=temperature))
        assert_same(decode_both_ways(model, 3, seed=2, temperature=temperature, **constraints(model, 3)))
    (plan,) = eager.values()
    sampled = [key for key in plan.variants if key[3]]
    assert len(sampled) == 2  # one graph per bucket: both sampling temperatures replay it


def test_batches_beyond_the_largest_graph_run_in_pieces(monkeypatch):
    from seqvae.models import cuda_graph_decode

    monkeypatch.setattr(cuda_graph_decode, "MAX_ROWS", 4)
    monkeypatch.setattr(plans, "plan_for", lambda core: CudaGraphPlan(core, capture=False))
    model = sharpened("tiny_hier", seed=2)
    assert_same(decode_both_ways(model, 11, temperature=0.9, **constraints(model, 11)))


def test_the_plan_refuses_what_it_cannot_decode():
    from seqvae.models.decoder import Generation

    model = sharpened("tiny_lstm")
    plan = CudaGraphPlan(model.decoder.core, capture=False)
    z = torch.zeros(1, model.config.z_size)
    with pytest.raises(ValueError, match="bfloat16"):
        plan.generate(z, Generation(0.0, bfloat16=True), steps=4)
    with pytest.raises(ValueError, match="step features"):
        plan.generate(z, Generation(0.0, features=torch.zeros(1, 4, 3)), steps=4)


@pytest.mark.parametrize("name", ["tiny_lstm", "tiny_transformer"])
def test_cpu_models_keep_their_cpu_plans(name):
    model = sharpened(name)
    assert not isinstance(plans.plan_for(model.decoder.step_core), CudaGraphPlan)


# ------------------------------------------------------------------ on a GPU
@needs_cuda
@pytest.mark.filterwarnings("error::RuntimeWarning")  # a capture that falls back to eager decoding fails here
@pytest.mark.parametrize("name", DECODERS)
def test_cuda_graphs_decode_what_the_torch_reference_decodes_on_the_gpu(name):
    model = sharpened(name, seed=3, device="cuda")
    assert isinstance(plans.plan_for(model.decoder.step_core), CudaGraphPlan)
    for temperature in (0.0, 0.7, 1.2):
        for rows in (1, 3, 64):
            assert_same(decode_both_ways(model, rows, temperature=temperature))
        assert_same(decode_both_ways(model, 5, temperature=temperature, **constraints(model, 5)))


@needs_cuda
def test_engine_on_cuda_samples_constrains_and_plays_chords():
    from seqvae.codec.events import FIRST_NOTE_ON
    from seqvae.engine import Engine

    engine = Engine(sharpened("tiny_lstm"), device="cuda")
    assert engine.device.startswith("cuda") and engine.precision == "float32"
    first = [m.events.tolist() for m in engine.sample(8, temperature=0.5, seed=1)]
    assert first == [m.events.tolist() for m in engine.sample(8, temperature=0.5, seed=1)]
    keyed = engine.constrained("C major")
    onsets = [keyed.codec.class_to_pitch(e) for m in keyed.sample(16, temperature=1.0, seed=2)
              for e in m.events if e >= FIRST_NOTE_ON]
    assert onsets and all(keyed.key.contains(p) for p in onsets)
    chords = Engine(sharpened("tiny_chords"), device="cuda").with_chords("Am F C G")
    assert chords.decode_events(np.zeros((2, chords.z_size), np.float32)).shape == (2, chords.steps)
