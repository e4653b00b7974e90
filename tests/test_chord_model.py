"""The chord-conditioned flat model: chords one-hot per step into encoder and decoder, torch paths only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from seqvae.codec.chords import NUM_CHORD_CLASSES
from seqvae.codec.events import FIRST_NOTE_ON, EventCodec
from seqvae.codec.scales import Key, allowed_classes
from seqvae.models import build_model, get_config, load_model, save_model


def _chord_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(get_config("tiny_chords")).eval()


def _inputs(model, rows: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, model.config.num_classes, (rows, model.config.steps), generator=g)
    chords = torch.randint(0, NUM_CHORD_CLASSES, (rows, model.config.steps), generator=g)
    z = torch.randn(rows, model.config.z_size, generator=g)
    return x, chords, z


def test_registry_has_the_chord_configs():
    config = get_config("mel_2bar_chords")
    base = get_config("mel_2bar_small")
    assert config.chord_classes == NUM_CHORD_CLASSES == 49 and base.chord_classes == 0
    assert (config.encoder_sizes, config.decoder_sizes, config.z_size) == (base.encoder_sizes, base.decoder_sizes,
                                                                          base.z_size)
    assert config.init_from == "default"
    assert get_config("tiny_chords").chord_classes == 49
    with pytest.raises(ValueError, match="chord_classes"):
        dataclasses.replace(get_config("tiny_hier"), chord_classes=49)


def test_shapes_of_every_entry_point():
    model = _chord_model()
    x, chords, z = _inputs(model)
    mu, sigma = model.encode(x, chords=chords)
    assert mu.shape == sigma.shape == (3, 8)
    assert model.logits(x, z, chords=chords).shape == (3, 32, model.config.num_classes)
    assert model.decode(z, chords=chords.to(torch.uint8)).shape == (3, 32)
    assert model.decode(z, temperature=1.0, generator=torch.Generator().manual_seed(0), chords=chords).shape == (3, 32)
    out = model(x, chords=chords, sampling_prob=0.5)
    assert out.logits.shape == (3, 32, model.config.num_classes)


def test_missing_extra_or_malformed_chords_are_clear_errors():
    model = _chord_model()
    x, chords, z = _inputs(model)
    with pytest.raises(ValueError, match="chord-conditioned: send chords"):
        model.encode(x)
    with pytest.raises(ValueError, match="chord-conditioned: send chords"):
        model.decode(z)
    with pytest.raises(ValueError, match="chord-conditioned: send chords"):
        model.logits(x, z)
    with pytest.raises(ValueError, match=r"\[3, 32\]"):
        model.decode(z, chords=chords[:, :16])
    with pytest.raises(ValueError, match="outside 0..48"):
        model.decode(z, chords=torch.full_like(chords, 49))
    with pytest.raises(ValueError, match="integer"):
        model.decode(z, chords=chords.float())
    with pytest.raises(ValueError, match="fast decoding paths"):
        model.decode(z, chords=chords, fast=True)
    plain = build_model(get_config("tiny_lstm")).eval()
    with pytest.raises(ValueError, match="not chord-conditioned"):
        plain.decode(z, chords=chords)
    with pytest.raises(ValueError, match="not chord-conditioned"):
        plain.encode(x, chords=chords)


def test_chords_change_the_logits_and_the_torch_decode_follows_them():
    model = _chord_model()
    x, chords, z = _inputs(model)
    with torch.no_grad():
        a = model.logits(x, z, chords=chords)
        b = model.logits(x, z, chords=(chords + 4) % NUM_CHORD_CLASSES)
        mu_a, _ = model.encode(x, chords=chords)
        mu_b, _ = model.encode(x, chords=(chords + 4) % NUM_CHORD_CLASSES)
    assert not torch.allclose(a, b) and not torch.allclose(mu_a, mu_b)
    # the free-running decode is the teacher-forced model fed its own greedy tokens
    tokens = model.decode(z, chords=chords)
    with torch.no_grad():
        replayed = model.logits(tokens, z, chords=chords).argmax(dim=-1)
    assert torch.equal(replayed, tokens)


def test_the_key_mask_still_holds_with_chords():
    model = _chord_model()
    _, chords, z = _inputs(model, rows=8)
    codec = EventCodec(model.config.min_pitch, model.config.max_pitch)
    allowed = torch.as_tensor(allowed_classes(codec, Key.parse("C major")))
    tokens = model.decode(z, temperature=1.5, generator=torch.Generator().manual_seed(3), chords=chords,
                          allowed=allowed)
    notes = tokens[tokens >= FIRST_NOTE_ON]
    assert len(notes) and allowed[notes].all()


def test_a_chord_model_round_trips_through_a_checkpoint(tmp_path):
    model = _chord_model()
    x, chords, z = _inputs(model)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m", device="cpu").model.eval()
    assert loaded.config.chord_classes == NUM_CHORD_CLASSES
    with torch.no_grad():
        assert torch.allclose(loaded.logits(x, z, chords=chords).float(), model.logits(x, z, chords=chords),
                              atol=1e-2)


def test_unconditioned_models_build_exactly_as_before():
    config = get_config("tiny_lstm")
    assert config.chord_classes == 0
    model = build_model(config)
    assert model.encoder.layers[0].input_size == config.num_classes
    assert model.decoder.core.layers[0].input_size == config.num_classes + config.z_size
    assert model.decoder.step_core is model.decoder.core
    assert np.isfinite(model.decode(torch.zeros(2, 8)).numpy()).all()
