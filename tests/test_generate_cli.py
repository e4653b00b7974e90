"""Every generating command end to end on a tiny checkpoint: exit codes, MIDI files that read back, PNGs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqvae.cli.main import main
from seqvae.codec import Melody, read_midi, write_midi
from seqvae.data.synthetic import synthetic_windows, write_synthetic_corpus
from seqvae.models import build_model, get_config, save_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    checkpoint = save_model(build_model(get_config("tiny_lstm")), root / "ck")
    files = {}
    for i, row in enumerate(synthetic_windows(4, 32, 5)):
        files[f"m{i}"] = write_midi(Melody(row, bpm=110, program=24), root / "in" / f"m{i}.mid")
    long_line = np.concatenate(list(synthetic_windows(4, 32, 6)))  # 8 bars
    files["long"] = write_midi(Melody(long_line), root / "long.mid")
    return {"root": root, "ck": checkpoint, **files}


def run(*argv: str) -> int:
    """The CLI in-process, on one thread (a tiny model gains nothing from more), restoring torch's setting."""
    threads = torch.get_num_threads()
    extra = [] if argv[0] == "plot" else ["--threads", "1"]
    try:
        return main([str(a) for a in argv] + extra)
    finally:
        torch.set_num_threads(threads)


def _notes(path: Path) -> int:
    score = read_midi(path)
    return sum(len(line.notes) for line in score.lines)


def test_sample_writes_one_file_per_melody_and_all_together(setup, capsys):
    out = setup["root"] / "sample"
    style = ["--bpm", 90, "--program", 40, "--velocity", 100]
    assert run("sample", "--model", setup["ck"], "--n", 3, "--seed", 1, "--out", out, "--png", *style) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["sample.mid", "sample.png", "sample_01.mid", "sample_02.mid", "sample_03.mid"]
    score = read_midi(out / "sample.mid")
    assert score.bpm == pytest.approx(90, rel=1e-3) and score.n_steps <= 96
    assert all(line.program == 40 for line in score.lines)
    assert all(n.velocity == 100 for line in score.lines for n in line.notes)
    assert "wrote" in capsys.readouterr().out
    again = setup["root"] / "sample2"
    run("sample", "--model", setup["ck"], "--n", 3, "--seed", 1, "--out", again, *style)
    assert (again / "sample.mid").read_bytes() == (out / "sample.mid").read_bytes()  # same seed, same file
    first = (out / "sample.mid").read_bytes()
    run("sample", "--model", setup["ck"], "--n", 3, "--seed", 2, "--out", out, *style)  # the same --out again
    assert (out / "sample.mid").read_bytes() == first  # the first takes stay
    assert {"sample-2.mid", "sample_01-2.mid", "sample_03-2.mid"} <= {p.name for p in out.iterdir()}


def test_interpolate_writes_steps_back_to_back_and_each_step(setup):
    out = setup["root"] / "interp"
    assert run("interpolate", setup["m0"], setup["m1"], "--steps", 8, "--model", setup["ck"], "--out", out,
               "--png") == 0
    per_step = sorted(out.glob("interpolate_*.mid"))
    assert len(per_step) == 8 and (out / "interpolate.png").is_file()
    assert _notes(out / "interpolate.mid") == sum(_notes(p) for p in per_step)
    assert read_midi(out / "interpolate.mid").bpm == pytest.approx(110, rel=1e-3)  # the input's tempo carries over


@pytest.mark.parametrize(
    "command, extra, produced",
    [
        ("reconstruct", [], ["reconstruct.mid", "reconstruct.png"]),
        ("similar", ["--n", 2, "--amount", 0.4], ["similar.mid", "similar.png", "similar_01.mid", "similar_02.mid"]),
        ("infill", ["--bars", "2"], ["infill.mid", "infill.png"]),
    ],
)
def test_single_input_commands(setup, command, extra, produced):
    out = setup["root"] / command
    assert run(command, setup["m2"], *extra, "--model", setup["ck"], "--out", out, "--png", "--seed", 3) == 0
    assert sorted(p.name for p in out.iterdir()) == produced
    read_midi(out / produced[0])


def test_infill_cli_keeps_bar_one(setup):
    out = setup["root"] / "infill_keep"
    assert run("infill", setup["m3"], "--bars", "2-2", "--model", setup["ck"], "--out", out, "--seed", 0) == 0
    original = read_midi(setup["m3"]).lines[0].notes
    result = read_midi(out / "infill.mid").lines[0].notes
    assert [n for n in original if n.end <= 16] == [n for n in result if n.end <= 16]


def test_grid_and_morph(setup):
    out = setup["root"] / "grid"
    corners = [setup[f"m{i}"] for i in range(4)]
    assert run("grid", *corners, "--rows", 2, "--cols", 3, "--model", setup["ck"], "--out", out, "--png") == 0
    assert len(list(out.glob("grid_r*_c*.mid"))) == 6 and (out / "grid.png").is_file()
    assert run("morph", setup["m0"], setup["m1"], "--t", 0.3, "--model", setup["ck"], "--out", out) == 0
    first = (out / "morph.mid").read_bytes()
    assert run("morph", setup["m0"], setup["m1"], "--t", 0.3, "--model", setup["ck"], "--out", out) == 0
    assert (out / "morph.mid").read_bytes() == first
    assert run("morph", *corners, "--x", 0.5, "--y", 0.5, "--model", setup["ck"], "--out", out, "--name", "xy") == 0
    read_midi(out / "xy.mid")
    assert run("morph", setup["m0"], setup["m1"], "--t", 0.3, "--model", setup["ck"], "--out", out / "knob.mid",
               "--png") == 0
    assert (out / "knob.mid").read_bytes() == first and (out / "knob.png").is_file()


def test_attributes_then_shift(setup, capsys):
    data = setup["root"] / "corpus"
    write_synthetic_corpus(data, 256, 32, 8, steps=32, seed=0)
    assert run("attributes", setup["ck"], "--data", data, "--measure", 8) == 0
    printed = capsys.readouterr().out
    assert "density" in printed and "spearman" in printed and (setup["ck"] / "attributes.safetensors").is_file()
    out = setup["root"] / "shift"
    assert run("shift", setup["m1"], "--attribute", "density", "--amount", -1, "--model", setup["ck"],
               "--out", out, "--png") == 0
    assert "density:" in capsys.readouterr().out
    read_midi(out / "shift.mid")


def test_novelty_map_plot(setup, capsys, tmp_path):
    report = tmp_path / "novelty.json"
    assert run("novelty", setup["m0"], setup["long"], "--model", setup["ck"], "--json", report, "--windows") == 0
    payload = json.loads(report.read_text())
    assert len(payload["windows"]) == 5 and len(payload["files"]) == 2  # 1 window + 4 windows of the long file
    assert "long.mid track 1 bar 7" in capsys.readouterr().out
    assert run("map", setup["root"] / "in", "--model", setup["ck"], "--out", tmp_path / "map.png",
               "--csv", tmp_path / "map.csv") == 0
    assert (tmp_path / "map.png").stat().st_size > 2000
    assert len((tmp_path / "map.csv").read_text().splitlines()) == 5
    assert run("map", setup["root"] / "in", "--model", setup["ck"], "--out", tmp_path / "map2.png",
               "--colour", "range") == 0
    assert run("plot", setup["long"], "--out", tmp_path / "long.png") == 0
    assert (tmp_path / "long.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "--model", "no_such_model"], "no model named 'no_such_model'"),
        (["grid", "{long}", "{m0}", "{m1}", "{m2}", "--model", "{ck}"], "choose where to start with bar (--bar N)"),
        (["infill", "{long}", "--bars", "1-8", "--model", "{ck}"], "bars 1-8 are the whole clip"),
        (["reconstruct", "{m0}", "--model", "{ck}", "--bar", "x"], "--bar x"),
        (["interpolate", "{m0}", "{m1}", "--model", "{ck}", "--track", "1,2,3"], "exactly 2"),
        (["infill", "{m0}", "--bars", "2-x", "--model", "{ck}"], "--bars 2-x"),
        (["morph", "{m0}", "{m1}", "--model", "{ck}"], "give --t"),
        (["shift", "{m0}", "--attribute", "loudness", "--model", "{ck}"], "attribute"),
        (["map", "{root}/nowhere", "--model", "{ck}"], "not a folder"),
        (["attributes", "{ck}", "--data", "{root}/nowhere"], "not a built corpus"),
        (["plot", "{root}/missing.mid"], "no such file"),
    ],
)
def test_errors_are_one_clear_line(setup, capsys, argv, message):
    names = {k: str(v) for k, v in setup.items()}
    assert run(*[a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
