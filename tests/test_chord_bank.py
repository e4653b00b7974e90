"""The chord bank: p(z | chords) from the training windows whose chords are nearest, up to transposition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqvae.codec.chords import parse_chord, transpose_chords
from seqvae.codec.events import FIRST_NOTE_ON
from seqvae.models import build_model, get_config, save_model
from seqvae.models.chord_bank import POOL, ChordBank
from seqvae.models.latent_prior import LatentPrior

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = FIRST_NOTE_ON + 88


def _bank() -> ChordBank:
    rng = np.random.default_rng(0)
    events = np.where(rng.random((40, 32)) < 0.3, rng.integers(FIRST_NOTE_ON + 30, FIRST_NOTE_ON + 50, (40, 32)), 0)
    chords = rng.integers(1, 49, (40, 32))
    chords[7] = np.repeat([parse_chord("D"), parse_chord("Bm")], 16)  # "C Am" moved up a tone
    chords[11] = 0  # no chord anywhere: not kept
    return ChordBank.fit(events, chords)


def test_nearest_matches_up_to_transposition_and_moves_the_melody():
    bank = _bank()
    assert len(bank.events) == 39
    target = np.repeat([parse_chord("C"), parse_chord("Am")], 16)
    rows, shifts = bank.nearest(target, CLASSES)
    kept = np.flatnonzero((bank.chords == np.repeat([parse_chord("D"), parse_chord("Bm")], 16)).all(axis=1))
    assert rows[0] == kept[0] and shifts[0] == -2
    assert (transpose_chords(bank.chords[rows[0]], shifts[0]) == target).all()
    drawn = bank.draw(target, 5, np.random.default_rng(1), CLASSES)
    assert drawn.shape == (5, 32) and drawn.min() >= 0 and drawn.max() < CLASSES


def test_save_load_and_errors(tmp_path):
    bank = _bank()
    bank.save(tmp_path)
    again = ChordBank.load(tmp_path, 32)
    assert (again.events == bank.events).all() and again.bandwidth == bank.bandwidth
    with pytest.raises(ValueError, match="recompute it with `seqvae attributes`"):
        ChordBank.load(tmp_path, 24)
    (tmp_path / "chord_bank.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="damaged"):
        ChordBank.load(tmp_path, 32)
    with pytest.raises(ValueError, match="32 steps"):
        bank.nearest(np.zeros(16), CLASSES)
    assert ChordBank.load(tmp_path / "none", 32) is None


def test_an_engine_with_a_bank_samples_near_windows_of_the_progression(tmp_path):
    from seqvae.engine import Engine

    torch.manual_seed(0)
    directory = save_model(build_model(get_config("tiny_chords")), tmp_path / "ck")
    engine = Engine.load(directory, device="cpu")
    mu = np.random.default_rng(0).standard_normal((64, engine.z_size)).astype(np.float32)
    engine.set_latent_prior(LatentPrior.fit(mu))
    plain = engine.with_chords("C Am").draw_prior(4, np.random.default_rng(3))
    engine.chord_bank = _bank()
    view = engine.with_chords("C Am")
    drawn = view.draw_prior(4, np.random.default_rng(3))
    assert drawn.shape == plain.shape and not np.allclose(drawn, plain)
    per_row = engine.draw_prior(2, np.random.default_rng(3), chords=np.repeat(view.chord_steps(32)[None], 2, 0))
    assert per_row.shape == (2, engine.z_size) and np.isfinite(per_row).all()
    assert len(view.sample(3, seed=1)) == 3


def test_the_server_draws_from_a_bank_on_its_worker_not_its_receiving_loop(tmp_path):
    """A bank's draw runs the encoder: /seqvae/sample and /seqvae/similar draw on the inference thread, and a
    seeded sample gives what the engine gives."""
    import threading

    from server_support import OscClient, notes_of, running_server

    from seqvae.engine import Engine

    torch.manual_seed(0)
    directory = save_model(build_model(get_config("tiny_chords")), tmp_path / "ck")
    engine = Engine.load(directory, device="cpu")
    engine.set_latent_prior(LatentPrior.fit(np.random.default_rng(0).standard_normal((64, engine.z_size))))
    engine.chord_bank = _bank()
    view = engine.with_chords("C Am")
    assert view.prior_draw_runs_model and not engine.prior_draw_runs_model
    z = view.draw_prior(1, np.random.default_rng(5))
    expected = [(int(p), float(s), float(d), int(v)) for p, s, d, v in
                view.decode(z, temperature=0.0, seed=5)[0].notes_in_beats()]
    threads = []
    encode = engine.encode_events

    def noted(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return encode(*args, **kwargs)

    engine.encode_events = noted  # views made from now on share it
    with running_server(engine, tmp_path / "exports") as server:
        client = OscClient(server.address[1], "udp")
        try:
            assert client.one("/seqvae/chords", "C", "Am")[0] == "/seqvae/chords"
            assert notes_of(client.one("/seqvae/sample", "a", 0.0, 5)) == expected
            assert client.one("/seqvae/sample", "b", 0.5, 0)[0] == "/seqvae/notes"  # unseeded
            assert client.one("/seqvae/similar", "a", 0.4, "c", 3)[0] == "/seqvae/notes"
        finally:
            client.close()
    assert len(threads) >= 3 and set(threads) == {"seqvae-inference"}


def test_ties_are_broken_across_the_bank_not_by_window_order():
    """Folk windows share progressions and the bank keeps them in corpus order, neighbours from one tune side by
    side: a pool of the first tied windows would be a few tunes. Ties go to windows spread over the bank, the same
    ones each time."""
    rng = np.random.default_rng(1)
    events = np.where(rng.random((400, 32)) < 0.3, rng.integers(FIRST_NOTE_ON + 30, FIRST_NOTE_ON + 50, (400, 32)), 0)
    chords = np.tile(np.repeat([parse_chord("C"), parse_chord("G")], 16), (400, 1))
    bank = ChordBank.fit(events, chords)
    rows, shifts = bank.nearest(chords[0], CLASSES)
    assert len(set(rows.tolist())) == POOL and (shifts == 0).all()
    assert rows.max() > 4 * POOL  # drawn from the whole bank, not its first POOL windows
    again, _ = ChordBank.fit(events, chords).nearest(chords[0], CLASSES)
    assert (again == rows).all()
