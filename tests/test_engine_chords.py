"""Engine.with_chords: a chord model's every encode and decode hears the progression (windows and whole clips)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqvae.codec import Melody, Meter
from seqvae.codec.chords import parse_chord, parse_progression
from seqvae.data.synthetic import synthetic_windows
from seqvae.engine import Engine, clips
from seqvae.models import build_model, get_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def engine() -> Engine:
    torch.manual_seed(0)  # untrained: the chord columns have random, non-zero weights
    return Engine(build_model(get_config("tiny_chords")), device="cpu")


@pytest.fixture()
def heard(engine) -> list[tuple[str, np.ndarray]]:
    """Every (call, chords) the model receives."""
    calls: list[tuple[str, np.ndarray]] = []
    model = engine.model
    encode, decode = model.encode, model.decode

    def spy_encode(x, *args, chords=None, **kwargs):
        calls.append(("encode", None if chords is None else chords.cpu().numpy()))
        return encode(x, *args, chords=chords, **kwargs)

    def spy_decode(z, *args, chords=None, **kwargs):
        calls.append(("decode", None if chords is None else chords.cpu().numpy()))
        return decode(z, *args, chords=chords, **kwargs)

    model.encode, model.decode = spy_encode, spy_decode
    return calls


def _melodies(engine: Engine, n: int = 2) -> list[Melody]:
    return [Melody(row, meter=Meter(4, 4), codec=engine.codec) for row in synthetic_windows(n, engine.steps, 5)]


def test_every_operation_passes_the_progression_on_every_row(engine, heard):
    view = engine.with_chords("Am F")
    expected = parse_progression("Am F", engine.meter, engine.steps)
    assert list(expected[:16]) == [parse_chord("Am")] * 16 and list(expected[16:]) == [parse_chord("F")] * 16
    a, b = _melodies(engine)
    view.sample(3, seed=1)
    view.morph(a, b, 0.3)
    view.interpolate(a, b, points=4)
    view.similar(a, n=3, seed=2)
    view.novelty([a])
    assert {call for call, _ in heard} == {"encode", "decode"}
    for call, chords in heard:
        assert chords is not None, call
        assert (chords == expected[None]).all(), call


def test_two_progressions_give_different_melodies_and_latents(engine):
    a, b = _melodies(engine)
    c_major, f_sharp = engine.with_chords("C"), engine.with_chords("F#dim")
    assert not np.array_equal(c_major.latent(a), f_sharp.latent(a))  # the shared cache keys by chords too
    assert np.array_equal(c_major.latent(a), engine.with_chords("C:4 C:4").latent(a))
    z = np.stack([c_major.latent(a), c_major.latent(b)])
    forced = np.stack([a.events, b.events])
    every = np.ones(forced.shape, dtype=bool)
    one = c_major.decode_scored(z, forced=forced, mask=every)[1]
    two = f_sharp.decode_scored(z, forced=forced, mask=every)[1]
    assert not np.allclose(one, two)  # the same notes are more or less likely under other chords
    assert np.array_equal(one, c_major.decode_scored(z, forced=forced, mask=every)[1])


def test_per_step_classes_repeat_over_the_window(engine, heard):
    view = engine.with_chords([parse_chord("G"), parse_chord("Em")])
    view.sample(1, seed=0)
    (_, chords), = heard
    assert chords.shape == (1, engine.steps) and list(chords[0, :4]) == [parse_chord("G"), parse_chord("Em")] * 2


def test_clip_windows_hear_the_progression_laid_over_the_clip(engine, heard):
    """Window k of a clip hears the k-th window's worth of the progression (module doc of engine/clips.py)."""
    view = engine.with_chords("C F G Am")  # 4 bars: longer than the 2-bar window
    rows = synthetic_windows(3, engine.steps, 7)
    clip = Melody(np.concatenate(rows), meter=Meter(4, 4), codec=engine.codec)
    clips.reconstruct(view, clip)
    clips.similar(view, clip, n=2, seed=1)
    clips.morph(view, clip, clip, 0.5)
    whole = parse_progression("C F G Am", engine.meter, 3 * engine.steps).reshape(3, engine.steps)
    assert [parse_chord(s) for s in ("C", "F", "G", "Am", "C", "F")] == list(whole.reshape(-1)[::16])
    encodes = [c for call, c in heard if call == "encode"]
    decodes = [c for call, c in heard if call == "decode"]
    assert np.array_equal(encodes[0], whole) and np.array_equal(encodes[2], np.concatenate([whole, whole]))
    assert np.array_equal(decodes[0], whole)
    assert np.array_equal(decodes[1], np.concatenate([whole, whole]))  # two variations, three windows each
    assert np.array_equal(decodes[2], whole)


def test_clip_infill_windows_hear_their_own_part(engine, heard):
    view = engine.with_chords("C F G Am")
    clip = Melody(np.concatenate(synthetic_windows(2, engine.steps, 9)), meter=Meter(4, 4), codec=engine.codec)
    clips.infill(view, clip, 3, 3, seed=0)  # bar 3 is regenerated in the window of bars 3-4: G Am
    expected = parse_progression("G:4 Am:4", engine.meter, engine.steps)
    assert heard and all(np.array_equal(chords, np.broadcast_to(expected, chords.shape)) for _, chords in heard)


def test_a_model_without_chords_refuses_a_progression():
    torch.manual_seed(0)
    plain = Engine(build_model(get_config("tiny_lstm")), device="cpu")
    with pytest.raises(ValueError, match="takes no chords: use a chord model, e.g. --model chords"):
        plain.with_chords("Am F")
    plain.sample(1, seed=0)  # and still plays without one


def test_a_chord_model_without_a_progression_names_the_flag(engine):
    a, b = _melodies(engine)
    for call in (lambda: engine.sample(1), lambda: engine.morph(a, b, 0.5), lambda: engine.encode(a)):
        with pytest.raises(ValueError, match="--chords"):
            call()


@pytest.mark.parametrize("bad, match", [("Am Xq", "not a chord symbol"), ("", "empty"), ("Am F:2", "mixes"),
                                        ([], "non-empty"), ([0, 49], "0..48"), ([[1, 2]], "non-empty")])
def test_bad_progressions_are_clear_errors(engine, bad, match):
    with pytest.raises(ValueError, match=match):
        engine.with_chords(bad)


def test_a_view_keeps_its_constraints_and_says_its_chords(engine):
    view = engine.constrained("C major").with_chords("Am F")
    assert view.key is not None and view.progression == "Am F" and "chords=Am F" in repr(view)
    assert view.base_engine is engine
    melody = view.sample(1, seed=0)[0]
    assert all(n.pitch % 12 in (0, 2, 4, 5, 7, 9, 11) for n in melody.codec.events_to_notes(melody.events))
