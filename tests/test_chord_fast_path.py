"""Chord models on the fast paths: the C kernel and the numpy plan read each step's chord as the torch cells do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqvae.codec import Meter
from seqvae.codec.chords import NUM_CHORD_CLASSES, parse_progression
from seqvae.codec.events import FIRST_NOTE_ON, EventCodec
from seqvae.codec.scales import Key, allowed_classes
from seqvae.data.synthetic import synthetic_windows
from seqvae.engine import Engine
from seqvae.models import build_model, get_config, load_model, native, plans, save_model
from seqvae.models.decoder import Generation

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS, STEPS = 6, 32
BACKENDS = ["kernel", "numpy", "torch"]


def _progressions() -> dict[str, torch.Tensor]:
    """Several chord progressions, [ROWS, STEPS] each: none, one chord, a cadence, a chord per step."""
    meter = Meter(4, 4)
    rows = {
        "no chord": np.zeros(STEPS, np.int64),
        "C": parse_progression("C", meter, STEPS),
        "Am F C G": parse_progression("Am F C G", meter, STEPS),
    }
    out = {name: torch.as_tensor(np.tile(row, (ROWS, 1))) for name, row in rows.items()}
    out["random per step"] = torch.randint(0, NUM_CHORD_CLASSES, (ROWS, STEPS),
                                           generator=torch.Generator().manual_seed(4))
    return out


PROGRESSIONS = _progressions()


@pytest.fixture()
def model():
    """tiny_chords with its weights scaled up (clear winners), chord columns random and non-zero."""
    torch.manual_seed(11)
    model = build_model(get_config("tiny_chords")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    chord_columns = model.decoder.core.layers[0].weight_ih_l0[:, model.config.num_classes + model.config.z_size:]
    assert chord_columns.abs().min() > 0
    return model


def _use(backend: str, monkeypatch) -> bool | None:
    """Select a backend; returns decode's `fast` argument."""
    if backend == "kernel" and native.library() is None:
        pytest.skip("no C compiler: the numpy plan is tested instead")
    if backend == "numpy":
        monkeypatch.setitem(vars(native), "library", lambda: None)
    return backend != "torch"


def _decode(model, chords, fast, temperature=0.0, **kwargs):
    """Tokens and their log-probabilities."""
    scores = torch.full((ROWS, STEPS), float("nan"))
    draws = torch.rand(STEPS, ROWS, generator=torch.Generator().manual_seed(8)) if temperature > 0 else None
    tokens = model.decode(torch.randn(ROWS, model.config.z_size, generator=torch.Generator().manual_seed(2)),
                          temperature=temperature, uniforms=draws, chords=chords, fast=fast, log_probs=scores,
                          **kwargs)
    return tokens, scores


def _key_and_forced(model):
    codec = EventCodec(model.config.min_pitch, model.config.max_pitch)
    allowed = torch.as_tensor(allowed_classes(codec, Key.parse("D minor")))
    forced = torch.as_tensor(synthetic_windows(ROWS, STEPS, seed=3), dtype=torch.long)
    mask = torch.rand(ROWS, STEPS, generator=torch.Generator().manual_seed(5)) < 0.3
    return allowed, forced, mask


@pytest.mark.parametrize("backend", ["kernel", "numpy"])
@pytest.mark.parametrize("temperature", [0.0, 0.9])
@pytest.mark.parametrize("progression", list(PROGRESSIONS))
def test_fast_paths_agree_with_torch_under_chords_forced_steps_and_a_key(model, backend, temperature, progression,
                                                                         monkeypatch):
    chords = PROGRESSIONS[progression]
    allowed, forced, mask = _key_and_forced(model)
    cases = {"free": {}, "forced and keyed": dict(forced=forced, forced_mask=mask, allowed=allowed)}
    for case, kwargs in cases.items():
        reference, reference_scores = _decode(model, chords, False, temperature, **kwargs)
        fast = _use(backend, monkeypatch)
        tokens, scores = _decode(model, chords, fast, temperature, **kwargs)
        monkeypatch.undo()
        assert torch.equal(tokens, reference), case
        assert torch.allclose(scores, reference_scores, atol=1e-4), case
        if kwargs:
            assert torch.equal(tokens[mask], forced[mask])
            notes = tokens[~mask & (tokens >= FIRST_NOTE_ON)]
            assert len(notes) and allowed[notes].all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_chords_change_what_every_path_decodes(model, backend, monkeypatch):
    """Under other chords the same z decodes to other notes: a path that ignored chords would fail here (and the
    agreement above), and the scores are the teacher-forced model's under the chords it was given."""
    fast = _use(backend, monkeypatch)
    decoded = {name: _decode(model, chords, fast) for name, chords in PROGRESSIONS.items()}
    tokens = [t for t, _ in decoded.values()]
    assert all(not torch.equal(a, b) for i, a in enumerate(tokens) for b in tokens[i + 1:])
    z = torch.randn(ROWS, model.config.z_size, generator=torch.Generator().manual_seed(2))
    for name, (t, scores) in decoded.items():
        with torch.no_grad():
            logits = model.logits(t, z, chords=PROGRESSIONS[name])
        expected = torch.log_softmax(logits, -1).gather(-1, t[..., None])[..., 0]
        assert torch.allclose(scores, expected, atol=1e-4), name


def test_the_c_encoder_reads_chords(model):
    if native.library() is None:
        pytest.skip("no C compiler: chord models encode in torch")
    x = torch.as_tensor(synthetic_windows(ROWS, STEPS, seed=7), dtype=torch.long)
    assert plans.encoder_plan_for(model.encoder) is not None
    means = []
    for chords in PROGRESSIONS.values():
        mu, sigma = model.encode(x, chords=chords)
        mu_ref, sigma_ref = model.encode(x, chords=chords, fast=False)
        assert torch.allclose(mu, mu_ref, atol=1e-5) and torch.allclose(sigma, sigma_ref, atol=1e-5)
        means.append(mu)
    assert not torch.allclose(means[0], means[2])


def test_bfloat16_weights_decode_with_chords_as_torch(model, tmp_path):
    """Saved with bfloat16 storage the kernel streams half-width panels; the chord rows stay float32."""
    if native.library() is None:
        pytest.skip("no C compiler")
    save_model(model, tmp_path / "m", storage_dtype="bfloat16")
    loaded = load_model(tmp_path / "m", device="cpu").model
    assert native.bfloat16_exact(loaded.decoder)
    for chords in PROGRESSIONS.values():
        assert torch.equal(_decode(loaded, chords, True)[0], _decode(loaded, chords, False)[0])


def test_plans_refuse_chords_they_cannot_read(model, monkeypatch):
    z = torch.randn(2, model.config.z_size)
    one_hot = torch.nn.functional.one_hot(torch.zeros(2, STEPS, dtype=torch.long), NUM_CHORD_CLASSES).float()
    for backend in ("numpy", "kernel"):  # the kernel last: without a compiler it skips
        _use(backend, monkeypatch)
        plan = plans.plan_for(model.decoder.core)
        with pytest.raises(ValueError, match="one-hot step features per step"):
            plan.generate(z, Generation(0.0), steps=STEPS)
        with pytest.raises(ValueError, match="must be one-hot"):
            plan.generate(z, Generation(0.0, features=one_hot * 0.5), steps=STEPS)
        with pytest.raises(ValueError, match=r"send \[2, 32, 49\]"):
            plan.generate(z, Generation(0.0, features=one_hot[:, :16]), steps=STEPS)
        if backend == "kernel":
            with pytest.raises(ValueError, match=r"send \[2, 32, 49\]"):
                plans.encoder_plan_for(model.encoder).encode(torch.zeros(2, STEPS, dtype=torch.long), one_hot[:1])
        plain = build_model(get_config("tiny_lstm")).eval()
        with pytest.raises(ValueError, match="takes no step features"):
            plans.plan_for(plain.decoder.core).generate(z, Generation(0.0, features=one_hot), steps=STEPS)
        monkeypatch.undo()


def test_the_engine_decodes_a_chord_model_on_the_fast_path(model):
    engine = Engine(model, device="cpu").with_chords("Am F")
    z = np.random.default_rng(0).standard_normal((ROWS, model.config.z_size)).astype(np.float32)
    forced = synthetic_windows(ROWS, STEPS, seed=9)
    mask = np.random.default_rng(1).random((ROWS, STEPS)) < 0.25
    tokens, scores = engine.constrained("G major").decode_scored(z, forced=forced, mask=mask)
    assert plans.PLAN_ATTRIBUTE in vars(model.decoder.core)  # the engine's default built a step plan
    chords = torch.as_tensor(np.tile(engine.chord_steps(STEPS), (ROWS, 1)))
    codec = EventCodec(model.config.min_pitch, model.config.max_pitch)
    reference = torch.full((ROWS, STEPS), float("nan"))
    expected = model.decode(torch.from_numpy(z), forced=torch.from_numpy(forced), forced_mask=torch.from_numpy(mask),
                            allowed=torch.as_tensor(allowed_classes(codec, Key.parse("G major"))), chords=chords,
                            fast=False, log_probs=reference)
    assert np.array_equal(tokens, expected.numpy())
    assert np.allclose(scores, reference.numpy(), atol=1e-4)
