"""Model files: `model.safetensors` (weights, with the config and extras in its metadata) + `config.json`.

The safetensors file alone is enough to rebuild the model, so replacing it atomically (temp file +
os.replace) makes a save all-or-nothing even if the process dies between the two files. No pickle
is ever loaded. Other files in the directory (eval.json, train_command.txt, attributes.safetensors)
belong to other tools and are left alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from seqvae.codec.atomic_files import atomic_write_bytes
from seqvae.models.device import pick_device
from seqvae.models.registry import ModelConfig, config_from_dict, config_to_dict
from seqvae.models.vae import SequenceVAE, build_model

CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "seqvae-model"
FORMAT_VERSION = 1
_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    model: SequenceVAE
    config: ModelConfig
    directory: Path
    extra: dict


def shipped_models() -> list[str]:
    """Names loadable by name: folders of seqvae/checkpoints holding a model file."""
    if not CHECKPOINTS_DIR.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS_DIR.iterdir() if (p / WEIGHTS_FILE).is_file())


def save_model(
    model: SequenceVAE, directory: str | Path, extra: dict | None = None, storage_dtype: str = "float32"
) -> Path:
    """Write `directory/model.safetensors` and `directory/config.json`; returns the directory.

    `storage_dtype` 'float16' halves the file (weights are widened back to float32 on load).
    """
    from safetensors.torch import save

    if storage_dtype not in _STORAGE_DTYPES:
        raise ValueError(f"storage_dtype {storage_dtype!r} is not supported: use one of {', '.join(_STORAGE_DTYPES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = _STORAGE_DTYPES[storage_dtype]
    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous().clone()
    config = config_to_dict(model.config)
    extra = dict(extra or {})
    metadata = {
        "format": FORMAT,
        "version": str(FORMAT_VERSION),
        "config": json.dumps(config),
        "extra": json.dumps(extra),
    }
    atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata=metadata))
    summary = {"format": FORMAT, "version": FORMAT_VERSION, "config": config, "extra": extra}
    atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(summary, indent=2) + "\n").encode())
    return directory


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A shipped name ('default'), a model directory, a training run directory (uses RUN/model) or a weights file."""
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    looks_like_path = isinstance(name_or_path, Path) or os.sep in text or text.startswith(".") or candidate.exists()
    if not looks_like_path:
        directory = CHECKPOINTS_DIR / text
        if not (directory / WEIGHTS_FILE).is_file():
            names = shipped_models()
            shipped = ", ".join(names) if names else "none are installed"
            raise FileNotFoundError(
                f"no model named {text!r}: shipped models are: {shipped}; or pass a checkpoint directory "
                "(one holding model.safetensors, e.g. RUN_DIR/model from `seqvae train`)"
            )
        return directory
    if candidate.is_file():
        if candidate.suffix != ".safetensors":
            raise ValueError(f"{candidate} is not a model file: pass a directory holding {WEIGHTS_FILE}")
        return candidate.parent
    if not candidate.is_dir():
        raise FileNotFoundError(f"checkpoint {candidate} does not exist: pass a model directory or one of the "
                                f"shipped names ({', '.join(shipped_models()) or 'none installed'})")
    if (candidate / WEIGHTS_FILE).is_file():
        return candidate
    if (candidate / "model" / WEIGHTS_FILE).is_file():
        return candidate / "model"
    raise FileNotFoundError(f"{candidate} holds no {WEIGHTS_FILE}: pass a directory written by `seqvae train` "
                            "(RUN_DIR or RUN_DIR/model) or a shipped model name")


def read_model_file(path: Path) -> tuple[ModelConfig, dict, dict[str, torch.Tensor]]:
    """(config, extra, tensors) from a model.safetensors, or a ValueError saying the file is damaged."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
        raise ValueError(
            f"checkpoint {path} is damaged or not a safetensors file ({exc}); retrain or restore it"
        ) from None
    if "config" in metadata:
        config_data, extra_text = metadata["config"], metadata.get("extra", "{}")
    else:  # weights written by another tool: fall back to config.json beside them
        summary_path = path.parent / CONFIG_FILE
        if not summary_path.is_file():
            raise ValueError(f"checkpoint {path} has no config (neither in its metadata nor in {CONFIG_FILE})")
        summary = json.loads(summary_path.read_text())
        config_data, extra_text = json.dumps(summary.get("config", summary)), json.dumps(summary.get("extra", {}))
    try:
        config = config_from_dict(json.loads(config_data))
        extra = json.loads(extra_text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"checkpoint {path} carries an unusable config ({exc})") from None
    return config, extra, tensors


def load_model(name_or_path: str | Path, device: str | torch.device | None = None) -> LoadedModel:
    """Load a model for inference (eval mode) on `device` (default: CUDA if available, else CPU)."""
    directory = resolve_checkpoint(name_or_path)
    config, extra, tensors = read_model_file(directory / WEIGHTS_FILE)
    model = build_model(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {directory} does not match its config {config.name!r} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}); it was written by a different seqvae version"
        )
    for key, value in tensors.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"checkpoint {directory}: {key} has shape {tuple(value.shape)}, expected "
                             f"{tuple(expected[key].shape)}")
        tensors[key] = value.to(expected[key].dtype)
    model.load_state_dict(tensors)
    model.to(pick_device(device))
    model.eval()
    return LoadedModel(model, config, directory, extra)
