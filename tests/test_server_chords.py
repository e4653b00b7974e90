"""/seqvae/chords over OSC: a client's progression applies to every melody a chord model makes for it (windows and
whole clips), other clients keep theirs, and the errors name what to send."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from server_support import OscClient, notes_of, running_server

from seqvae.codec import Melody, read_midi
from seqvae.engine import clips

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def served(tiny_chord_engine, tmp_path_factory):
    """A chord model's server and one UDP client, shared by the module's tests (each leaves its chords off)."""
    with running_server(tiny_chord_engine, tmp_path_factory.mktemp("chords")) as srv:
        with contextlib.closing(OscClient(srv.address[1], "udp")) as client:
            yield srv, client


@pytest.fixture
def udp(served):
    return served[1]


def _notes(melody: Melody) -> list[tuple]:
    return [(int(p), float(s), float(d), int(v)) for p, s, d, v in melody.notes_in_beats()]


def _sampled(engine, progression: str, seed: int) -> list[tuple]:
    """What /seqvae/sample slot 0 seed gives under `progression`, computed on the engine itself."""
    view = engine.with_chords(progression)
    z = view.draw_prior(1, np.random.default_rng(seed))
    return _notes(view.decode(z, temperature=0.0, seed=seed)[0])


def test_a_chord_model_asks_for_the_progression_first(udp):
    err = udp.one("/seqvae/sample", "a", 0.0, 1)
    assert err[0] == "/seqvae/error" and "chord-conditioned" in err[1][1] and "/seqvae/chords Am F" in err[1][1]
    err = udp.one("/seqvae/encode", "a", 1, 60, 0.0, 1.0, 100)
    assert err[0] == "/seqvae/error" and "/seqvae/chords" in err[1][1]


def test_every_melody_follows_the_clients_progression_until_off(tiny_chord_engine, udp):
    assert udp.one("/seqvae/chords", "C") == ("/seqvae/chords", ["C"])
    under_c = notes_of(udp.one("/seqvae/sample", "a", 0.0, 7))
    assert under_c == _sampled(tiny_chord_engine, "C", 7)
    assert udp.one("/seqvae/chords", "F#dim:2", "Bb:2") == ("/seqvae/chords", ["F#dim:2", "Bb:2"])
    other = notes_of(udp.one("/seqvae/sample", "b", 0.0, 8))
    assert other == _sampled(tiny_chord_engine, "F#dim:2 Bb:2", 8)
    morphed = notes_of(udp.one("/seqvae/morph", "a", "b", 0.0, "m"))  # a's latent, under the new chords
    assert morphed == _sampled(tiny_chord_engine, "F#dim:2 Bb:2", 7) and morphed != under_c
    assert udp.one("/seqvae/chords", "off") == ("/seqvae/chords", ["off"])
    err = udp.one("/seqvae/morph", "a", "b", 0.5)
    assert err[0] == "/seqvae/error" and "/seqvae/chords" in err[1][1]
    assert udp.one("/seqvae/chords") == ("/seqvae/chords", ["off"])


def test_encoded_melodies_and_clips_hear_the_progression_window_by_window(tiny_chord_engine, udp):
    clip = [(60 + (i * 5) % 12, i * 1.0, 1.0, 100) for i in range(16)]  # 4 bars: a clip of two windows
    flat = [x for note in clip for x in note]
    results = {}
    for progression in ("C F G Am", "C F"):
        udp.one("/seqvae/chords", *progression.split())
        notes_of(udp.one("/seqvae/encode", "clip", len(clip), *flat))
        results[progression] = notes_of(udp.one("/seqvae/similar", "clip", 0.0, "again"))
        view = tiny_chord_engine.with_chords(progression)
        melody = view.clip_from_notes(clip, bpm=120.0)
        assert results[progression] == _notes(clips.reconstruct(view, melody)), progression
    first = [n for n in results["C F G Am"] if n[1] < 8]
    assert first == [n for n in results["C F"] if n[1] < 8]  # window 1 hears C F under both
    assert results["C F G Am"] != results["C F"]  # window 2 hears G Am, or C F again
    udp.one("/seqvae/chords", "off")


def test_interpolate_infill_and_a_clips_novelty_hear_the_progression(tiny_chord_engine, udp):
    udp.one("/seqvae/chords", "C", "F", "G", "Am")
    view = tiny_chord_engine.with_chords("C F G Am")
    za, zb = (view.draw_prior(1, np.random.default_rng(seed)) for seed in (1, 2))
    notes_of(udp.one("/seqvae/sample", "a", 0.0, 1))
    notes_of(udp.one("/seqvae/sample", "b", 0.0, 2))
    path = [notes_of(reply) for reply in udp.call("/seqvae/interpolate", "a", "b", 3, "walk", expect=3)]
    assert path == [_notes(m) for m in view.interpolate(za[0], zb[0], points=3)]
    filled = notes_of(udp.one("/seqvae/infill", "a", 2, 2, "filled", 5))
    a = view.decode(za)[0]
    assert filled == _notes(view.infill(a, 2, 2, seed=5))
    clip = [(60 + (i * 7) % 12, i * 1.0, 1.0, 100) for i in range(16)]
    notes_of(udp.one("/seqvae/encode", "clip", len(clip), *[x for note in clip for x in note]))
    _, (_, score) = udp.one("/seqvae/novelty", "clip")
    windows = clips.window_melodies(view, view.clip_from_notes(clip, bpm=120.0))
    parts = [view.with_chords("C F"), view.with_chords("G Am")]  # window 2 hears the progression's second half
    assert score == pytest.approx(np.mean([p.novelty([w])[0] for p, w in zip(parts, windows, strict=True)]), rel=1e-5)
    assert score != pytest.approx(float(np.mean(view.novelty(windows))), rel=1e-5)
    udp.one("/seqvae/chords", "off")


def test_two_clients_keep_their_own_progressions(tiny_chord_engine, served):
    port = served[0].address[1]
    one, two = OscClient(port), OscClient(port)
    try:
        one.one("/seqvae/chords", "C")
        two.one("/seqvae/chords", "Ebaug")
        for seed in range(3):  # sent together, so greedy decodes may share a pass: never across progressions
            one.send("/seqvae/sample", "s", 0.0, seed)
            two.send("/seqvae/sample", "s", 0.0, seed)
            assert notes_of(one.receive()) == _sampled(tiny_chord_engine, "C", seed)
            assert notes_of(two.receive()) == _sampled(tiny_chord_engine, "Ebaug", seed)
    finally:
        one.close()
        two.close()


def test_export_with_a_chord_track_writes_the_clients_progression(udp):
    err = udp.one("/seqvae/export", "nothing_yet", "x.mid", 1)
    assert err[0] == "/seqvae/error" and "empty" in err[1][1]
    udp.one("/seqvae/chords", "Dm", "G7")
    notes_of(udp.one("/seqvae/sample", "e", 0.0, 1))
    assert len(udp.call("/seqvae/interpolate", "e", "e", 2, "walk", expect=2)) == 2
    _, (slot, path) = udp.one("/seqvae/export", "e", "tracked.mid", 1)
    score = read_midi(path)
    assert slot == "e" and len(score.lines) == 2 and score.chords == [(0, "Dm"), (16, "G")]
    _, (_, path) = udp.one("/seqvae/export_all", "walk", "walk.mid", 1)
    assert read_midi(path).chords == [(0, "Dm"), (16, "G"), (32, "Dm"), (48, "G")]  # each step restates it
    _, (_, path) = udp.one("/seqvae/export", "e", "plain.mid")
    assert len(read_midi(path).lines) == 1 and read_midi(path).chords == []
    udp.one("/seqvae/chords", "off")
    err = udp.one("/seqvae/export", "e", "again.mid", 1)
    assert err[0] == "/seqvae/error" and "send /seqvae/chords Am F first" in err[1][1]


@pytest.mark.parametrize("args, words", [
    (("Am", "Xq"), "'Xq' is not a chord symbol"),
    (("Am", "F:2"), "mixes bar and beat forms"),
    (("Am:0",), "positive number of beats"),
    ((7,), "'7' is not a chord symbol"),
])
def test_bad_progressions_are_refused_listing_the_forms(tiny_chord_engine, udp, args, words):
    udp.one("/seqvae/chords", "C")
    err = udp.one("/seqvae/chords", *args)
    message = err[1][1]
    assert err[0] == "/seqvae/error" and words in message and ("N.C." in message or "Am:2 F:2" in message), err
    assert notes_of(udp.one("/seqvae/sample", "kept", 0.0, 3)) == _sampled(tiny_chord_engine, "C", 3)  # unchanged
    udp.one("/seqvae/chords", "off")


def test_a_model_without_chord_inputs_names_the_model_to_serve(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path) as srv, contextlib.closing(OscClient(srv.address[1])) as client:
        err = client.one("/seqvae/chords", "Am", "F")
        assert err[0] == "/seqvae/error" and "has no chord inputs" in err[1][1]
        assert "seqvae serve --model chords" in err[1][1]
        assert client.one("/seqvae/chords", "off") == ("/seqvae/chords", ["off"])
        notes_of(client.one("/seqvae/sample", "a", 0.5, 1))  # a plain model needs none
