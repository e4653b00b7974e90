"""Keys and ranges: parsing, the allowed-class mask, and every decoder and backend obeying it inside decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqvae.codec import EventCodec
from seqvae.codec.events import FIRST_NOTE_ON, NO_EVENT, NOTE_OFF
from seqvae.codec.scales import Key, PitchRange, allowed_classes, note_number
from seqvae.data.synthetic import synthetic_windows
from seqvae.models import build_model, get_config

TINY = ["tiny_lstm", "tiny_hier", "tiny_hier2", "tiny_transformer"]
BACKENDS = ["kernel", "numpy", "torch"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def test_key_parse_names_roots_modes_and_off():
    assert Key.parse("D dorian") == Key(2, "dorian")
    assert Key.parse("Bb minor") == Key(10, "minor")
    assert Key.parse("F# harmonic minor") == Key(6, "harmonic minor")
    assert Key.parse("c Pentatonic Major") == Key(0, "pentatonic major")
    assert Key.parse("off") is None and Key.parse("") is None
    assert Key.parse("D dorian").pitch_classes == {2, 4, 5, 7, 9, 11, 0}
    assert str(Key.parse("Bb minor")) == "Bb minor"
    with pytest.raises(ValueError, match="unknown mode 'lydian'.*dorian"):
        Key.parse("D lydian")
    with pytest.raises(ValueError, match="unknown root 'H'.*C#"):
        Key.parse("H major")
    with pytest.raises(ValueError, match="a mode"):
        Key.parse("D")


def test_range_parse_numbers_and_note_names():
    assert PitchRange.parse("57-76") == PitchRange(57, 76)
    assert PitchRange.parse("A3-E5") == PitchRange(57, 76)
    assert PitchRange.parse("off") is None
    assert note_number("C4") == 60 and note_number("Bb-1") == 10 and note_number("C") is None
    with pytest.raises(ValueError, match="lowest first"):
        PitchRange.parse("76-57")
    with pytest.raises(ValueError, match="neither a MIDI number nor a note name"):
        PitchRange.parse("57-loud")
    with pytest.raises(ValueError, match="lowest-highest"):
        PitchRange.parse("57")


def test_allowed_classes_masks_note_ons_only_and_refuses_impossible_constraints():
    codec = EventCodec(48, 84)
    mask = allowed_classes(codec, Key.parse("D dorian"), PitchRange(57, 76))
    assert mask[NO_EVENT] and mask[NOTE_OFF]
    pitches = [codec.class_to_pitch(c) for c in np.flatnonzero(mask) if c >= FIRST_NOTE_ON]
    assert pitches == [p for p in range(57, 77) if p % 12 in {2, 4, 5, 7, 9, 11, 0}]
    assert allowed_classes(codec).all()
    with pytest.raises(ValueError, match="no pitch of C pentatonic major lies in range 65-66"):
        allowed_classes(codec, Key.parse("C pentatonic major"), PitchRange(65, 66))
    with pytest.raises(ValueError, match="outside the model's pitches 48-84"):
        allowed_classes(codec, None, PitchRange(90, 100))


def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(get_config(name)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # clear winners, as tests/test_models.py sharpens them
    return model


def _decode(model, backend, monkeypatch, z, **kwargs):
    from seqvae.models import native

    with monkeypatch.context() as patch:
        if backend == "numpy":
            patch.setattr(native, "library", lambda: None)
        elif backend == "kernel" and native.library() is None:
            pytest.skip("no C compiler for the kernel")
        return model.decode(z, fast=backend != "torch", **kwargs)


def _key_mask(model) -> torch.Tensor:
    codec = EventCodec(model.config.min_pitch, model.config.max_pitch)
    low = codec.min_pitch + (codec.max_pitch - codec.min_pitch) // 4
    return torch.from_numpy(allowed_classes(codec, Key.parse("D dorian"), PitchRange(low, low + 19)))


@pytest.mark.parametrize("name", TINY)
def test_every_backend_decodes_inside_the_mask_and_they_agree(name, monkeypatch):
    model = _model(name)
    allowed = _key_mask(model)
    z = torch.randn(6, model.config.z_size, generator=torch.Generator().manual_seed(1))
    backends = BACKENDS if model.decoder.step_core is not None else ["torch"]
    for temperature in (0.0, 1.0):
        results = {}
        for backend in backends:
            tokens = _decode(model, backend, monkeypatch, z, temperature=temperature,
                             generator=torch.Generator().manual_seed(4), allowed=allowed)
            onsets = tokens[tokens >= FIRST_NOTE_ON]
            assert len(onsets) > 0, f"{backend} at {temperature} played nothing"
            assert allowed[onsets].all(), f"{backend} at {temperature} played outside the key"
            results[backend] = tokens
        free = _decode(model, "torch", monkeypatch, z, temperature=temperature,
                       generator=torch.Generator().manual_seed(4))
        assert not allowed[free[free >= FIRST_NOTE_ON]].all(), "the unmasked model plays outside: the test tests"
        for backend, tokens in results.items():
            assert torch.equal(tokens, results["torch"]), f"{backend} disagrees with torch at {temperature}"


@pytest.mark.parametrize("name", TINY)
def test_unmasked_and_all_allowed_decodes_are_unchanged(name, monkeypatch):
    model = _model(name, seed=2)
    z = torch.randn(4, model.config.z_size, generator=torch.Generator().manual_seed(3))
    everything = torch.ones(model.config.num_classes, dtype=torch.bool)
    for backend in BACKENDS if model.decoder.step_core is not None else ["torch"]:
        for temperature in (0.0, 0.8):
            plain = _decode(model, backend, monkeypatch, z, temperature=temperature,
                            generator=torch.Generator().manual_seed(5))
            masked = _decode(model, backend, monkeypatch, z, temperature=temperature,
                             generator=torch.Generator().manual_seed(5), allowed=everything)
            assert torch.equal(plain, masked), backend


@pytest.mark.parametrize("name", TINY)
def test_forced_steps_are_kept_and_scored_unmasked(name, monkeypatch):
    """Forced tokens outside the key stay; free steps are scored under the masked distribution, forced ones
    under the model's own, in every backend alike."""
    model = _model(name, seed=4)
    steps = model.config.steps
    allowed = _key_mask(model)
    z = torch.randn(3, model.config.z_size, generator=torch.Generator().manual_seed(6))
    forced = torch.as_tensor(synthetic_windows(3, steps, seed=6), dtype=torch.long)
    mask = torch.zeros(3, steps, dtype=torch.bool)
    mask[:, : steps // 2] = True
    outputs = []
    for backend in BACKENDS if model.decoder.step_core is not None else ["torch"]:
        scores = torch.full((3, steps), float("nan"))
        tokens = _decode(model, backend, monkeypatch, z, temperature=0.9, generator=torch.Generator().manual_seed(7),
                         forced=forced, forced_mask=mask, allowed=allowed, log_probs=scores)
        assert torch.equal(tokens[mask], forced[mask])
        free = tokens[~mask]
        assert allowed[free[free >= FIRST_NOTE_ON]].all()
        assert torch.isfinite(scores).all()
        with torch.no_grad():
            logits = model.logits(tokens.clone(), z).float()
        masked = torch.where(mask[..., None], logits, logits.masked_fill(~allowed, float("-inf")))
        expected = torch.log_softmax(masked, -1).gather(-1, tokens[..., None])[..., 0]
        assert torch.allclose(scores, expected, atol=1e-4), backend
        outputs.append(tokens)
    assert all(torch.equal(t, outputs[0]) for t in outputs)


def test_decode_refuses_a_bad_mask():
    model = _model("tiny_lstm")
    z = torch.zeros(1, model.config.z_size)
    with pytest.raises(ValueError, match="bool mask of"):
        model.decode(z, allowed=torch.ones(3, dtype=torch.bool))
    nothing = torch.zeros(model.config.num_classes, dtype=torch.bool)
    with pytest.raises(ValueError, match="no note-on"):
        model.decode(z, allowed=nothing)


@pytest.mark.parametrize("name", ["tiny_lstm", "tiny_hier"])
def test_bfloat16_kernel_decodes_inside_the_mask(name, tmp_path):
    from seqvae.models import load_model, save_model

    save_model(_model(name, seed=5), tmp_path / "m", storage_dtype="bfloat16")
    model = load_model(tmp_path / "m", device="cpu").model
    if not model.bf16_decoding_available():
        pytest.skip("this CPU or build has no bfloat16 dot products")
    allowed = _key_mask(model)
    z = torch.randn(16, model.config.z_size, generator=torch.Generator().manual_seed(2))
    for temperature in (0.0, 1.0):
        tokens = model.decode(z, temperature, torch.Generator().manual_seed(3), precision="bfloat16", allowed=allowed)
        onsets = tokens[tokens >= FIRST_NOTE_ON]
        assert len(onsets) and allowed[onsets].all()


def test_transpose_moves_note_ons_only_and_refuses_leaving_the_codec():
    from seqvae.codec.scales import transpose_events

    codec = EventCodec(48, 84)
    events = np.array([codec.pitch_to_class(60), NO_EVENT, NOTE_OFF, codec.pitch_to_class(67), NO_EVENT])
    moved = transpose_events(events, codec, -5)
    assert [codec.class_to_pitch(e) for e in moved if e >= FIRST_NOTE_ON] == [55, 62]
    assert list(moved[[1, 2, 4]]) == [NO_EVENT, NOTE_OFF, NO_EVENT]
    assert np.array_equal(transpose_events(events, codec, 0), events)
    with pytest.raises(ValueError, match=r"span 78-85, outside the model.s pitches 48-84") as info:
        transpose_events(events, codec, 18)
    assert "send a move from -12 to +17" in str(info.value)
