"""One split's windows appended to disk as files finish, then deduplicated into the corpus arrays.

A build of 176k files never holds its windows in memory: each file's rows go straight to raw files
(events, meters, sources, and chords with their given flags). Finishing drops repeated windows with
memory bounded by a bucket, not the corpus: rows are hashed into at most MAX_BUCKETS bucket files on
disk (equal rows always share one), each bucket is deduplicated alone, and what stays in memory for
the whole split is one bit a window (kept or not). Reads and writes go chunk by chunk through plain
file I/O, not memory maps, so no page of the corpus stays resident. The result is what `unique_rows`
over everything at once gives: first occurrences, in build order, in the files np.save writes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from seqvae.data.corpus import chords_path, split_paths

BUCKET_BYTES = 4 << 20  # window bytes deduplicated together, until MAX_BUCKETS makes buckets bigger
MAX_BUCKETS = 256  # bucket files open at once
CHUNK_BYTES = 1 << 20  # window bytes read or written at a time
_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.int64)
_MIX = np.random.default_rng(0x5E9).integers(1, 2**63, size=256, dtype=np.uint64) | np.uint64(1)


class SplitWriter:
    """Append-as-you-go storage of one split under `scratch`, finished into the corpus layout."""

    def __init__(self, scratch: Path, split: str, steps: int, chords: bool) -> None:
        self.scratch, self.split, self.steps, self.chords, self.rows = scratch, split, steps, chords, 0
        self.layout = {"events": (np.int8, steps), "meters": (np.int8, 2), "sources": (np.int32, 1)}
        if chords:
            self.layout.update({"chords": (np.uint8, steps), "given": (np.bool_, 1)})
        self.parts = {name: scratch / f"{split}.{name}.raw" for name in self.layout}
        self.files = {name: path.open("wb") for name, path in self.parts.items()}

    def append(self, events: np.ndarray, meters: np.ndarray, sources: np.ndarray,
               chords: np.ndarray | None = None, given: np.ndarray | None = None) -> None:
        columns = {"events": events, "meters": meters, "sources": sources, "chords": chords, "given": given}
        for name, (dtype, _) in self.layout.items():
            self.files[name].write(np.ascontiguousarray(columns[name], dtype=dtype).tobytes())
        self.rows += len(events)

    def finish(self, out_dir: Path, split: str) -> tuple[dict, int]:
        """Write the split's .npy arrays into `out_dir`; returns its counts for meta.json and the duplicates dropped."""
        for handle in self.files.values():
            handle.close()
        keep = self._first_occurrences()
        kept = sum(int(_POPCOUNT[keep[at : at + CHUNK_BYTES]].sum()) for at in range(0, len(keep), CHUNK_BYTES))
        events_path, meters_path, sources_path = split_paths(out_dir, split)
        targets = {"events": events_path, "meters": meters_path, "sources": sources_path}
        if self.chords:
            targets["chords"] = chords_path(out_dir, split)
        outputs = {name: path.open("wb") for name, path in targets.items()}
        for name, out in outputs.items():
            dtype, width = self.layout[name]
            shape = (kept, width) if name != "sources" else (kept,)
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(out, header)  # what np.save writes first
        meter_counts: Counter = Counter()
        given = 0
        step = self._chunk_rows()
        for begin in range(0, self.rows, step):
            count = min(step, self.rows - begin)
            rows = np.unpackbits(keep[begin // 8 : -(-(begin + count) // 8)], count=count).astype(bool)
            chunk = {name: self._read(name, begin, count)[rows] for name in self.layout}
            for name, out in outputs.items():
                out.write(chunk[name].tobytes())
            pairs, counts = np.unique(chunk["meters"], axis=0, return_counts=True)
            meter_counts.update({f"{num}/{den}": int(c) for (num, den), c in zip(pairs, counts, strict=True)})
            if self.chords:
                given += int(chunk["given"].sum())
        for out in outputs.values():
            out.close()
        for path in self.parts.values():
            path.unlink(missing_ok=True)
        counts = {"windows": kept, "meters": dict(sorted(meter_counts.items()))}
        if self.chords:
            counts["chord_sources"] = {"abc": given, "inferred": kept - given}
        return counts, self.rows - kept

    def _chunk_rows(self) -> int:
        """Rows a chunk holds: a multiple of 8, so a chunk starts on a byte of the keep mask."""
        return max(8, CHUNK_BYTES // self.steps // 8 * 8)

    def _read(self, name: str, begin: int, count: int) -> np.ndarray:
        """Rows [begin, begin + count) of one raw file, read (not mapped)."""
        dtype, width = self.layout[name]
        with self.parts[name].open("rb") as handle:
            handle.seek(begin * width * np.dtype(dtype).itemsize)
            flat = np.fromfile(handle, dtype=dtype, count=count * width)
        return flat.reshape(-1, width) if width > 1 else flat

    def _first_occurrences(self) -> np.ndarray:
        """Bit mask (np.packbits) of the rows no earlier row equals, bucket by bucket."""
        keep = np.zeros(self.rows, dtype=bool)
        n_buckets = min(MAX_BUCKETS, max(1, -(-self.rows * self.steps // BUCKET_BYTES)))
        row = np.dtype((np.void, self.steps))
        if n_buckets == 1:  # the whole split fits one bucket
            events = self._read("events", 0, self.rows)
            keep[np.unique(np.ascontiguousarray(events).view(row).ravel(), return_index=True)[1]] = True
            return np.packbits(keep)
        del keep
        paths = [self.scratch / f"{self.split}.bucket{b}.raw" for b in range(n_buckets)]
        handles = [path.open("wb") for path in paths]
        record = np.dtype([("index", np.int64), ("row", row)])
        step = self._chunk_rows()
        for begin in range(0, self.rows, step):
            events = self._read("events", begin, min(step, self.rows - begin))
            bucket = (events.astype(np.uint64) * _MIX[: self.steps]).sum(axis=1) % np.uint64(n_buckets)
            records = np.empty(len(events), dtype=record)
            records["index"] = np.arange(begin, begin + len(events))
            records["row"] = np.ascontiguousarray(events).view(row).ravel()
            order = np.argsort(bucket, kind="stable")
            bounds = np.concatenate([[0], np.cumsum(np.bincount(bucket.astype(np.int64), minlength=n_buckets))])
            records = records[order]
            for b in np.flatnonzero(np.diff(bounds)):
                handles[b].write(records[bounds[b] : bounds[b + 1]].tobytes())
        for handle in handles:
            handle.close()
        bits = np.zeros(-(-self.rows // 8), dtype=np.uint8)
        for path in paths:
            records = np.fromfile(path, dtype=record)
            path.unlink()
            if len(records):
                first = records["index"][np.unique(records["row"], return_index=True)[1]]
                np.bitwise_or.at(bits, first // 8, (np.uint8(0x80) >> (first % 8).astype(np.uint8)))
        return bits
