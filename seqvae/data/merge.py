"""Built corpora -> one corpus: the shards of a build spread over processes or machines, joined.

Windows are laid out file by file in the order of their source paths (the order a build walks
MIDI_DIR), then repeated windows are dropped split by split, so merging every shard of
`data build --shard I/N` gives the arrays one build of all the files gives, byte for byte.
A file's split comes from its tune alone, so shards agree on splits without talking. (A corpus keeps
no per-window note of where its chords came from, so a merged --chords corpus counts chord sources as
its inputs did: a window dropped as a repeat of another input's is still counted there.)
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from seqvae.data.build import BuildResult, chords_meta
from seqvae.data.corpus import SPLITS, check_out_dir, load_corpus, publish, save_index
from seqvae.data.window_store import SplitWriter

SAME_META = ("format", "steps", "family", "codec")  # what every corpus merged must agree on, with settings


def merge_corpora(inputs: list[str | Path], out_dir: str | Path, force: bool = False) -> BuildResult:
    """Merge built corpora with disjoint source files into `out_dir`."""
    out_dir = Path(out_dir)
    if len(inputs) < 2:
        raise ValueError("merge needs two or more built corpora, e.g. the shards of `data build --shard I/N`")
    corpora = [load_corpus(p) for p in inputs]
    if any(c.path.resolve() == out_dir.resolve() for c in corpora):
        raise ValueError(f"--out {out_dir} is one of the corpora merged; choose a new folder")
    first = corpora[0]
    chords = "chords" in first.meta
    for corpus in corpora[1:]:
        for key in SAME_META + ("settings",):
            mine, theirs = _comparable(first.meta, key), _comparable(corpus.meta, key)
            if mine != theirs:
                raise ValueError(f"{corpus.path} was built with {key} {theirs}, {first.path} with {mine}: "
                                 "merge corpora built with the same options")
        if ("chords" in corpus.meta) != chords:
            raise ValueError(f"{first.path} and {corpus.path} differ in --chords: build both with it or both without")
    check_out_dir(out_dir, force)
    started = time.perf_counter()
    owners: dict[str, tuple[int, int]] = {}  # source path -> (corpus, its index there)
    for k, corpus in enumerate(corpora):
        for i, source in enumerate(corpus.sources):
            if source in owners:
                raise ValueError(f"{source} is in both {corpora[owners[source][0]].path} and {corpus.path}: "
                                 "merge corpora of different files (the shards of one build)")
            owners[source] = (k, i)
    order = sorted(owners)
    tmp = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dropped = Counter()
    for corpus in corpora:
        dropped.update(corpus.meta.get("windows_dropped", {}))
    counts = {}
    for split in SPLITS:
        parts = [corpus.split(split) for corpus in corpora]
        ranges = [_file_ranges(part.sources, len(corpus.sources)) for part, corpus in zip(parts, corpora, strict=True)]
        writer = SplitWriter(tmp, split, first.steps, chords)
        for new_index, source in enumerate(order):
            k, i = owners[source]
            begin, end = ranges[k][0][i], ranges[k][1][i]
            if end > begin:
                part = parts[k]
                writer.append(part.events[begin:end], part.meters[begin:end], np.full(end - begin, new_index),
                              part.chords[begin:end] if chords else None,
                              np.zeros(end - begin, dtype=bool) if chords else None)
        counts[split], duplicates = writer.finish(tmp, split)
        if chords:
            given = min(counts[split]["windows"], sum(c.meta["splits"][split]["chord_sources"]["abc"] for c in corpora))
            counts[split]["chord_sources"] = {"abc": given, "inferred": counts[split]["windows"] - given}
        if writer.rows:
            dropped["duplicate"] += duplicates
        counts[split]["files"] = sum(c.meta["splits"][split]["files"] for c in corpora)
    skipped = Counter()
    for corpus in corpora:
        skipped.update(corpus.meta["files"]["skipped"])
    found = sum(c.meta["files"]["found"] for c in corpora)
    seconds = time.perf_counter() - started
    settings = dict(first.meta["settings"])
    sources_dirs = sorted({str(c.meta["settings"]["source"]) for c in corpora})
    settings["source"] = sources_dirs[0] if len(sources_dirs) == 1 else sources_dirs
    meta = {key: first.meta[key] for key in SAME_META}
    meta.update({
        "settings": settings,
        "files": {"found": found, "used": len(order), "skipped": dict(sorted(skipped.items()))},
        "splits": counts,
        "windows_dropped": dict(sorted(dropped.items())),
        "build_seconds": round(seconds, 2),
        "merged_from": [{"path": str(c.path), "shard": c.meta.get("shard"),
                         "build_seconds": c.meta.get("build_seconds")} for c in corpora],
    })
    if chords:
        meta["chords"] = chords_meta(counts)
    save_index(tmp, meta, order)
    publish(tmp, out_dir)
    return BuildResult(out_dir, found, len(order), {s: counts[s]["windows"] for s in SPLITS}, dict(skipped),
                       dict(dropped), seconds, meta)


def _comparable(meta: dict, key: str):
    """A meta entry as merging compares it: settings without the folder the files came from."""
    value = meta.get(key)
    if key == "settings" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "source"}
    return value


def _file_ranges(sources: np.ndarray, n_files: int) -> tuple[np.ndarray, np.ndarray]:
    """Per source index, the [begin, end) rows of a split holding its windows (a build writes them in order)."""
    files = np.arange(n_files)
    return np.searchsorted(sources, files, "left"), np.searchsorted(sources, files, "right")
