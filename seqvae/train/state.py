"""The training checkpoint: model, optimizer, RNG and step in ONE safetensors file (JSON in its metadata).

One file replaced atomically means a run killed at any moment (even SIGKILL mid-write) leaves either the
previous checkpoint or the new one, never a torn mix. Nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from seqvae.codec.atomic_files import atomic_write_bytes

TRAIN_STATE_FILE = "checkpoint.safetensors"
TRAIN_FORMAT = "seqvae-train"


@dataclass
class TrainState:
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict  # torch optimizer state_dict
    torch_rng: torch.Tensor
    info: dict  # config, run options, anything JSON


def save_train_state(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, info: dict
) -> None:
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        tensors[f"model.{key}"] = value.detach().to("cpu").contiguous().clone()
    opt = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for index, slot in opt["state"].items():
        for name, value in slot.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "format": TRAIN_FORMAT,
        "step": str(int(step)),
        "param_groups": json.dumps(opt["param_groups"]),
        "optim_scalars": json.dumps(scalars),
        "info": json.dumps(info),
    }
    atomic_write_bytes(Path(path), save(tensors, metadata=metadata))


def load_train_state(path: str | Path) -> TrainState:
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        if metadata.get("format") != TRAIN_FORMAT:
            raise ValueError("not a seqvae training checkpoint")
        step = int(metadata["step"])
        param_groups = json.loads(metadata["param_groups"])
        scalars = json.loads(metadata["optim_scalars"])
        info = json.loads(metadata["info"])
    except Exception as exc:  # a torn or foreign file: say so instead of a library traceback
        raise ValueError(f"training checkpoint {path} is unreadable ({exc}); start a new run or restore it") from None
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in scalars.items():
        state.setdefault(int(index), {}).update(values)
    return TrainState(step, model, {"state": state, "param_groups": param_groups}, tensors["rng.torch"], info)
