"""The chord-conditioned flat model: chords one-hot per step into encoder and decoder, on every path."""

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
    assert config.init_from == ""  # from scratch: warm-started, it leaned on the chords too little
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


def _copied_from_plain(tmp_path):
    """A tiny_lstm checkpoint and a tiny_chords model started from it."""
    from seqvae.models.warm_start import copy_weights

    torch.manual_seed(5)
    source = build_model(get_config("tiny_lstm")).eval()
    save_model(source, tmp_path / "plain")
    model = _chord_model(seed=9)
    copy_weights(model, tmp_path / "plain")
    return load_model(tmp_path / "plain", device="cpu").model.eval(), model.eval()


def test_warm_start_leaves_the_chord_weights_zero_so_step_zero_is_the_source(tmp_path):
    source, model = _copied_from_plain(tmp_path)
    chord_columns = slice(model.config.num_classes + model.config.z_size, None)
    assert not model.decoder.core.layers[0].weight_ih_l0[:, chord_columns].any()
    assert not model.encoder.layers[0].weight_ih_l0[:, model.config.num_classes:].any()
    x, chords, z = _inputs(model, rows=4)
    with torch.no_grad():
        expected = source.logits(x, z)
        for progression in (chords, torch.zeros_like(chords), (chords * 7) % NUM_CHORD_CLASSES):
            assert torch.allclose(model.logits(x, z, chords=progression), expected, atol=1e-6)
            assert torch.allclose(model.encode(x, chords=progression)[0], source.encode(x, fast=False)[0], atol=1e-6)
        assert torch.equal(model.decode(z, chords=chords), source.decode(z, fast=False))


def test_warm_start_refuses_to_drop_chords(tmp_path):
    from seqvae.models.warm_start import copy_weights

    save_model(_chord_model(), tmp_path / "chords")
    with pytest.raises(ValueError, match="reads chords"):
        copy_weights(build_model(get_config("tiny_lstm")), tmp_path / "chords")


def test_mel_2bar_chords_starts_as_the_shipped_default():
    from seqvae.models.warm_start import copy_weights

    default = load_model("default", device="cpu").model.float().eval()
    model = build_model(get_config("mel_2bar_chords")).eval()
    assert copy_weights(model, "default") > 0
    x, chords, z = _inputs(model, rows=2)
    with torch.no_grad():
        assert torch.allclose(model.logits(x, z, chords=chords), default.logits(x, z), atol=1e-5)


def test_a_fine_tune_of_a_fine_tune_goes_on_where_its_source_schedules_stopped(tmp_path):
    from seqvae.models.warm_start import copy_weights

    save_model(_chord_model(), tmp_path / "tuned", extra={"step": 300, "schedule_offset": 1000})
    save_model(_chord_model(), tmp_path / "fresh", extra={"step": 300})
    assert copy_weights(_chord_model(), tmp_path / "tuned") == 1300
    assert copy_weights(_chord_model(), tmp_path / "fresh") == 300
