"""`seqvae eval` on a chord model: every measure reads the corpus's chords; a corpus without them is a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from seqvae.cli.main import main
from seqvae.codec.chords import NUM_CHORD_CLASSES, transpose_chords
from seqvae.data.build import build_corpus
from seqvae.data.corpus import load_corpus
from seqvae.data.synthetic_midi import synthetic_midi_files
from seqvae.evaluate.report import EvalOptions, evaluate_checkpoint
from seqvae.models import build_model, get_config, save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_chords")
    synthetic_midi_files(root / "midi", 10, 0, tracks=2, bars=32)
    build_corpus(root / "midi", root / "built", steps=32, workers=1, progress=False, chords=True,
                 valid_fraction=0.2, test_fraction=0.0)
    build_corpus(root / "midi", root / "plain", steps=32, workers=1, progress=False, valid_fraction=0.2,
                 test_fraction=0.0)
    moved = root / "moved"  # the same melodies under chords a tritone away
    shutil.copytree(root / "built", moved)
    for split in ("train", "valid"):
        np.save(moved / f"{split}_chords.npy", transpose_chords(np.load(moved / f"{split}_chords.npy"), 6))
    torch.manual_seed(0)
    model = build_model(get_config("tiny_chords"))
    with torch.no_grad():  # loud chord columns: an untrained model whose likelihoods follow the chords
        model.encoder.layers[0].weight_ih_l0[:, -NUM_CHORD_CLASSES:] *= 40
        model.decoder.core.layers[0].weight_ih_l0[:, -NUM_CHORD_CLASSES:] *= 40
    return {"root": root, "built": root / "built", "plain": root / "plain", "moved": moved,
            "ck": save_model(model, root / "ck")}


def _options(setup, data: str, **kwargs) -> EvalOptions:
    return EvalOptions(checkpoint=setup["ck"], data=setup[data], split="valid", samples=32, pairs=4, device="cpu",
                       progress=False, **kwargs)


def test_every_measure_runs_under_the_corpus_chords(setup):
    own, moved = evaluate_checkpoint(_options(setup, "built")), evaluate_checkpoint(_options(setup, "moved"))
    assert own.windows == moved.windows > 0 and own.model == "tiny_chords"
    assert own.reconstruction["recon_nats"] != pytest.approx(moved.reconstruction["recon_nats"])
    assert own.prior and own.interpolation is not None and own.interpolation["pairs"] == 4
    again = evaluate_checkpoint(_options(setup, "built"))
    assert again.reconstruction == own.reconstruction and again.prior == own.prior


def test_the_samples_hear_chords_drawn_from_the_split(setup, monkeypatch):
    from seqvae.evaluate import report

    heard = []
    real = report.sample_prior

    def spy(*args, chords=None, **kwargs):
        heard.append(chords)
        return real(*args, chords=chords, **kwargs)

    monkeypatch.setattr(report, "sample_prior", spy)
    evaluate_checkpoint(_options(setup, "built"))
    valid = {row.tobytes() for row in np.load(setup["built"] / "valid_chords.npy").astype(np.int64)}
    (chords,) = heard
    assert chords.shape == (32, 32) and all(row.tobytes() in valid for row in chords)


def test_the_eval_command_on_a_chord_model(setup, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", str(setup["ck"]), "--data", str(setup["built"]), "--split", "valid", "--samples", "16",
                 "--pairs", "2", "--json", str(out), "--threads", "1"]) == 0
    assert json.loads(out.read_text())["model"] == "tiny_chords"
    assert "teacher-forced accuracy" in capsys.readouterr().out


def test_a_corpus_without_chords_names_the_build_flag(setup, capsys):
    with pytest.raises(ValueError, match="seqvae data build MIDI_DIR --out DIR --chords"):
        evaluate_checkpoint(_options(setup, "plain"))
    assert main(["eval", str(setup["ck"]), "--data", str(setup["plain"]), "--split", "valid", "--threads", "1"]) == 2
    assert "--chords" in capsys.readouterr().err


def _copy_checkpoint(setup, tmp_path) -> Path:
    return Path(shutil.copytree(setup["ck"], tmp_path / "ck"))


def test_attributes_encode_each_window_under_its_own_chords(setup, tmp_path):
    from seqvae.engine import Engine
    from seqvae.engine.side_files import fit_side_files
    from seqvae.models.attribute_vectors import AttributeVectors
    from seqvae.models.latent_prior import LatentPrior

    fitted = {}
    for data in ("built", "moved"):
        engine = Engine.load(_copy_checkpoint(setup, tmp_path / data), device="cpu")
        fitted[data] = fit_side_files(engine, load_corpus(setup[data]), "train", measure=4)
        assert fitted[data].measured_on == 4 and fitted[data].monotonicity
        assert LatentPrior.load(engine.directory, 8) is not None and AttributeVectors.load(engine.directory).names
    # the same melodies under other chords land elsewhere in the latent space: the chords were heard
    own, moved = (fitted[d].vectors.vector("interval") for d in ("built", "moved"))
    assert not np.allclose(own, moved)


def test_the_attributes_command_on_a_chord_model(setup, tmp_path, capsys):
    ck = _copy_checkpoint(setup, tmp_path)
    assert main(["attributes", str(ck), "--data", str(setup["built"]), "--measure", "4", "--threads", "1"]) == 0
    assert "attribute vectors from" in capsys.readouterr().out
    assert main(["attributes", str(ck), "--data", str(setup["plain"]), "--threads", "1"]) == 2
    assert "--chords" in capsys.readouterr().err


def test_the_banks_bandwidth_is_chosen_by_the_data_copying_test(setup, tmp_path, monkeypatch):
    """`attributes` widens the bank's draws until its samples under the held-out windows' chords are as far from
    the training windows as those melodies are; `eval` then draws a chord model's prior samples from that bank,
    as `sample` under chords does."""
    from seqvae.engine import Engine
    from seqvae.engine.side_files import fit_side_files
    from seqvae.evaluate import copying
    from seqvae.models.chord_bank import ChordBank
    from seqvae.models.latent_prior import BANDWIDTHS, LatentPrior

    def kernel_density(mu, max_centers=None):  # the tiny corpus's 24 latents would get a plain Gaussian
        mu = np.asarray(mu, dtype=np.float64)
        cov = np.cov(mu, rowvar=False) + 1e-4 * np.eye(mu.shape[1])
        return LatentPrior(mu.mean(axis=0), np.linalg.cholesky(cov), len(mu), mu.astype(np.float16), 0.5)

    monkeypatch.setattr(copying.LatentPrior, "fit", staticmethod(kernel_density))
    engine = Engine.load(_copy_checkpoint(setup, tmp_path), device="cpu")
    fitted = fit_side_files(engine, load_corpus(setup["built"]), "train")
    choice = fitted.bank_bandwidth
    assert choice is not None and ChordBank.load(engine.directory, 32).bandwidth == choice.bandwidth
    grid = sorted(float(h) for h in BANDWIDTHS)  # the bisection itself: tests/test_copying.py
    assert choice.tried and (choice.reached >= choice.target or choice.bandwidth == grid[-1])

    drawn = []
    real = ChordBank.draw_latents

    def spy(self, progressions, *args, **kwargs):
        drawn.append(np.asarray(progressions))
        return real(self, progressions, *args, **kwargs)

    monkeypatch.setattr(ChordBank, "draw_latents", spy)
    report = evaluate_checkpoint(EvalOptions(checkpoint=engine.directory, data=setup["built"], split="valid",
                                             samples=32, pairs=0, device="cpu", progress=False))
    assert report.latent_prior.startswith("p(z | chords): a chord bank of")
    valid = {row.tobytes() for row in np.load(setup["built"] / "valid_chords.npy").astype(np.int64)}
    assert sum(len(rows) for rows in drawn) == 32
    assert all(row.astype(np.int64).tobytes() in valid for rows in drawn for row in rows)
