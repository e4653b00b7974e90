"""The folk tunes inside music21 as ABC text: its collections, each .abc file cut into tunes, their file names.

Nothing is downloaded: the ABC files come from the installed `music21` package. Each .abc file is
split into tunes here, so one tune music21 cannot parse is skipped and counted, not its whole book.
Only the file system is read here; music21 itself is imported only to find its folder.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

# CLI name -> music21 corpus folder; the folder name is also the output subfolder.
COLLECTIONS: dict[str, str] = {
    "essen": "essenFolksong",
    "oneills": "oneills1850",
    "ryans": "ryansMammoth",
    "airds": "airdsAirs",
    "misc": "miscFolk",
}
_REPEAT_MARK = re.compile(r"\|:|:\||::|\[\d|\|\d")  # |: :| :: and first/second endings [1 |2


@dataclass(frozen=True)
class AbcTune:
    """One tune cut out of an .abc file, with the file's header lines carried in front of it."""

    collection: str  # music21 folder, e.g. "oneills1850"
    source: str  # e.g. "oneills1850/0001-0050.abc"
    number: int  # 1-based position of the tune within its collection: stable, names the output file
    reference: str  # the X: field
    title: str
    meter: str  # the M: field as written ("6/8", "C|", "none", "" if absent)
    key: str  # the K: field as written
    text: str


def music21_corpus_dir() -> Path:
    """The corpus folder inside the installed music21 package (never downloads)."""
    try:
        import music21
    except ImportError:
        raise FileNotFoundError(
            "music21 is not installed, and the folk tunes ship inside it: pip install 'seqvae[corpus]'"
        ) from None
    path = Path(music21.__file__).parent / "corpus"
    if not path.is_dir():
        raise FileNotFoundError(f"music21 is installed without its corpus folder ({path}); reinstall music21")
    return path


def _field(lines: list[str], name: str) -> str:
    for line in lines:
        if line.startswith(f"{name}:"):
            return line[2:].split("%")[0].strip()
    return ""


def split_abc_tunes(text: str, source: str, collection: str, first_number: int = 1) -> list[AbcTune]:
    """Cut an .abc file into tunes at its `X:` lines; lines before the first tune are the file header."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("X:")]
    if not starts:
        return []
    header = [line for line in lines[: starts[0]] if line.strip()]
    tunes = []
    for n, (begin, end) in enumerate(zip(starts, starts[1:] + [len(lines)], strict=True)):
        body = lines[begin:end]
        head = body[:1] + header + body[1:]  # file-level fields apply to every tune: keep them inside it
        tunes.append(AbcTune(
            collection=collection,
            source=source,
            number=first_number + n,
            reference=body[0][2:].strip(),
            title=_field(body, "T") or "untitled",
            meter=_field(body, "M"),
            key=_field(body, "K"),
            text="\n".join(head).strip() + "\n",
        ))
    return tunes


def has_repeats(text: str) -> bool:
    """Whether a tune's body holds repeat marks (so music21's costly expansion is worth a try)."""
    body = text.split("\nK:", 1)[-1].split("\n", 1)[-1]
    return bool(_REPEAT_MARK.search(body))


def find_folk_tunes(collections: list[str] | None = None, corpus_dir: Path | None = None) -> list[AbcTune]:
    """Every tune of the chosen collections (CLI names, default all), in a stable order."""
    names = list(collections) if collections else list(COLLECTIONS)
    unknown = [n for n in names if n not in COLLECTIONS]
    if unknown:
        raise ValueError(f"unknown folk collection {', '.join(unknown)}: choose from {', '.join(COLLECTIONS)}")
    root = corpus_dir or music21_corpus_dir()
    tunes: list[AbcTune] = []
    for name in dict.fromkeys(names):
        folder = COLLECTIONS[name]
        files = sorted((root / folder).glob("*.abc"), key=lambda p: p.name)
        if not files:
            raise FileNotFoundError(f"no .abc files in {root / folder}: is this music21 install complete?")
        number = 1
        for path in files:
            found = split_abc_tunes(path.read_text(encoding="utf-8", errors="replace"), f"{folder}/{path.name}",
                                    folder, number)
            tunes.extend(found)
            number += len(found)
    return tunes


def slug(title: str, max_length: int = 60) -> str:
    """A file-name-safe form of a title: 'The Kesh Jig' -> 'the-kesh-jig'."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return text[:max_length].rstrip("-") or "untitled"


def tune_file_name(tune: AbcTune, width: int = 4) -> str:
    """Collection folder, number (unique within it) and title: 'oneills1850/0123_the-kesh-jig.mid'."""
    return f"{tune.collection}/{tune.number:0{width}d}_{slug(tune.title)}.mid"
