"""`seqvae data folk`: every chosen music21 folk tune -> OUT_DIR/<collection>/<nnnn>_<title>.mid + folk_index.json.

Tunes are converted in parallel, each under a time limit, and every tune's fate is counted in the
index: one tune music21 cannot parse, or chews on too long, is skipped, never the corpus.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from seqvae.data.abc_to_midi import BPM, TuneSkipped, convert_abc_text
from seqvae.data.abc_tunes import COLLECTIONS, AbcTune, find_folk_tunes, tune_file_name

INDEX_NAME = "folk_index.json"
TUNE_TIMEOUT_S = 60  # a tune music21 chews on longer than this is skipped, not waited for


@dataclass
class FolkResult:
    out_dir: Path
    tunes: int
    converted: int
    skipped: dict[str, int]
    seconds: float
    index_path: Path
    with_chord_symbols: int = 0  # converted tunes whose ABC holds chord symbols ("Am" in quotes)

    @property
    def tunes_per_second(self) -> float:
        return self.tunes / self.seconds if self.seconds > 0 else float("inf")


def _timeout(_signum, _frame):
    raise TimeoutError


def _convert_job(job: tuple[int, AbcTune, str, str]) -> tuple[int, dict]:
    index, tune, out_dir, file_name = job
    entry = {"title": tune.title, "collection": tune.collection, "source": tune.source, "x": tune.reference,
             "meter": tune.meter, "key": tune.key}
    alarm = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if alarm:
        signal.signal(signal.SIGALRM, _timeout)
        signal.alarm(TUNE_TIMEOUT_S)
    try:
        facts = convert_abc_text(tune.text, Path(out_dir) / file_name, name=tune.title)
        entry = {"file": file_name, **entry, **facts}
    except TuneSkipped as skip:
        entry["skipped"] = skip.reason
        entry["detail"] = str(skip)[:300]
    except TimeoutError:
        entry["skipped"] = "timeout"
    except Exception as exc:  # noqa: BLE001 - one odd tune never stops the corpus
        entry["skipped"] = f"error:{type(exc).__name__}"
        entry["detail"] = str(exc)[:300]
    finally:
        if alarm:
            signal.alarm(0)
    return index, entry


def sample_evenly(tunes: list[AbcTune], limit: int | None) -> list[AbcTune]:
    """`limit` tunes spread evenly over the list (so a quick run still sees every collection)."""
    if limit is None or limit >= len(tunes):
        return tunes
    if limit < 1:
        raise ValueError(f"--limit {limit} converts nothing: send a positive number of tunes")
    return [tunes[i * len(tunes) // limit] for i in range(limit)]


def _prepare_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a folder; choose another OUT_DIR")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        out_dir.mkdir(parents=True, exist_ok=True)
        return
    if not (out_dir / INDEX_NAME).exists():
        raise FileExistsError(f"{out_dir} holds files that are not a folk conversion; choose an empty or new OUT_DIR")
    if not force:
        raise FileExistsError(f"{out_dir} already holds a folk conversion; pass --force to convert again")
    for folder in COLLECTIONS.values():
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    (out_dir / INDEX_NAME).unlink()


def convert_folk(
    out_dir: str | Path,
    collections: list[str] | None = None,
    workers: int | None = None,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> FolkResult:
    """Convert the music21 folk collections into OUT_DIR/<collection>/<nnnn>_<title>.mid + folk_index.json."""
    out_dir = Path(out_dir)
    tunes = sample_evenly(find_folk_tunes(collections), limit)
    workers = max(1, workers or os.cpu_count() or 1)
    _prepare_out_dir(out_dir, force)
    widths = Counter()
    for tune in tunes:
        widths[tune.collection] = max(widths[tune.collection], len(str(tune.number)))
    jobs = [(i, t, str(out_dir), tune_file_name(t, max(4, widths[t.collection]))) for i, t in enumerate(tunes)]
    started = time.perf_counter()
    entries: list[dict | None] = [None] * len(jobs)
    with tqdm(total=len(jobs), desc="folk", unit="tune", disable=not progress) as bar:
        for index, entry in _run(jobs, workers):
            entries[index] = entry
            bar.update(1)
    seconds = time.perf_counter() - started
    done = [e for e in entries if e is not None]
    skipped = Counter(e["skipped"] for e in done if "skipped" in e)
    converted = [e for e in done if "file" in e]
    per_collection = {
        name: {"converted": sum(e["collection"] == name for e in converted),
               "skipped": sum(e["collection"] == name and "skipped" in e for e in done)}
        for name in dict.fromkeys(t.collection for t in tunes)
    }
    index = {
        "source": "music21 corpus (installed package, nothing downloaded)",
        "bpm": BPM,
        "counts": {
            "tunes": len(tunes),
            "converted": len(converted),
            "skipped": dict(sorted(skipped.items())),
            "repeats": dict(sorted(Counter(e["repeats"] for e in converted).items())),
            "with_chord_symbols": (chorded := sum(e["chord_symbols"] > 0 for e in converted)),
            "per_collection": per_collection,
        },
        "seconds": round(seconds, 1),
        "tunes": converted,
        "skipped_tunes": [e for e in done if "skipped" in e],
    }
    index_path = out_dir / INDEX_NAME
    index_path.write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return FolkResult(out_dir, len(tunes), len(converted), dict(skipped), seconds, index_path, chorded)


def _run(jobs: list, workers: int):
    if workers == 1 or len(jobs) < 4:
        yield from map(_convert_job, jobs)
        return
    with get_context("fork" if os.name != "nt" else "spawn").Pool(workers, maxtasksperchild=500) as pool:
        yield from pool.imap_unordered(_convert_job, jobs, chunksize=8)
