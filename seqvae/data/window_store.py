"""One split's windows appended to disk as files finish, then deduplicated into the corpus arrays.

A build of 176k files never holds its windows in memory: each file's rows go straight to raw files
(events, meters, sources, and chords with their given flags), and the end of the build drops repeated
windows with memory bounded by a bucket, not the corpus: rows are hashed into buckets of at most
BUCKET_ROWS, equal rows always share a bucket, and each bucket is deduplicated alone. What stays in
memory for the whole split is 3 bytes a window (its bucket and whether it is kept). The result is what
`unique_rows` over everything at once gives: first occurrences, in build order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from seqvae.data.corpus import chords_path, save_split, split_paths

BUCKET_BYTES = 4 << 20  # window bytes deduplicated together at most
CHUNK_BYTES = 1 << 20  # window bytes read or written at a time
_MIX = np.random.default_rng(0x5E9).integers(1, 2**63, size=256, dtype=np.uint64) | np.uint64(1)


class SplitWriter:
    """Append-as-you-go storage of one split under `scratch`, finished into the corpus layout."""

    def __init__(self, scratch: Path, split: str, steps: int, chords: bool) -> None:
        self.steps, self.chords, self.rows = steps, chords, 0
        names = ("events", "meters", "sources") + (("chords", "given") if chords else ())
        self.parts = {name: scratch / f"{split}.{name}.raw" for name in names}
        self.files = {name: path.open("wb") for name, path in self.parts.items()}

    def append(self, events: np.ndarray, meters: np.ndarray, sources: np.ndarray,
               chords: np.ndarray | None = None, given: np.ndarray | None = None) -> None:
        self.files["events"].write(np.ascontiguousarray(events, dtype=np.int8).tobytes())
        self.files["meters"].write(np.ascontiguousarray(meters, dtype=np.int8).tobytes())
        self.files["sources"].write(np.ascontiguousarray(sources, dtype=np.int32).tobytes())
        if self.chords:
            self.files["chords"].write(np.ascontiguousarray(chords, dtype=np.uint8).tobytes())
            self.files["given"].write(np.ascontiguousarray(given, dtype=bool).tobytes())
        self.rows += len(events)

    def finish(self, out_dir: Path, split: str) -> tuple[dict, int]:
        """Write the split's .npy arrays into `out_dir`; returns its counts for meta.json and the duplicates dropped."""
        for handle in self.files.values():
            handle.close()
        raw = {name: self._open(name) for name in self.files}
        keep = self._first_occurrences(raw["events"])
        kept = int(keep.sum())
        events_path, meters_path, sources_path = split_paths(out_dir, split)
        targets = [("events", events_path, (kept, self.steps)), ("meters", meters_path, (kept, 2)),
                   ("sources", sources_path, (kept,))]
        if self.chords:
            targets.append(("chords", chords_path(out_dir, split), (kept, self.steps)))
        meter_counts: Counter = Counter()
        given = 0
        step = max(1, CHUNK_BYTES // self.steps)
        if kept == 0:  # np.save writes what a zero-length memory map cannot
            save_split(out_dir, split, np.zeros((0, self.steps), np.int8), np.zeros((0, 2), np.int8),
                       np.zeros(0, np.int32), np.zeros((0, self.steps), np.uint8) if self.chords else None)
        else:
            outputs = {name: np.lib.format.open_memmap(path, mode="w+", dtype=raw[name].dtype, shape=shape)
                       for name, path, shape in targets}
            at = 0
            for begin in range(0, self.rows, step):
                rows = keep[begin : begin + step]
                n = int(rows.sum())
                for name, out in outputs.items():
                    out[at : at + n] = raw[name][begin : begin + step][rows]
                meters = raw["meters"][begin : begin + step][rows]
                pairs, counts = np.unique(meters, axis=0, return_counts=True) if n else ((), ())
                meter_counts.update({f"{num}/{den}": int(c) for (num, den), c in zip(pairs, counts, strict=True)})
                if self.chords:
                    given += int(raw["given"][begin : begin + step][rows].sum())
                at += n
            for out in outputs.values():
                out.flush()
            del outputs
        for path in self.parts.values():
            path.unlink(missing_ok=True)
        counts = {"windows": kept, "meters": dict(sorted(meter_counts.items()))}
        if self.chords:
            counts["chord_sources"] = {"abc": given, "inferred": kept - given}
        return counts, self.rows - kept

    def _open(self, name: str) -> np.ndarray:
        dtype, width = {"events": (np.int8, self.steps), "meters": (np.int8, 2), "sources": (np.int32, None),
                        "chords": (np.uint8, self.steps), "given": (bool, None)}[name]
        shape = (self.rows, width) if width else (self.rows,)
        if self.rows == 0:
            return np.zeros(shape, dtype=dtype)
        return np.memmap(self.parts[name], dtype=dtype, mode="r", shape=shape)

    def _first_occurrences(self, events: np.ndarray) -> np.ndarray:
        """Mask of the rows no earlier row equals, bucket by bucket."""
        keep = np.zeros(self.rows, dtype=bool)
        n_buckets = max(1, -(-self.rows * self.steps // BUCKET_BYTES))
        bucket = np.zeros(self.rows, dtype=np.uint16)
        if n_buckets > 1:
            step = max(1, CHUNK_BYTES // 8 // self.steps)  # hashed as uint64
            for begin in range(0, self.rows, step):
                chunk = events[begin : begin + step].astype(np.uint64)
                bucket[begin : begin + step] = (chunk * _MIX[: self.steps]).sum(axis=1) % np.uint64(n_buckets)
        row = np.dtype((np.void, self.steps))
        for b in range(n_buckets):
            members = np.flatnonzero(bucket == b) if n_buckets > 1 else np.arange(self.rows)
            if members.size:
                view = np.ascontiguousarray(events[members]).view(row).ravel()
                _, first = np.unique(view, return_index=True)
                keep[members[first]] = True
        return keep
