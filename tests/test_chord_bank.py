"""The chord bank: p(z | chords) from the training windows whose chords are nearest, up to transposition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqvae.codec.chords import parse_chord, transpose_chords
from seqvae.codec.events import FIRST_NOTE_ON
from seqvae.models import build_model, get_config, save_model
from seqvae.models.chord_bank import ChordBank
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
