"""A built corpus on disk: the one layout `data build` and the synthetic fixtures write, opened memory-mapped.

BUILT_DIR holds per split `<split>.npy` (int8 [N, steps] events), `<split>_meter.npy` (int8 [N, 2])
and `<split>_source.npy` (int32 [N], index into sources.json), plus meta.json. Memory-mapping means a
million windows load in milliseconds.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqvae.codec.events import EventCodec

SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 1
META_NAME = "meta.json"
SOURCES_NAME = "sources.json"


@dataclass
class Split:
    events: np.ndarray  # int8 [N, steps], memory-mapped
    meters: np.ndarray  # int8 [N, 2] (numerator, denominator)
    sources: np.ndarray  # int32 [N], index into Corpus.sources
    chords: np.ndarray | None = None  # uint8 [N, steps] chord class per step, in a corpus built with --chords

    def __len__(self) -> int:
        return int(self.events.shape[0])


def split_paths(directory: Path, split: str) -> tuple[Path, Path, Path]:
    return directory / f"{split}.npy", directory / f"{split}_meter.npy", directory / f"{split}_source.npy"


def chords_path(directory: Path, split: str) -> Path:
    return directory / f"{split}_chords.npy"


def save_split(directory: Path, split: str, events: np.ndarray, meters: np.ndarray, sources: np.ndarray,
               chords: np.ndarray | None = None) -> None:
    """Write one split's arrays, in the dtypes the loader maps (chords only when the build made them)."""
    events_path, meters_path, sources_path = split_paths(directory, split)
    np.save(events_path, events.astype(np.int8))
    np.save(meters_path, meters.astype(np.int8))
    np.save(sources_path, sources.astype(np.int32))
    if chords is not None:
        np.save(chords_path(directory, split), chords.astype(np.uint8))


def save_index(directory: Path, meta: dict, sources: list[str]) -> None:
    """Write meta.json and sources.json (the source file of each window's `sources` index)."""
    (directory / SOURCES_NAME).write_text(json.dumps(sources))
    (directory / META_NAME).write_text(json.dumps(meta, indent=2))


def check_out_dir(out_dir: Path, force: bool) -> None:
    """An --out a corpus may be written to: new, empty, or (with `force`) a built corpus to replace."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a folder; choose another --out")
    if not any(out_dir.iterdir()):
        return
    if not (out_dir / META_NAME).exists():
        raise FileExistsError(f"{out_dir} holds files that are not a built corpus; choose an empty or new --out")
    if not force:
        raise FileExistsError(f"{out_dir} already holds a built corpus; pass --force to rebuild it")


def publish(building: Path, out_dir: Path) -> None:
    """Put a corpus written in a scratch folder in place of `out_dir`, so a crash never leaves half a corpus."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    building.rename(out_dir)


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
        return json.loads((self.path / SOURCES_NAME).read_text())

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: use one of {', '.join(SPLITS)}")
        if name not in self._splits:
            arrays = [np.load(p, mmap_mode="r") for p in split_paths(self.path, name)]
            chords = chords_path(self.path, name)
            self._splits[name] = Split(*arrays, np.load(chords, mmap_mode="r") if chords.is_file() else None)
        return self._splits[name]

    def chords_of(self, split: str, index: np.ndarray | slice, reader: str) -> np.ndarray:
        """The chord classes int64 [n, steps] of windows `index` of `split`, for `reader` (a chord model's name);
        a corpus built without --chords is an error that says how to rebuild it."""
        chords = self.split(split).chords
        if chords is None:
            raise ValueError(f"{reader!r} reads a chord per step but the corpus at {self.path} has no chords: "
                             "rebuild it with `seqvae data build MIDI_DIR --out DIR --chords`")
        return np.asarray(chords[index], dtype=np.int64)


def load_corpus(path: str | Path) -> Corpus:
    """Open BUILT_DIR written by `seqvae data build`; clear errors for anything else."""
    path = Path(path)
    meta_path = path / META_NAME
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
    missing = [events.name for events, _, _ in (split_paths(path, s) for s in SPLITS) if not events.is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lacks {', '.join(missing)}; rebuild the corpus with `seqvae data build`")
    return Corpus(path, meta, codec)
