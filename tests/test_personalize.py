"""Personal models: `seqvae personalize` and `/seqvae/personalize`.

The style claim needs a model that has learned something, so it uses the shipped `default` (folk) model on a
style far from folk (data/synthetic.ostinato_windows: a high, narrow 16th/8th ostinato); everything else runs on
the tiny untrained checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from server_support import OscClient, make_tiny_checkpoint, running_server

from seqvae.cli.main import main
from seqvae.codec import EventCodec, Melody, Meter, write_midi
from seqvae.codec.events import FIRST_NOTE_ON
from seqvae.data.synthetic import ostinato_windows, synthetic_windows
from seqvae.engine import Engine
from seqvae.engine.personalize import (
    MIN_WINDOWS,
    PROVENANCE_FILE,
    fit_personal,
    midi_inputs,
    personalize,
    read_user_windows,
)
from seqvae.evaluate.prior import compare_features
from seqvae.models.checkpoint import WEIGHTS_FILE
from seqvae.models.latent_prior import LatentPrior


def write_style(directory: Path, windows: np.ndarray, per_file: int = 4, stem: str = "take") -> list[Path]:
    """MIDI files of `per_file` windows back to back each, as a musician's takes."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(0, len(windows), per_file):
        melodies = [Melody(row.astype(np.int64)) for row in windows[i:i + per_file]]
        paths.append(write_midi(melodies, directory / f"{stem}{i // per_file:02d}.mid"))
    return paths


def mean_pitch(events: np.ndarray) -> float:
    onsets = events[events >= FIRST_NOTE_ON]
    return float((onsets - FIRST_NOTE_ON).mean() + EventCodec().min_pitch)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_base"))


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("user")
    write_style(directory, synthetic_windows(12, 32, seed=3))
    return directory


# ------------------------------------------------------------------ the claim: samples move towards the style
def test_personal_prior_samples_move_towards_a_far_style(tmp_path):
    import torch

    torch.set_num_threads(1)
    base = Engine.load("default", device="cpu")
    files = write_style(tmp_path / "mine", ostinato_windows(24, base.steps, seed=1))
    held_out = ostinato_windows(200, base.steps, seed=2).astype(np.int64)
    user = read_user_windows(base, midi_inputs([tmp_path / "mine"]))
    assert len(user.events) == 24 and set(user.per_file) == {str(p) for p in files}
    fit = fit_personal(base, user.events, base.latent_prior, base.attribute_vectors)
    personal = base.with_priors(fit.prior, fit.vectors, "mine")

    def samples(engine: Engine) -> np.ndarray:
        return engine.decode_events(engine.draw_prior(256, np.random.default_rng(0)), temperature=0.5, seed=0)

    mine, theirs = samples(personal), samples(base)
    ours = {c.feature: c.overlap for c in compare_features(mine, held_out, base.codec.min_pitch)}
    folk = {c.feature: c.overlap for c in compare_features(theirs, held_out, base.codec.min_pitch)}
    assert ours["note_density"] > folk["note_density"] + 0.2, (ours, folk)
    assert ours["pitch_range"] > folk["pitch_range"] + 0.1, (ours, folk)
    target = mean_pitch(held_out)
    assert abs(mean_pitch(mine) - target) < abs(mean_pitch(theirs) - target) - 3, (mean_pitch(mine), target)
    # the base engine is untouched by the view
    assert base.latent_prior is not fit.prior and base.model_name == "default"


def test_fit_personal_works_below_the_latent_size_and_shrinks_towards_the_base_shape():
    rng = np.random.default_rng(0)
    base_mu = rng.standard_normal((400, 16)) * np.linspace(0.2, 3.0, 16)
    base = LatentPrior.fit(base_mu)
    few = rng.standard_normal((3, 16)) * 0.1 + 5.0
    prior = LatentPrior.fit_personal(few, base, strength=30.0)  # the user's own covariance weighs 3 / 33
    assert "own covariance weighted 0.09" in prior.describe()
    cov = prior.scale_tril @ prior.scale_tril.T
    assert np.allclose(prior.mean, few.mean(0))
    assert np.linalg.matrix_rank(cov) == 16  # 3 windows, yet a full-rank density
    base_cov = base.scale_tril @ base.scale_tril.T
    assert np.corrcoef(np.diag(cov), np.diag(base_cov))[0, 1] > 0.9  # the base's shape
    assert np.trace(cov) < 0.2 * np.trace(base_cov)  # the user's (small) spread
    draws = prior.sample(500, np.random.default_rng(1))
    assert np.abs(draws.mean(0) - 5.0).max() < 0.5
    with pytest.raises(ValueError, match="at least 2"):
        LatentPrior.fit_personal(few[:1], base)


# ------------------------------------------------------------------ the command end to end
def test_cli_writes_a_self_contained_model_from_files_and_folders(tmp_path, tiny_dir, user_dir, capsys):
    base = tmp_path / "base"
    shutil.copytree(tiny_dir, base)
    files = sorted(user_dir.glob("*.mid"))
    out = tmp_path / "mine"
    assert main(["personalize", str(files[0]), str(user_dir), "--model", str(base), "--out", str(out),
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "read 12 windows from 3 file(s)" in printed and str(out) in printed
    record = json.loads((out / PROVENANCE_FILE).read_text())
    assert record["base"]["directory"] == str(base) and record["windows"] == 12
    assert record["files"] == {str(p): 4 for p in files}
    assert "personalize" in record["command"] and record["fine_tune"] is None
    assert (out / WEIGHTS_FILE).read_bytes() == (base / WEIGHTS_FILE).read_bytes()
    assert sum(p.stat().st_size for p in out.iterdir()) < 25_000_000
    shutil.move(base, tmp_path / "moved")  # the personal model must not need its base any more
    engine = Engine.load(out, device="cpu")
    assert engine.model_name == "mine" and engine.latent_prior.windows == 12
    assert engine.latent_prior.describe().startswith("a personal kernel density")
    assert engine.attributes  # refitted on the 12 windows (>= 8)
    assert main(["sample", "--model", str(out), "--out", str(tmp_path / "s"), "--n", "2", "--seed", "1"]) == 0
    assert (tmp_path / "s" / "sample.mid").is_file()


def test_fine_tune_steps_change_the_weights_and_are_recorded(tmp_path, tiny_dir, user_dir):
    made = personalize(tiny_dir, [user_dir], tmp_path / "tuned", steps=3, device="cpu")
    record = json.loads((made.directory / PROVENANCE_FILE).read_text())
    assert record["fine_tune"] == {"steps": 3, "learning_rate": 1e-4}
    assert (made.directory / WEIGHTS_FILE).read_bytes() != (tiny_dir / WEIGHTS_FILE).read_bytes()
    engine = Engine.load(made.directory, device="cpu")
    assert len(engine.sample(2, seed=0)) == 2
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no work files left behind


def test_a_small_set_gets_a_shrunk_prior_and_the_base_vectors(tmp_path, tiny_dir):
    write_style(tmp_path / "few", synthetic_windows(3, 32, seed=5), per_file=3)
    made = personalize(tiny_dir, [tmp_path / "few"], tmp_path / "small", device="cpu")
    assert made.fit.windows == 3 and made.fit.bandwidth is None and made.fit.refitted == []
    assert Engine.load(made.directory, device="cpu").latent_prior.windows == 3


# ------------------------------------------------------------------ errors
def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_errors_name_the_problem_and_what_to_send(tmp_path, tiny_dir, user_dir, capsys):
    model = ["--model", str(tiny_dir)]
    empty = write_midi(Melody(np.zeros(32, np.int64)), tmp_path / "empty.mid")
    text = _error(capsys, ["personalize", str(empty), *model, "--out", str(tmp_path / "a")])
    assert "has a melody" in text and "no notes" in text and "melodic line" in text

    one = write_style(tmp_path / "one", synthetic_windows(1, 32, seed=1), per_file=1)[0]
    text = _error(capsys, ["personalize", str(one), *model, "--out", str(tmp_path / "b")])
    assert "found 1 window(s)" in text and f"at least {MIN_WINDOWS}" in text

    waltz = np.zeros(36, np.int64)
    waltz[::4] = EventCodec().pitch_to_class(67)
    waltz_file = write_midi(Melody(waltz, meter=Meter(3, 4)), tmp_path / "waltz.mid")
    text = _error(capsys, ["personalize", str(waltz_file), *model, "--out", str(tmp_path / "c")])
    assert "3/4" in text and "--model triple" in text

    notes = tmp_path / "notes.txt"
    notes.write_text("C D E")
    text = _error(capsys, ["personalize", str(notes), *model, "--out", str(tmp_path / "d")])
    assert "not a MIDI file" in text and ".mid" in text
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06" + bytes(range(64)))
    text = _error(capsys, ["personalize", str(corrupt), *model, "--out", str(tmp_path / "e")])
    assert "not a readable MIDI file" in text
    # a broken file among good ones is skipped, and said so
    assert main(["personalize", str(corrupt), str(user_dir), *model, "--out", str(tmp_path / "f")]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "corrupt.mid" in captured.err and "1 skipped" in captured.out

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    text = _error(capsys, ["personalize", str(user_dir), *model, "--out", str(taken)])
    assert "already exists" in text and "new --out" in text
    assert (taken / "keep.txt").read_text() == "mine" and len(list(taken.iterdir())) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ------------------------------------------------------------------ the server route
def test_osc_personalize_switches_only_that_client(tmp_path, tiny_dir):
    import torch

    torch.set_num_threads(1)
    engine = Engine.load(tiny_dir, device="cpu")
    with running_server(engine, tmp_path / "exports") as server:
        me, other = OscClient(server.address[1]), OscClient(server.address[1])
        try:
            for i in range(4):
                me.one("/seqvae/sample", f"s{i}", 0.5, i)
            before = other.one("/seqvae/sample", "x", 0.5, 7)
            error = me.one("/seqvae/personalize", "mine", "s0")
            assert error[0] == "/seqvae/error" and "at least 2 windows" in error[1][1]
            assert me.one("/seqvae/personalize", "mine", "s0", "nope")[0] == "/seqvae/error"
            assert me.one("/seqvae/personalize_save", "early")[0] == "/seqvae/error"
            clip_notes = [v for k in range(16) for v in (60 + k % 5, 2.0 * k, 1.0, 90)]  # 8 bars: 4 windows
            assert me.one("/seqvae/encode", "clip", 16, *clip_notes)[0] == "/seqvae/notes"
            from_clip = me.one("/seqvae/personalize", "mine", "clip")
            assert from_clip[0] == "/seqvae/personalized" and from_clip[1][:2] == ["mine", 4]
            reply = me.one("/seqvae/personalize", "mine", "s0", "s1", "s2", "s3")
            assert reply[0] == "/seqvae/personalized" and reply[1][:2] == ["mine", 4]
            assert me.one("/seqvae/status")[1][0] == "mine"
            assert other.one("/seqvae/status")[1][0] == engine.model_name
            assert server.engine.latent_prior is None  # the tiny checkpoint has none, and still has none
            (personal,) = [c.personal for c in server.clients.clients.values() if c.personal is not None]
            assert personal.engine.latent_prior.windows == 4 and personal.engine.model is engine.model
            assert me.one("/seqvae/sample", "p", 0.5, 3)[0] == "/seqvae/notes"
            assert other.one("/seqvae/sample", "x", 0.5, 7) == before  # the other client's prior is the server's
            again = me.one("/seqvae/personalize", "mine2", "s0", "s1")
            assert again[1][:2] == ["mine2", 2]  # fitted from the server's model, not from the last view
            (personal,) = [c.personal for c in server.clients.clients.values() if c.personal is not None]
            assert personal.engine.base_engine is engine and personal.engine.latent_prior.windows == 2
            saved = me.one("/seqvae/personalize_save", "my_style")
            assert saved[0] == "/seqvae/personalize_saved"
            assert Engine.load(saved[1][1], device="cpu").latent_prior.windows == 2
            again = me.one("/seqvae/personalize_save", "my_style")
            assert again[0] == "/seqvae/error" and "never overwritten" in again[1][1]
            assert me.one("/seqvae/personalize_save", "../out")[0] == "/seqvae/error"
            assert me.one("/seqvae/personalize", "off")[1][:2] == ["off", 0]
            assert me.one("/seqvae/status")[1][0] == engine.model_name
        finally:
            me.close()
            other.close()


def test_the_help_states_the_engine_minimums():
    from seqvae.cli import personalize_command
    from seqvae.engine import personalize as engine_side

    assert personalize_command.MIN_WINDOWS == engine_side.MIN_WINDOWS
    assert personalize_command.ATTRIBUTE_MIN_WINDOWS == engine_side.ATTRIBUTE_MIN_WINDOWS
