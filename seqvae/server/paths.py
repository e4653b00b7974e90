"""Where OSC clients may write and read files: inside the export directory only.

Any client on the allow-list can ask for an export, so a file name is a relative path below the
export directory: no absolute paths, no '..', no backslashes, and no symlink that leads out.
"""

from __future__ import annotations

import os
from pathlib import Path

from seqvae.codec.midi import WRITTEN_SUFFIXES
from seqvae.server.params import RequestError

MAX_NAME = 200
MAX_MIDI_BYTES = 4 * 1024 * 1024


def export_path(export_dir: Path, filename: str) -> Path:
    """The file `filename` names inside `export_dir` ('.mid' added when missing), or RequestError."""
    if not isinstance(filename, str) or not filename.strip():
        raise RequestError("filename is empty: send a name like 'take1.mid'")
    if len(filename) > MAX_NAME:
        raise RequestError(f"filename is {len(filename)} characters long: keep it under {MAX_NAME}")
    if "\x00" in filename or any(ord(ch) < 32 for ch in filename):
        raise RequestError("filename has control characters: send a plain name like 'take1.mid'")
    if "\\" in filename:
        raise RequestError(f"filename {filename!r} has a backslash: use '/' between folders, e.g. 'set1/take1.mid'")
    if filename.startswith("/") or filename.startswith("~") or (len(filename) > 1 and filename[1] == ":"):
        raise RequestError(
            f"filename {filename!r} is absolute: send a name relative to the export directory, e.g. 'take1.mid'"
        )
    parts = filename.split("/")
    if any(part == ".." for part in parts):
        raise RequestError(f"filename {filename!r} climbs out with '..': send a name inside the export directory")
    if any(part in ("", ".") for part in parts):
        raise RequestError(f"filename {filename!r} has an empty or '.' folder: send e.g. 'set1/take1.mid'")
    if not filename.lower().endswith(WRITTEN_SUFFIXES):
        filename += ".mid"
    root = Path(export_dir).resolve()
    target = (root / filename).resolve()
    if root != target and root not in target.parents:
        raise RequestError(f"filename {filename!r} leads outside the export directory (through a link)")
    if target.is_dir():
        raise RequestError(f"{filename!r} is a folder in the export directory: send a file name")
    return target


def midi_input_path(export_dir: Path, path: str, allow_absolute: bool) -> Path:
    """A MIDI file to read: relative to the export directory, absolute only for loopback clients."""
    if not isinstance(path, str) or not path.strip():
        raise RequestError("path is empty: send the path of a .mid file")
    if "\x00" in path:
        raise RequestError("path has a zero byte: send the path of a .mid file")
    candidate = Path(os.path.expanduser(path)) if path.startswith("~") else Path(path)
    if candidate.is_absolute():
        if not allow_absolute:
            raise RequestError(
                "absolute paths are only read for clients on this machine: "
                "send a path relative to the export directory"
            )
        resolved = candidate.resolve()
    else:
        root = Path(export_dir).resolve()
        resolved = (root / candidate).resolve()
        if not allow_absolute and root != resolved and root not in resolved.parents:
            raise RequestError(f"path {path!r} leads outside the export directory")
    if not resolved.exists():
        raise RequestError(f"no file at {str(resolved)!r}: send the path of an existing .mid file")
    if not resolved.is_file():
        raise RequestError(f"{str(resolved)!r} is not a file: send the path of a .mid file")
    size = resolved.stat().st_size
    if size > MAX_MIDI_BYTES:
        raise RequestError(
            f"{resolved.name} is {size / 1e6:.1f} MB, over the {MAX_MIDI_BYTES // (1024 * 1024)} MB limit for "
            "a melody file: send a shorter file"
        )
    return resolved


def new_export_folder(export_dir: Path, name: str) -> Path:
    """A folder still to be made, `name` directly inside `export_dir` (a saved model), or RequestError; a name
    already taken is refused, never reused."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or name[0] in ".-" \
            or not all(ch.isalnum() or ch in "_.-" for ch in name):
        raise RequestError(f"name {name!r} is not a plain folder name: send letters, digits, '_', '-' or '.', "
                           "e.g. 'my_style'")
    target = Path(export_dir).resolve() / name
    if os.path.lexists(target):
        raise RequestError(f"{name!r} already exists in the export directory and is never overwritten: send another "
                           "name")
    return target
