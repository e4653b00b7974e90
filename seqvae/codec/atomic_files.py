"""Files that appear whole or not at all: written to a temporary file beside the target, flushed to disk, then put
in place in one step. A crash mid-write never leaves half a file under the name, nor costs the file that was there.
The lowest layer, so checkpoints, training state and a musician's MIDI takes all write this way."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

MAX_NUMBERED = 10000  # take-2.mid ... take-10000.mid, then an error


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`data` at `path`, replacing what was there: readers see the old file or the new one, never half."""
    path = Path(path)
    tmp = _finished_temp(path, data)
    try:
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(path.parent)


def write_new_bytes(path: Path, data: bytes) -> Path:
    """`data` at `path`, or, when that name is taken, at the first free one of path-2, path-3, ... (a take never
    replaces an earlier one, even with two writers at once); returns the path written."""
    path = Path(path)
    tmp = _finished_temp(path, data)
    try:
        for n in range(1, MAX_NUMBERED + 1):
            target = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
            if _publish_new(tmp, target):
                _fsync_dir(path.parent)
                return target
        raise FileExistsError(f"{path} and {MAX_NUMBERED - 1} numbered versions of it exist: pick another name")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _finished_temp(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file should be readable like any other
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _publish_new(tmp: str, target: Path) -> bool:
    """Put the finished file `tmp` at `target` unless something is there already (then False), atomically."""
    try:
        os.link(tmp, target)  # fails on an existing name, so two writers can't both take it
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this filesystem: reserve the name, then move over the reservation
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        os.replace(tmp, target)
        return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
