"""Open a built corpus: memory-mapped arrays, so a million windows load in milliseconds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqvae.codec.events import EventCodec
from seqvae.data.build import SPLITS


@dataclass
class Split:
    events: np.ndarray  # int8 [N, steps], memory-mapped
    meters: np.ndarray  # int8 [N, 2] (numerator, denominator)
    sources: np.ndarray  # int32 [N], index into Corpus.sources

    def __len__(self) -> int:
        return int(self.events.shape[0])


@dataclass
class Corpus:
    path: Path
    meta: dict
    codec: EventCodec
    _splits: dict[str, Split] = field(default_factory=dict, repr=False)

    @property
    def steps(self) -> int:
        return int(self.meta["steps"])

    @property
    def family(self) -> str:
        return str(self.meta["family"])

    @property
    def sources(self) -> list[str]:
        return json.loads((self.path / "sources.json").read_text())

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: use one of {', '.join(SPLITS)}")
        if name not in self._splits:
            self._splits[name] = Split(
                np.load(self.path / f"{name}.npy", mmap_mode="r"),
                np.load(self.path / f"{name}_meter.npy", mmap_mode="r"),
                np.load(self.path / f"{name}_source.npy", mmap_mode="r"),
            )
        return self._splits[name]


def load_corpus(path: str | Path) -> Corpus:
    """Open BUILT_DIR written by `seqvae data build`; clear errors for anything else."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{path} is not a built corpus (no meta.json): run `seqvae data build MIDI_DIR --out {path}`"
        )
    try:
        meta = json.loads(meta_path.read_text())
        codec = EventCodec(**meta["codec"])
        int(meta["steps"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{meta_path} is damaged ({exc}); rebuild the corpus with `seqvae data build`") from None
    missing = [f"{s}.npy" for s in SPLITS if not (path / f"{s}.npy").is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lacks {', '.join(missing)}; rebuild the corpus with `seqvae data build`")
    return Corpus(path, meta, codec)
