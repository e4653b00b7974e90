"""Training a chord model: batches carry each window's chords, transposed with its melody; resume stays exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqvae.codec.chords import NO_CHORD, QUALITIES, transpose_chords
from seqvae.codec.events import FIRST_NOTE_ON, EventCodec
from seqvae.data.augment import random_shifts, random_transpose, transpose_rows
from seqvae.data.build import build_corpus
from seqvae.data.synthetic import write_synthetic_corpus
from seqvae.data.synthetic_midi import synthetic_midi_files
from seqvae.models import get_config, load_model
from seqvae.train import TRAIN_STATE_FILE, TrainOptions, load_train_state, read_metrics, train
from seqvae.train.batches import BatchSource

CODEC = EventCodec()


@pytest.fixture(scope="module")
def chord_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("chord_corpus")
    synthetic_midi_files(path / "midi", 10, 0, tracks=2, bars=32)
    build_corpus(path / "midi", path / "built", steps=32, workers=1, progress=False, chords=True,
                 valid_fraction=0.2, test_fraction=0.0)
    return path / "built"


def _options(data: Path, out: Path, **kwargs) -> TrainOptions:
    defaults = dict(data=data, out=out, config="tiny_chords", train_steps=6, threads=1, progress=False, log_every=1,
                    eval_every=3, checkpoint_every=3, command="seqvae train (test)")
    defaults.update(kwargs)
    return TrainOptions(**defaults)


def test_random_shifts_are_the_shifts_random_transpose_applies():
    rng_events = np.random.default_rng(0)
    events = rng_events.integers(0, CODEC.num_classes, size=(16, 32))
    shifts = random_shifts(events, np.random.default_rng(7), CODEC)
    assert np.array_equal(transpose_rows(events, shifts), random_transpose(events, np.random.default_rng(7), CODEC))
    assert shifts.min() >= -5 and shifts.max() <= 6 and len(set(shifts.tolist())) > 1


def test_batches_move_chords_with_their_melodies(chord_corpus):
    from seqvae.data.corpus import load_corpus

    corpus = load_corpus(chord_corpus)
    train_split = corpus.split("train")
    config = get_config("tiny_chords")
    source = BatchSource(train_split.events, 16, 3, config, corpus.codec, train_split.chords)
    plain = BatchSource(train_split.events, 16, 3, config, corpus.codec)
    moved = 0
    for step in range(4):
        events, chords, eps, _ = source.batch(step, 0.0)
        same_events, no_chords, same_eps, _ = plain.batch(step, 0.0)
        assert no_chords is None and np.array_equal(events, same_events) and np.array_equal(eps, same_eps)
        rows = np.sort(source.indices(step))
        original_events = np.asarray(train_split.events[rows], dtype=np.int64)
        original_chords = np.asarray(train_split.chords[rows], dtype=np.int64)
        for row in range(len(rows)):
            onsets = original_events[row] >= FIRST_NOTE_ON
            if not onsets.any():
                continue
            shift = int(events[row][onsets][0] - original_events[row][onsets][0])
            assert np.array_equal(chords[row], transpose_chords(original_chords[row], shift))
            moved += shift != 0 and (original_chords[row] != NO_CHORD).any()
        quality = (chords[chords != NO_CHORD] - 1) % len(QUALITIES)
        assert np.array_equal(quality, (original_chords[original_chords != NO_CHORD] - 1) % len(QUALITIES))
    assert moved > 0


def test_a_chord_model_trains_and_resumes_exactly(chord_corpus, tmp_path):
    straight = train(_options(chord_corpus, tmp_path / "a"))
    train(_options(chord_corpus, tmp_path / "b", train_steps=3))
    resumed = train(_options(chord_corpus, tmp_path / "b", config=None, resume=True))
    assert straight.step == resumed.step == 6
    assert straight.valid is not None and np.isfinite(straight.valid["recon"])
    a = load_train_state(tmp_path / "a" / TRAIN_STATE_FILE).model
    b = load_train_state(tmp_path / "b" / TRAIN_STATE_FILE).model
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_a = [r["loss"] for r in read_metrics(tmp_path / "a") if r["split"] == "train"]
    rows_b = [r["loss"] for r in read_metrics(tmp_path / "b") if r["split"] == "train"]
    assert rows_a == rows_b and len(rows_a) == 6
    loaded = load_model(tmp_path / "a", device="cpu").model
    assert loaded.config.chord_classes == 49
    with pytest.raises(ValueError, match="send chords"):
        loaded.decode(torch.zeros(1, loaded.config.z_size))


def test_a_chord_model_on_a_corpus_without_chords_names_the_build_flag(tmp_path):
    write_synthetic_corpus(tmp_path / "plain", 64, 16, 16, steps=32, seed=0)
    with pytest.raises(ValueError, match="seqvae data build MIDI_DIR --out DIR --chords"):
        train(_options(tmp_path / "plain", tmp_path / "run"))


def test_warm_started_chord_weights_leave_zero_in_training(chord_corpus, tmp_path):
    """init_from a model without chords: the chord columns start at zero and the batches' chords move them."""
    import dataclasses

    from seqvae.models import build_model, save_model
    from seqvae.models import registry as model_registry

    torch.manual_seed(2)
    save_model(build_model(get_config("tiny_lstm")), tmp_path / "plain")
    model_registry.CONFIGS["tiny_chords_warm"] = dataclasses.replace(
        get_config("tiny_chords"), name="tiny_chords_warm", init_from=str(tmp_path / "plain"))
    try:
        train(_options(chord_corpus, tmp_path / "run", config="tiny_chords_warm", train_steps=3, eval_every=3))
    finally:
        del model_registry.CONFIGS["tiny_chords_warm"]
    model = load_model(tmp_path / "run", device="cpu").model
    chord_columns = slice(model.config.num_classes + model.config.z_size, None)
    assert model.decoder.core.layers[0].weight_ih_l0[:, chord_columns].abs().sum() > 0
    assert model.encoder.layers[0].weight_ih_l0[:, model.config.num_classes:].abs().sum() > 0


def test_z_dropout_decodes_the_chosen_rows_from_prior_draws(chord_corpus, tmp_path):
    """Dropped rows decode from their prior draw, whatever the encoder says; kept rows from their posterior sample;
    the draws are a pure function of (seed, step) on a stream of their own; a run with dropout trains and resumes."""
    import dataclasses

    from seqvae.data.corpus import load_corpus
    from seqvae.models import build_model

    corpus = load_corpus(chord_corpus)
    train_split = corpus.split("train")
    config = dataclasses.replace(get_config("tiny_chords"), z_dropout=0.5)
    source = BatchSource(train_split.events, 64, 3, config, corpus.codec, train_split.chords)
    assert BatchSource(train_split.events, 64, 3, get_config("tiny_chords"), corpus.codec).prior_rows(0) is None
    dropped, draws = source.prior_rows(5)
    again, same_draws = source.prior_rows(5)
    assert np.array_equal(dropped, again) and np.array_equal(draws, same_draws)
    assert 0 < dropped.sum() < len(dropped) and draws.shape == (64, config.z_size)
    events, chords, eps, _ = source.batch(5, 0.0)
    assert np.array_equal(eps, BatchSource(train_split.events, 64, 3, get_config("tiny_chords"), corpus.codec,
                                           train_split.chords).batch(5, 0.0)[2])

    torch.manual_seed(0)
    model = build_model(config).eval()
    x, c = torch.as_tensor(events), torch.as_tensor(chords)
    prior = (torch.as_tensor(dropped), torch.as_tensor(draws))
    with torch.no_grad():
        out = model(x, eps=torch.as_tensor(eps), chords=c, prior_rows=prior)
        from_draws = model.logits(x, torch.as_tensor(draws), chords=c)
        from_posterior = model.logits(x, out.z, chords=c)
    rows = torch.as_tensor(dropped)
    assert torch.allclose(out.logits[rows], from_draws[rows], atol=1e-5)
    assert torch.allclose(out.logits[~rows], from_posterior[~rows], atol=1e-5)
    assert not torch.allclose(out.logits[rows], from_posterior[rows], atol=1e-3)

    run = train(_options(chord_corpus, tmp_path / "run", settings=("z_dropout=0.3",), train_steps=3))
    assert run.step == 3 and load_model(tmp_path / "run", device="cpu").model.config.z_dropout == 0.3
    with pytest.raises(ValueError, match="z_dropout"):
        dataclasses.replace(config, z_dropout=1.0)
