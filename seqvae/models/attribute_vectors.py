"""Attribute vectors on disk: directions in z that change one musical quality, a side file beside the weights.

`attributes.safetensors` holds one vector per attribute, with how each was made (quartile thresholds, group sizes,
the monotonicity measured) in its metadata, like `latent_prior.safetensors` beside it. Fitting them is
`seqvae.evaluate.attributes.compute_attribute_vectors`; `Engine.shift` applies them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from seqvae.models.side_file import read_side_file, write_side_file

ATTRIBUTE_FILE = "attributes.safetensors"


@dataclass
class AttributeInfo:
    """How a vector was made: quartile thresholds and group sizes, so a user can judge it."""

    name: str
    low_threshold: float
    high_threshold: float
    low_mean: float
    high_mean: float
    n_low: int
    n_high: int
    norm: float


@dataclass
class AttributeVectors:
    names: list[str]
    vectors: np.ndarray  # float32 [A, Z]
    info: list[AttributeInfo] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # source data, split, count, monotonicity ...

    def vector(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise ValueError(f"unknown attribute {name!r}: this model has {', '.join(self.names)}")
        return self.vectors[self.names.index(name)]

    def save(self, directory: str | Path) -> Path:
        """Write attributes.safetensors into a checkpoint directory (atomically: temp file + rename)."""
        path = Path(directory) / ATTRIBUTE_FILE
        metadata = {
            "names": json.dumps(self.names),
            "info": json.dumps([asdict(i) for i in self.info]),
            "meta": json.dumps(self.meta),
        }
        return write_side_file(path, {"vectors": np.ascontiguousarray(self.vectors, dtype=np.float32)}, metadata)

    @classmethod
    def load(cls, directory: str | Path, z_size: int | None = None) -> AttributeVectors:
        path = Path(directory) / ATTRIBUTE_FILE
        vectors, names, info, meta = read_side_file(path, lambda tensors, metadata: (
            tensors["vectors"], json.loads(metadata["names"]),
            [AttributeInfo(**i) for i in json.loads(metadata.get("info", "[]"))],
            json.loads(metadata.get("meta", "{}"))))
        if vectors.ndim != 2 or vectors.shape[0] != len(names) or (z_size is not None and vectors.shape[1] != z_size):
            raise ValueError(f"{path} does not match this model (vectors {vectors.shape}, latent {z_size}); "
                             "recompute it with `seqvae attributes`")
        return cls(list(names), vectors.astype(np.float32), info, meta)
