"""--chords on the generating commands: a chord checkpoint plays under the progression; errors name the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli_constraints import run  # the CLI in-process on one thread

from seqvae.codec import Melody, write_midi
from seqvae.codec.chords import NUM_CHORD_CLASSES
from seqvae.data.synthetic import synthetic_windows
from seqvae.models import build_model, get_config, save_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_chords")
    torch.manual_seed(0)
    model = build_model(get_config("tiny_chords"))
    with torch.no_grad():  # loud chord columns, so an untrained model's melodies follow the chords it is given
        model.decoder.core.layers[0].weight_ih_l0[:, -NUM_CHORD_CLASSES:] *= 40
    torch.manual_seed(0)
    plain = build_model(get_config("tiny_lstm"))
    files = {f"m{i}": write_midi(Melody(row), root / f"m{i}.mid") for i, row in enumerate(synthetic_windows(2, 32, 5))}
    return {"root": root, "ck": save_model(model, root / "ck"), "plain": save_model(plain, root / "plain"), **files}


COMMANDS = {
    "sample": lambda s: ["sample", "--n", 3, "--seed", 1, "--temperature", 0.5],
    "reconstruct": lambda s: ["reconstruct", s["m0"]],
    "morph": lambda s: ["morph", s["m0"], s["m1"], "--t", 0.4],
    "interpolate": lambda s: ["interpolate", s["m0"], s["m1"], "--steps", 3],
    "similar": lambda s: ["similar", s["m0"], "--n", 2, "--seed", 3],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_plays_under_its_progression(setup, command):
    written = {}
    for chords in ("C", "F#dim", "C"):
        out = setup["root"] / f"{command}_{chords.replace('#', 's')}"
        assert run(*COMMANDS[command](setup), "--model", setup["ck"], "--chords", chords, "--out", out) == 0
        written.setdefault(chords, []).append((out / f"{command}.mid").read_bytes())
    assert written["C"][0] == written["C"][1]  # the same progression gives the same file
    assert written["C"][0] != written["F#dim"][0]  # another progression, other melodies


def test_a_long_clip_reads_on_through_a_long_progression(setup, tmp_path):
    from seqvae.codec import read_midi

    line = write_midi(Melody(np.concatenate(list(synthetic_windows(2, 32, 8)))), tmp_path / "line.mid")
    for chords, out in (("C F G Am", "long"), ("C F", "short")):
        assert run("reconstruct", line, "--model", setup["ck"], "--chords", chords, "--out", tmp_path / out) == 0
    long, short = (read_midi(tmp_path / out / "reconstruct.mid") for out in ("long", "short"))
    assert long.n_steps <= 64 and short.n_steps <= 64
    # window 1 hears C F under both; window 2 hears G Am, or C F again
    first = [(n.pitch, n.start) for n in long.lines[0].notes if n.start < 32]
    assert first == [(n.pitch, n.start) for n in short.lines[0].notes if n.start < 32]
    assert (tmp_path / "long" / "reconstruct.mid").read_bytes() != (tmp_path / "short" / "reconstruct.mid").read_bytes()


def test_a_chord_model_without_chords_names_the_flag(setup, capsys):
    assert run("sample", "--model", setup["ck"], "--out", setup["root"] / "none") == 2
    err = capsys.readouterr().err
    assert "chord-conditioned" in err and "--chords" in err


def test_a_model_without_chords_refuses_them(setup, capsys):
    assert run("sample", "--model", setup["plain"], "--chords", "Am F", "--out", setup["root"] / "plain_out") == 2
    assert "takes no chords: use a chord model" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["Am Xq", "Am F:2", "Am:0"])
def test_bad_symbols_are_parser_errors_listing_the_forms(setup, capsys, bad):
    with pytest.raises(SystemExit) as stop:
        run("sample", "--model", setup["ck"], "--chords", bad)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --chords" in err and ("Am:2 F:2" in err or "N.C." in err)


def test_chord_track_writes_the_progression_each_result_was_played_under(setup, tmp_path):
    from seqvae.codec import read_midi

    out = tmp_path / "tracked"
    assert run("sample", "--n", 2, "--seed", 1, "--model", setup["ck"], "--chords", "Am:4 F:4 G:2 C:2",
               "--chord-track", "--out", out) == 0
    score = read_midi(out / "sample.mid")
    assert [line.name.split(" (")[0] for line in score.lines] == ["seqvae melody", "chords"]
    once = [(0, "Am"), (16, "F"), (32, "G"), (40, "C")]  # a sample's window hears the first 2 bars: Am F
    assert score.chords == [(0, "Am"), (16, "F"), (32, "Am"), (48, "F")]
    assert read_midi(out / "sample_02.mid").chords == once[:2]
    line = tmp_path / "line.mid"
    write_midi(Melody(np.concatenate(list(synthetic_windows(2, 32, 8)))), line)
    assert run("reconstruct", line, "--model", setup["ck"], "--chords", "Am:4 F:4 G:2 C:2", "--chord-track",
               "--out", tmp_path / "clip") == 0
    assert read_midi(tmp_path / "clip" / "reconstruct.mid").chords == [*once, (48, "Am")]  # a clip reads on


def test_chord_track_without_chords_names_the_flag(setup, capsys):
    assert run("sample", "--model", setup["ck"], "--chord-track", "--out", setup["root"] / "no_track") == 2
    assert "--chord-track writes the progression" in capsys.readouterr().err
