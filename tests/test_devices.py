"""--device: one rule for every command that runs a model, a clear error when CUDA is asked for without a GPU,
and torchrun's processes each on their own GPU over NCCL (the choice is checked here with CUDA faked)."""

from __future__ import annotations

import pytest
import torch

from seqvae.cli.main import main
from seqvae.models.device import NO_GPU, pick_device
from seqvae.train import distributed

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without a GPU")

MODEL_COMMANDS = [
    ["sample"], ["reconstruct", "a.mid"], ["interpolate", "a.mid", "b.mid"], ["grid", "a", "b", "c", "d"],
    ["morph", "a.mid", "b.mid", "--t", "0.5"], ["similar", "a.mid"], ["shift", "a.mid", "--attribute", "density"],
    ["infill", "a.mid", "--bars", "2"], ["novelty", "a.mid"], ["map", "."], ["attributes", "default", "--data", "."],
    ["serve", "--port", "9"], ["eval", "default", "--data", "."], ["personalize", "a.mid", "--out", "p"],
    ["train", "--config", "tiny_lstm", "--data", ".", "--out", "run"],
]


def test_pick_device_defaults_and_errors():
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device: send 'cpu', 'cuda'"):
        pick_device("gpu please")


@no_cuda
@pytest.mark.parametrize("command", MODEL_COMMANDS, ids=lambda c: c[0])
def test_every_model_command_says_there_is_no_gpu(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a.mid", "b.mid"):
        (tmp_path / name).write_bytes(b"")  # never read: the device is checked before any input
    assert main([*command, "--device", "cuda"]) == 2
    assert NO_GPU in capsys.readouterr().err


def test_torchrun_processes_take_their_gpu_and_nccl(monkeypatch):
    """With CUDA visible, rank 1 of 2 (LOCAL_RANK=1) sets cuda:1 as its device and joins over NCCL."""
    chosen, backends = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", backends.append)
    for key, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(key, value)
    info = distributed.setup_distributed(None)
    assert (info.device, chosen, backends) == (torch.device("cuda", 1), [1], ["nccl"])
    assert distributed.setup_distributed("cpu").device.type == "cpu" and backends[-1] == "gloo"
    with pytest.raises(ValueError, match="not supported"):
        distributed.setup_distributed("cuda:3")
