"""--key and --range on every generating command: the MIDI written holds only notes inside both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqvae.cli.main import main
from seqvae.codec import Melody, read_midi, write_midi
from seqvae.codec.scales import Key
from seqvae.data.synthetic import synthetic_windows
from seqvae.engine import AttributeVectors
from seqvae.models import build_model, get_config, save_model
from seqvae.models.attribute_vectors import AttributeInfo

KEY = Key.parse("D dorian")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_keys")
    torch.manual_seed(0)
    model = build_model(get_config("tiny_lstm"))
    checkpoint = save_model(model, root / "ck")
    vector = np.random.default_rng(0).standard_normal((1, model.config.z_size)).astype(np.float32)
    AttributeVectors(["density"], vector, [AttributeInfo("density", 0, 1, 0, 1, 2, 2, 3.0)]).save(checkpoint)
    files = {f"m{i}": write_midi(Melody(row), root / f"m{i}.mid") for i, row in enumerate(synthetic_windows(2, 32, 5))}
    return {"root": root, "ck": checkpoint, **files}


def run(*argv) -> int:
    threads = torch.get_num_threads()
    try:
        return main([str(a) for a in argv] + ["--threads", "1"])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("command, inputs, extra", [
    ("sample", [], ["--n", 6]),
    ("reconstruct", ["m0"], []),
    ("interpolate", ["m0", "m1"], ["--steps", 4]),
    ("morph", ["m0", "m1"], ["--t", 0.5]),
    ("similar", ["m0"], ["--n", 3]),
    ("shift", ["m0"], ["--attribute", "density"]),
    ("infill", ["m0"], ["--bars", "2"]),
])
def test_every_command_writes_only_notes_in_key_and_range(setup, command, inputs, extra):
    out = setup["root"] / command
    files = [setup[name] for name in inputs]
    assert run(command, *files, *extra, "--model", setup["ck"], "--out", out, "--seed", 2, "--temperature", 1.0,
               "--key", "D dorian", "--range", "A3-E5") == 0
    notes = [n for line in read_midi(out / f"{command}.mid").lines for n in line.notes]
    if command == "infill":  # bar 1 is kept as it was; only the regenerated bar obeys the key
        notes = [n for n in notes if n.start >= 16]
    assert notes, f"{command} wrote no notes to check"
    outside = [n for n in notes if not (57 <= n.pitch <= 76 and KEY.contains(n.pitch))]
    assert not outside, f"{command}: {outside[:3]}"


@pytest.mark.parametrize("argv, message", [
    (["--key", "D lydian"], "unknown mode 'lydian'"),
    (["--key", "H major"], "unknown root"),
    (["--range", "76-57"], "lowest first"),
    (["--range", "low-high"], "neither a MIDI number nor a note name"),
])
def test_bad_values_are_clear_usage_errors(setup, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run("sample", "--model", setup["ck"], "--out", setup["root"] / "bad", *argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_an_impossible_pair_is_one_clear_line(setup, capsys):
    assert run("sample", "--model", setup["ck"], "--out", setup["root"] / "bad", "--key", "C pentatonic major",
               "--range", "65-66") == 2
    err = capsys.readouterr().err
    assert "no pitch of C pentatonic major lies in range 65-66" in err and "widen the range" in err
