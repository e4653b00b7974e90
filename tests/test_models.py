"""Models: registry, shapes, the fast decode path against the torch reference, forced steps, checkpoints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from seqvae.codec import EventCodec
from seqvae.data.synthetic import synthetic_windows
from seqvae.models import (
    CONFIGS,
    build_model,
    config_from_dict,
    config_to_dict,
    get_config,
    kl_divergence,
    latent_loss,
    load_model,
    plans,
    save_model,
    vae_loss,
)
from seqvae.models.checkpoint import resolve_checkpoint

TINY = ["tiny_lstm", "tiny_hier", "tiny_hier2", "tiny_transformer"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def sharpened(name: str, seed: int = 0):
    """A tiny model with weights scaled up so its logits have clear winners (random init is near-uniform)."""
    torch.manual_seed(seed)
    model = build_model(get_config(name)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def test_registry_names_and_errors():
    for name in ("mel_2bar_small", "mel_16bar_hier", "mel_2bar_transformer", "mel_16bar_transformer",
                 "mel_2bar_small_triple", "mel_16bar_hier_triple", "tiny_lstm", "tiny_hier", "tiny_transformer"):
        assert name in CONFIGS
    assert get_config("mel_2bar_small_triple").steps == 24
    assert get_config("mel_16bar_hier_triple").steps == 192
    assert get_config("mel_16bar_hier_triple").segment_steps == 24  # 2-bar segments
    assert get_config("mel_16bar_hier_triple").init_segments == "triple"  # the shipped 2-bar triple model
    assert get_config("mel_2bar_small_triple").init_from == "default"
    assert get_config("mel_16bar_hier").init_segments == "default"
    with pytest.raises(ValueError, match="segment_z_size"):
        dataclasses.replace(get_config("tiny_lstm"), segment_z_size=8)
    with pytest.raises(ValueError, match="freeze_segments needs init_segments"):
        dataclasses.replace(get_config("tiny_hier2"), freeze_segments=True)
    with pytest.raises(ValueError, match="latent_train_steps"):
        dataclasses.replace(get_config("tiny_hier2"), latent_train_steps=10)
    assert get_config("mel_16bar_hier_triple").latent_train_steps == get_config("mel_16bar_hier").latent_train_steps
    assert get_config("mel_2bar_small").num_classes == EventCodec().num_classes
    with pytest.raises(ValueError, match="mel_2bar_small"):
        get_config("nope")
    edited = get_config("tiny_lstm")
    edited.z_size = 99
    assert get_config("tiny_lstm").z_size != 99  # a copy, the registry is untouched


def test_config_json_round_trip_and_validation():
    for config in CONFIGS.values():
        assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config
    data = config_to_dict(get_config("tiny_lstm"))
    data["z_sise"] = 3
    with pytest.raises(ValueError, match="z_sise"):
        config_from_dict(data)
    data = config_to_dict(get_config("tiny_hier"))
    data["segments"] = 5
    with pytest.raises(ValueError, match="segments=5"):
        config_from_dict(data)
    old = config_to_dict(get_config("tiny_hier"))  # files written before the renames still load
    old["bars"], old["default_steps"], old["latent_steps"] = old.pop("segments"), old.pop("train_steps"), 0
    del old["latent_train_steps"]
    assert config_from_dict(old) == get_config("tiny_hier")


@pytest.mark.parametrize("name", TINY)
def test_shapes_and_loss(name):
    model = build_model(get_config(name))
    config = model.config
    x = torch.as_tensor(synthetic_windows(4, config.steps, seed=1), dtype=torch.long)
    mu, sigma = model.encode(x)
    assert mu.shape == sigma.shape == (4, config.z_size) and (sigma > 0).all()
    z = torch.randn(4, config.z_size)
    assert model.logits(x, z).shape == (4, config.steps, config.num_classes)
    tokens = model.decode(z)
    assert tokens.shape == (4, config.steps) and tokens.dtype == torch.long
    out = model(x, sampling_prob=0.5)
    terms = vae_loss(out, x, beta=0.5, free_bits=0.0)
    terms.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert terms.kl_per_dim.shape == (config.z_size,)


def test_kl_matches_torch_distributions():
    mu, sigma = torch.randn(5, 7), torch.rand(5, 7) + 0.1
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, sigma), torch.distributions.Normal(0.0, 1.0)
    )
    assert torch.allclose(kl_divergence(mu, sigma), expected, atol=1e-6)


def test_latent_stage_pass_and_loss():
    """The latent stage reads segment posteriors, not events, and scores the conductor's segment latents by their
    log-density under those posteriors: zero at the means, a quarter when every sigma doubles."""
    model = build_model(get_config("tiny_hier2_latent"))
    torch.manual_seed(0)
    x = torch.as_tensor(synthetic_windows(4, 256, seed=1), dtype=torch.long)
    target_mu, target_sigma = model.encoder.segment_posteriors(x)
    assert target_mu.shape == target_sigma.shape == (4, 8, 256)
    eps = torch.randn(4, 8)
    out = model(None, eps=eps, segments=(target_mu, target_sigma))
    assert out.predicted.shape == (4, 8, 256)
    assert torch.allclose(out.mu, model.encode(x)[0], atol=1e-5)  # the same upper encoder as the event pass
    terms = latent_loss(out, beta=0.5, free_bits=1.0)
    standard = (out.predicted - target_mu) / target_sigma
    assert terms.recon.item() == pytest.approx(0.5 * standard.square().sum().item() / 4, rel=1e-5)
    assert torch.isnan(terms.accuracy)
    wider = latent_loss(dataclasses.replace(out, target_sigma=2 * target_sigma), beta=0.5, free_bits=1.0)
    assert wider.recon.item() == pytest.approx(terms.recon.item() / 4, rel=1e-5)
    exact = latent_loss(dataclasses.replace(out, predicted=target_mu), beta=0.0, free_bits=0.0)
    assert exact.recon.item() == 0.0
    terms.loss.backward()
    assert model.decoder.conductor_init.weight.grad is not None and model.decoder.core.output.weight.grad is None


def test_free_bits_remove_the_kl_gradient_below_the_threshold():
    model = build_model(get_config("tiny_lstm"))
    x = torch.as_tensor(synthetic_windows(4, 32, seed=2), dtype=torch.long)
    out = model(x, eps=torch.zeros(4, 8))
    terms = vae_loss(out, x, beta=1.0, free_bits=1e6)
    assert torch.allclose(terms.loss, terms.recon)


@pytest.mark.parametrize("name", TINY)
def test_greedy_decode_equals_argmax_of_teacher_forced_logits(name):
    """The fast generation path and the teacher-forced reference must agree token for token."""
    model = sharpened(name)
    z = torch.randn(6, model.config.z_size) * 2
    for fast in (True, False):
        tokens = model.decode(z, fast=fast)
        again = model.logits(tokens, z).argmax(dim=-1)
        assert torch.equal(tokens, again), f"fast={fast}"
        assert len(torch.unique(tokens)) > 3  # not a degenerate constant sequence


@pytest.mark.parametrize("name", TINY)
def test_sampling_is_seeded_and_fast_equals_reference(name):
    model = sharpened(name, seed=1)
    z = torch.randn(5, model.config.z_size)

    def sample(fast: bool, seed: int, temperature: float = 1.0):
        return model.decode(z, temperature=temperature, generator=torch.Generator().manual_seed(seed), fast=fast)

    assert torch.equal(sample(True, 7), sample(True, 7))
    assert torch.equal(sample(True, 7), sample(False, 7))
    assert not torch.equal(sample(True, 7, 5.0), sample(True, 8, 5.0))


@pytest.mark.parametrize("name", TINY)
def test_forced_steps_come_back_exactly_and_are_fed_back(name):
    model = sharpened(name, seed=2)
    steps = model.config.steps
    z = torch.randn(3, model.config.z_size)
    forced = torch.as_tensor(synthetic_windows(3, steps, seed=3), dtype=torch.long)
    mask = torch.zeros(3, steps, dtype=torch.bool)
    mask[:, : steps // 4] = True
    mask[:, steps // 2: 3 * steps // 4] = True
    for fast in (True, False):
        out = model.decode(z, temperature=0.7, generator=torch.Generator().manual_seed(0), forced=forced,
                           forced_mask=mask, fast=fast)
        assert torch.equal(out[mask], forced[mask])
    greedy = model.decode(z, forced=forced, forced_mask=mask)
    teacher = model.logits(greedy, z).argmax(dim=-1)  # forced tokens were fed back, so free steps follow them
    assert torch.equal(teacher[~mask], greedy[~mask])


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("backend", ["kernel", "numpy", "torch"])
def test_decoding_scores_every_token_as_the_teacher_forced_logits_do(name, backend, monkeypatch):
    """log_probs of a decode (forced steps and free ones) equal log softmax of the teacher-forced logits."""
    from seqvae.models import native

    if backend == "numpy":
        monkeypatch.setattr(native, "library", lambda: None)
    model = sharpened(name, seed=5)
    steps = model.config.steps
    z = torch.randn(4, model.config.z_size)
    forced = torch.as_tensor(synthetic_windows(4, steps, seed=6), dtype=torch.long)
    mask = torch.rand(4, steps, generator=torch.Generator().manual_seed(1)) < 0.5
    for temperature in (0.0, 0.9):
        scores = torch.full((4, steps), float("nan"))
        tokens = model.decode(z, temperature=temperature, generator=torch.Generator().manual_seed(3), forced=forced,
                              forced_mask=mask, fast=backend != "torch", log_probs=scores)
        with torch.no_grad():
            logits = model.logits(tokens.clone(), z)
        expected = torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None])[..., 0]
        assert torch.allclose(scores, expected, atol=1e-4), f"temperature {temperature}"
    with pytest.raises(ValueError, match="log_probs must be"):
        model.decode(z, log_probs=torch.zeros(4, steps + 1))


@pytest.mark.parametrize("name", TINY)
def test_draws_taken_first_give_the_same_notes_in_any_pieces(name):
    """Row b's notes depend only on column b of the sampling draws: decoding rows in pieces with their columns
    gives the notes of one call, for every decoder."""
    model = sharpened(name, seed=7)
    steps = model.config.steps
    z = torch.randn(5, model.config.z_size)
    draws = torch.rand(steps, 5, generator=torch.Generator().manual_seed(2))
    whole = model.decode(z, temperature=0.9, uniforms=draws)
    assert torch.equal(whole, model.decode(z, temperature=0.9, generator=torch.Generator().manual_seed(2)))
    pieces = torch.cat([model.decode(z[i:i + 2], temperature=0.9, uniforms=draws[:, i:i + 2]) for i in (0, 2, 4)])
    assert torch.equal(pieces, whole)
    with pytest.raises(ValueError, match="uniforms must be float32"):
        model.decode(z, temperature=0.9, uniforms=draws[:, :4])


def test_fast_path_matches_reference_at_full_size():
    torch.manual_seed(0)
    model = build_model(get_config("mel_2bar_small")).eval()
    z = torch.randn(3, 256)
    fast = model.decode(z)
    assert torch.equal(fast, model.decode(z, fast=False))
    assert torch.equal(fast, model.logits(fast, z).argmax(dim=-1))


@pytest.mark.parametrize("name", ["tiny_lstm", "tiny_hier", "tiny_hier2"])
def test_numpy_fallback_matches_reference(name, monkeypatch):
    """Without a C compiler the numpy step loop takes over; it must pick the same tokens."""
    from seqvae.models import native

    monkeypatch.setattr(native, "library", lambda: None)
    model = sharpened(name, seed=4)
    z = torch.randn(5, model.config.z_size)
    forced = torch.as_tensor(synthetic_windows(5, model.config.steps, seed=1), dtype=torch.long)
    mask = torch.rand(5, model.config.steps) < 0.3
    for temperature in (0.0, 0.8):
        args = dict(temperature=temperature, forced=forced, forced_mask=mask)
        fast = model.decode(z, generator=torch.Generator().manual_seed(2), **args)
        reference = model.decode(z, generator=torch.Generator().manual_seed(2), fast=False, **args)
        assert torch.equal(fast, reference)


def test_native_kernel_encoder_and_threads():
    from seqvae.models import native

    if native.library() is None:
        pytest.skip("no C compiler: the numpy path is tested instead")
    model = sharpened("tiny_hier", seed=5)
    x = torch.as_tensor(synthetic_windows(9, 32, seed=4), dtype=torch.long)
    mu_fast, sigma_fast = model.encode(x)
    mu_ref, sigma_ref = model.encode(x, fast=False)
    assert torch.allclose(mu_fast, mu_ref, atol=1e-5) and torch.allclose(sigma_fast, sigma_ref, atol=1e-5)
    z = torch.randn(16, 8)
    torch.set_num_threads(2)  # 16 rows: the kernel splits them over two threads
    split = model.decode(z, temperature=0.9, generator=torch.Generator().manual_seed(0))
    torch.set_num_threads(1)
    whole = model.decode(z, temperature=0.9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(split, whole)
    assert torch.equal(whole, model.decode(z, temperature=0.9, generator=torch.Generator().manual_seed(0), fast=False))


def test_bfloat16_exact_weights_take_the_half_width_kernel(tmp_path):
    """Saved with bfloat16 storage, the loaded weights are exact bfloat16 values: the kernel streams them at
    half width and must still agree with the float32 torch reference token for token."""
    from seqvae.models import native

    if native.library() is None:
        pytest.skip("no C compiler")
    save_model(sharpened("tiny_lstm", seed=7), tmp_path / "m", storage_dtype="bfloat16")
    model = load_model(tmp_path / "m", device="cpu").model
    assert native.bfloat16_exact(model.decoder) and native.bfloat16_exact(model.encoder)
    z = torch.randn(7, 8)
    greedy = model.decode(z)
    assert torch.equal(greedy, model.decode(z, fast=False))
    assert torch.equal(greedy, model.logits(greedy, z).argmax(dim=-1))
    x = torch.as_tensor(synthetic_windows(7, 32, seed=8), dtype=torch.long)
    assert torch.allclose(model.encode(x)[0], model.encode(x, fast=False)[0], atol=1e-5)


def test_fast_plan_follows_weight_updates():
    model = sharpened("tiny_lstm")
    z = torch.randn(4, 8)
    before = model.decode(z)
    with torch.no_grad():
        model.decoder.core.output.bias[5] += 100.0
    after = model.decode(z)
    assert (after == 5).all() and not torch.equal(before, after)


def test_bad_inputs_get_clear_errors():
    model = build_model(get_config("tiny_lstm"))
    with pytest.raises(ValueError, match=r"\[batch, 32\]"):
        model.encode(torch.zeros(2, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="outside 0..89"):
        model.encode(torch.full((1, 32), 95))
    with pytest.raises(ValueError, match=r"\[batch, 8\]"):
        model.decode(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="temperature"):
        model.decode(torch.zeros(1, 8), temperature=-1)
    with pytest.raises(ValueError, match="together"):
        model.decode(torch.zeros(1, 8), forced=torch.zeros(1, 32, dtype=torch.long))


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_round_trip(tmp_path, name):
    model = sharpened(name)
    save_model(model, tmp_path / "m", extra={"step": 12})
    (tmp_path / "m" / "eval.json").write_text("{}")  # other tools' files are ignored
    loaded = load_model(tmp_path / "m", device="cpu")
    assert loaded.config == model.config and loaded.extra == {"step": 12}
    assert not loaded.model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    z = torch.randn(2, model.config.z_size)
    assert torch.equal(model.decode(z), loaded.model.decode(z))
    assert json.loads((tmp_path / "m" / "config.json").read_text())["config"]["name"] == name


def test_checkpoint_half_storage_and_run_dir_resolution(tmp_path):
    model = sharpened("tiny_lstm")
    save_model(model, tmp_path / "run" / "model", storage_dtype="float16")
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "model"
    loaded = load_model(str(tmp_path / "run"), device="cpu")
    weight = loaded.model.decoder.core.output.weight
    assert weight.dtype == torch.float32
    assert torch.allclose(weight, model.decoder.core.output.weight, rtol=1e-3, atol=1e-3)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped models"):
        load_model("no_such_model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing")
    save_model(build_model(get_config("tiny_lstm")), tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(ValueError, match="damaged"):
        load_model(tmp_path / "m")


def test_decode_is_deterministic_across_batch_composition():
    """A row's greedy decode does not depend on which other rows share its batch."""
    model = sharpened("tiny_hier")
    z = torch.randn(5, 8)
    together = model.decode(z)
    alone = torch.cat([model.decode(z[i:i + 1]) for i in range(5)])
    assert torch.equal(together, alone)
    assert np.array_equal(together.numpy(), model.decode(z.numpy()).numpy())


@pytest.mark.parametrize("name", ["tiny_lstm", "tiny_hier", "tiny_hier2", "tiny_transformer"])
def test_scheduled_sampling_modes(name):
    """No coin lands: both modes equal teacher forcing. All coins land ('exact'): each step saw the model's own
    samples, so the logits equal teacher forcing on the sampled sequence."""
    from seqvae.models.sampling import choose_tokens

    model = sharpened(name, seed=6)
    x = torch.as_tensor(synthetic_windows(3, model.config.steps, seed=6), dtype=torch.long)
    z = torch.randn(3, model.config.z_size)
    uniforms = torch.rand(3, model.config.steps, 2)
    teacher = model.decoder.teacher_forced(x, z)
    for mode in ("exact", "parallel"):
        never = model.decoder.scheduled(x, z, 1e-9, uniforms.clamp(min=1e-3), mode)
        assert torch.allclose(never, teacher, atol=1e-5), mode
    if name == "tiny_transformer":
        return  # the transformer has only the two-pass form
    always = model.decoder.scheduled(x, z, 1.0, uniforms, "exact")
    sampled = choose_tokens(always, 1.0, uniforms[..., 1])
    assert torch.allclose(model.decoder.teacher_forced(sampled, z), always, atol=1e-5)
    assert not torch.equal(sampled, x)


def test_fast_paths_follow_fused_optimizer_steps():
    """Fused Adam leaves parameter versions alone; forget_inference_plans makes the fast paths see new weights."""
    from seqvae.models import build_model, get_config

    torch.manual_seed(0)
    model = build_model(get_config("tiny_lstm"))
    x = torch.randint(0, model.config.num_classes, (4, model.config.steps))
    model.eval()
    model.encode(x)  # builds and caches the plans
    model.decode(torch.zeros(4, model.config.z_size))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)
    model.train()
    model(x).logits.sum().backward()
    optimizer.step()
    model.eval()
    model.forget_inference_plans()
    mu_fast, _ = model.encode(x)
    mu_ref, _ = model.encode(x, fast=False)
    assert torch.allclose(mu_fast, mu_ref, atol=1e-4)
    assert torch.equal(model.decode(mu_ref), model.decode(mu_ref, fast=False))


@pytest.mark.parametrize("name", ["tiny_lstm", "tiny_hier", "tiny_hier2", "tiny_transformer"])
def test_bfloat16_arithmetic_decoding(name, tmp_path):
    """The AVX512-BF16 path rounds activations to bfloat16: it must pick nearly the reference's tokens, keep forced
    steps, and stay deterministic and independent of the thread count."""
    save_model(sharpened(name, seed=11), tmp_path / "m", storage_dtype="bfloat16")
    model = load_model(tmp_path / "m", device="cpu").model
    if not model.bf16_decoding_available():
        pytest.skip("this CPU or build has no bfloat16 dot products")
    z = torch.randn(40, model.config.z_size, generator=torch.Generator().manual_seed(1))
    exact, fast = model.decode(z), model.decode(z, precision="bfloat16")
    agreement = (exact == fast).float().mean().item()
    assert agreement > 0.9, agreement
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(fast, model.decode(z, precision="bfloat16"))
        torch.set_num_threads(2)
        assert torch.equal(fast, model.decode(z, precision="bfloat16"))
    finally:
        torch.set_num_threads(threads)
    sampled = [model.decode(z, 0.8, torch.Generator().manual_seed(5), precision="bfloat16") for _ in range(2)]
    assert torch.equal(*sampled)
    forced = torch.as_tensor(synthetic_windows(40, model.config.steps, seed=2), dtype=torch.long)
    mask = torch.rand(40, model.config.steps, generator=torch.Generator().manual_seed(3)) < 0.4
    kept = model.decode(z, forced=forced, forced_mask=mask, precision="bfloat16")
    assert torch.equal(kept[mask], forced[mask])
    with pytest.raises(ValueError, match="fast path"):
        model.decode(z, precision="bfloat16", fast=False)


def test_bfloat16_decoding_is_refused_where_it_cannot_run(monkeypatch):
    model = build_model(get_config("tiny_transformer")).eval()
    monkeypatch.setattr(plans, "plan_for", lambda core: None)  # no C kernel here (SEQVAE_NATIVE=0, no compiler)
    assert not model.bf16_decoding_available()
    with pytest.raises(ValueError, match="bfloat16 decoding needs"):
        model.decode(torch.zeros(1, model.config.z_size), precision="bfloat16")


def test_override_config_reads_each_field_as_its_type():
    from seqvae.models.registry import override_config

    base = get_config("tiny_lstm")
    changed = override_config(base, ["max_beta=0.5", "decoder_sizes=16,16", "freeze_segments=false", "init_from="])
    assert changed.max_beta == 0.5 and changed.decoder_sizes == (16, 16) and changed.init_from == ""
    assert changed.name == base.name and base.max_beta != 0.5
    with pytest.raises(ValueError, match="KEY=VALUE with KEY one of"):
        override_config(base, ["max_bta=0.5"])
    with pytest.raises(ValueError, match="max_beta takes a number"):
        override_config(base, ["max_beta=lots"])
    with pytest.raises(ValueError, match="segments=3"):  # the changed config is validated like any other
        override_config(base, ["segments=3"])


def test_a_thread_cap_holds_for_its_thread_only_and_keeps_the_tokens():
    from seqvae.models import native

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check_thread_caps(native)
    finally:
        torch.set_num_threads(before)


def _check_thread_caps(native) -> None:
    import threading

    seen = []
    with native.thread_cap(1):
        assert native.kernel_threads() == 1
        other = threading.Thread(target=lambda: seen.append(native.kernel_threads()))
        other.start()
        other.join()
        with native.thread_cap(None):
            assert native.kernel_threads() == 2
        assert native.kernel_threads() == 1
    assert native.kernel_threads() == 2 and seen == [2]
    with native.thread_cap(8):
        assert native.kernel_threads() == 2  # a cap never adds threads
    torch.manual_seed(0)
    model = build_model(get_config("tiny_lstm")).eval()
    z = torch.randn(3, model.config.z_size)
    with torch.no_grad():
        full = model.decode(z)
        with native.thread_cap(1):
            assert torch.equal(model.decode(z), full)
