"""The transformer decoder's C step loop (transformer_kernel.c) against the torch reference: the same tokens and
log-probabilities for greedy and seeded sampling, forced steps and a key mask, at batch 1 and above; the encoder
in the same kernel gives torch's posteriors; the engine uses both by default, scores with them, and a server
morphs through them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from server_support import OscClient, notes_of, running_server

from seqvae.codec.events import FIRST_NOTE_ON
from seqvae.engine import Engine
from seqvae.models import build_model, get_config, native, plans, save_model
from seqvae.models.transformer_plan import NativeTransformerEncoderPlan, NativeTransformerPlan

pytestmark = pytest.mark.skipif(native.library() is None, reason="no C compiler: the fast path is not built")


def tiny_transformer(seed: int = 0, steps: int = 32, bfloat16: bool = False):
    torch.manual_seed(seed)
    model = build_model(dataclasses.replace(get_config("tiny_transformer"), steps=steps)).eval()
    if bfloat16:  # as a checkpoint saved in bfloat16 storage loads
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    return model


def both_paths(model, z, threads: int = 1, **kwargs):
    """(tokens, log-probs) of the torch path and of the fast path for the same call; the kernel splits its
    matrices between `threads` threads (torch keeps one: the reference does not depend on it)."""
    results, previous = [], torch.get_num_threads()
    try:
        for fast in (False, True):
            torch.set_num_threads(threads if fast else 1)
            log_probs = torch.empty(z.shape[0], model.config.steps)
            results.append((model.decode(z, fast=fast, log_probs=log_probs, **kwargs), log_probs))
    finally:
        torch.set_num_threads(previous)
    return results


def assert_agree(model, z, **kwargs):
    (torch_tokens, torch_lp), (fast_tokens, fast_lp) = both_paths(model, z, **kwargs)
    assert torch.equal(torch_tokens, fast_tokens)
    assert torch.allclose(torch_lp, fast_lp, atol=1e-4, rtol=0)
    return fast_tokens


def key_mask(classes: int) -> torch.Tensor:
    allowed = torch.zeros(classes, dtype=torch.bool)
    allowed[:FIRST_NOTE_ON] = True  # holding and resting are in every key
    allowed[FIRST_NOTE_ON::3] = True
    return allowed


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("threads", [1, 2])
def test_fast_path_matches_torch_greedy_sampled_forced_and_masked(batch, threads):
    model = tiny_transformer()
    assert isinstance(plans.plan_for(model.decoder), NativeTransformerPlan)
    steps, classes = model.config.steps, model.config.num_classes
    z = torch.randn(batch, model.config.z_size, generator=torch.Generator().manual_seed(batch))
    uniforms = torch.rand(steps, batch, generator=torch.Generator().manual_seed(7))
    mask = torch.rand(batch, steps, generator=torch.Generator().manual_seed(8)) < 0.3
    forced = torch.randint(0, classes, (batch, steps), generator=torch.Generator().manual_seed(9))
    allowed = key_mask(classes)
    assert_agree(model, z, threads=threads)
    sampled = assert_agree(model, z, threads=threads, temperature=0.9, uniforms=uniforms)
    assert not torch.equal(sampled, model.decode(z))  # the draws were used
    kept = assert_agree(model, z, threads=threads, temperature=0.7, uniforms=uniforms, forced=forced, forced_mask=mask)
    assert torch.equal(kept[mask], forced[mask])
    keyed = assert_agree(model, z, threads=threads, temperature=1.2, uniforms=uniforms, allowed=allowed)
    assert allowed[keyed].all()
    both = assert_agree(model, z, threads=threads, forced=forced, forced_mask=mask, allowed=allowed)
    assert torch.equal(both[mask], forced[mask]) and allowed[both[~mask]].all()


@pytest.mark.parametrize("batch", [1, 3])
def test_forced_spans_run_ahead_with_the_same_tokens_and_scores(batch):
    """Where every row's steps are forced the kernel runs those positions in one pass: scoring whole melodies
    (every step forced) and an infill's kept bars (a forced span, then free steps) agree with torch."""
    model = tiny_transformer(seed=8, steps=64)
    z = torch.randn(batch, model.config.z_size, generator=torch.Generator().manual_seed(2))
    forced = torch.randint(0, model.config.num_classes, (batch, 64), generator=torch.Generator().manual_seed(3))
    every = torch.ones(batch, 64, dtype=torch.bool)
    assert torch.equal(assert_agree(model, z, threads=2, forced=forced, forced_mask=every), forced)
    kept = torch.zeros(batch, 64, dtype=torch.bool)
    kept[:, :20] = kept[:, 40:50] = True
    kept[0, 45] = False  # one row free where the others are forced
    uniforms = torch.rand(64, batch, generator=torch.Generator().manual_seed(4))
    assert_agree(model, z, threads=2, temperature=0.8, uniforms=uniforms, forced=forced, forced_mask=kept)


@pytest.mark.parametrize("steps, batch", [(32, 1), (32, 11), (96, 3)])
def test_the_encoder_runs_in_the_kernel_with_torchs_posteriors(steps, batch):
    model = tiny_transformer(seed=9, steps=steps)
    assert isinstance(plans.encoder_plan_for(model.encoder), NativeTransformerEncoderPlan)
    x = torch.randint(0, model.config.num_classes, (batch, steps), generator=torch.Generator().manual_seed(5))
    (mu, sigma), (fast_mu, fast_sigma) = model.encode(x, fast=False), model.encode(x, fast=True)
    assert torch.allclose(mu, fast_mu, atol=1e-5) and torch.allclose(sigma, fast_sigma, atol=1e-5)


def test_bfloat16_weights_stream_as_bfloat16_panels_with_the_same_results():
    model = tiny_transformer(seed=3, bfloat16=True)
    plan = plans.plan_for(model.decoder)
    assert plan.weights.bf16 == 1
    z = torch.randn(4, model.config.z_size)
    assert_agree(model, z, temperature=0.8, uniforms=torch.rand(model.config.steps, 4))
    assert plans.plan_for(tiny_transformer(seed=3).decoder).weights.bf16 == 0


def test_a_long_window_decodes_past_the_two_bar_cache():
    model = tiny_transformer(seed=4, steps=96)
    z = torch.randn(2, model.config.z_size, generator=torch.Generator().manual_seed(0))
    # these draws keep clear of near ties: one within 1e-8 of a class boundary may fall either way on either path
    assert_agree(model, z, temperature=0.6, uniforms=torch.rand(96, 2, generator=torch.Generator().manual_seed(1)))


def test_plan_follows_weight_changes():
    model = tiny_transformer(seed=5)
    z = torch.randn(2, model.config.z_size)
    before = model.decode(z, fast=True)
    with torch.no_grad():
        model.decoder.output.bias[int(before[0, 0])] -= 100.0
    assert_agree(model, z)
    assert model.decoding_precision("auto") == "float32"  # float32 weights: no bfloat16 arithmetic unasked


def test_bfloat16_arithmetic_follows_weight_changes_and_batches():
    model = tiny_transformer(seed=5, bfloat16=True)
    if not model.bf16_decoding_available():
        pytest.skip("this CPU or build has no bfloat16 dot products")
    assert model.decoding_precision("auto") == "bfloat16"
    z = torch.randn(3, model.config.z_size, generator=torch.Generator().manual_seed(2))
    before = model.decode(z, precision="bfloat16")
    assert all(torch.equal(before[i], model.decode(z[i:i + 1], precision="bfloat16")[0]) for i in range(3))
    with torch.no_grad():  # new block weights (still bfloat16 values): the row pairs must be packed again
        for block in model.decoder.blocks:
            block.ff[0].weight.neg_()
    after = model.decode(z, precision="bfloat16")
    assert not torch.equal(after, before)
    fresh = tiny_transformer(seed=0, bfloat16=True)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(after, fresh.decode(z, precision="bfloat16"))  # as a model built with those weights


def test_engine_scores_and_morphs_through_the_fast_path(tmp_path):
    save_model(tiny_transformer(seed=6), tmp_path / "t")
    engine = Engine.load(tmp_path / "t", device="cpu")
    a, b = engine.sample(2, temperature=0.8, seed=1)
    middle = engine.morph(a, b, 0.5)
    assert plans.PLAN_ATTRIBUTE in vars(engine.model.decoder)  # the engine decoded through the C loop
    z = torch.as_tensor(engine.latent_path(a, b, 0.5), dtype=torch.float32).reshape(1, -1)
    assert np.array_equal(middle.events, engine.model.decode(z, fast=False)[0].numpy())
    mask = np.zeros((1, engine.steps), dtype=bool)
    mask[0, :8] = True
    tokens, scores = engine.decode_scored(z.numpy(), forced=a.events[None], mask=mask)
    log_probs = torch.empty(1, engine.steps)
    reference = engine.model.decode(z, fast=False, forced=torch.as_tensor(a.events[None]),
                                    forced_mask=torch.as_tensor(mask), log_probs=log_probs)
    assert np.array_equal(tokens, reference.numpy())
    assert np.allclose(scores, log_probs.numpy(), atol=1e-4)


def test_a_server_morphs_a_transformer_model(tmp_path):
    save_model(tiny_transformer(seed=7), tmp_path / "t")
    engine = Engine.load(tmp_path / "t", device="cpu")
    with running_server(engine, tmp_path / "exports") as server:
        udp = OscClient(server.address[1], "udp")
        udp.one("/seqvae/sample", "a", 0.5, 1)
        udp.one("/seqvae/sample", "b", 0.5, 2)
        mid = udp.one("/seqvae/morph", "a", "b", 0.5)
        notes_of(mid)
        assert udp.one("/seqvae/morph", "a", "b", 0.5) == mid
        assert notes_of(udp.one("/seqvae/morph", "a", "b", 0.0)) == notes_of(udp.one("/seqvae/morph", "b", "a", 1.0))
