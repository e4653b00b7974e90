"""The chord of every step of a corpus window: the file's own chord symbols where it has them, else inferred.

Chord symbols come from the MIDI file's chord text events (an ABC tune's "Am" in quotes, see
codec.midi); each one holds until the next. A window that sees a symbol of its file takes the written
chords, N.C. before the file's first symbol included (a pickup bar has no harmony yet); every other window
gets chords inferred from its own melody (data.chord_inference).
"""

from __future__ import annotations

import numpy as np

from seqvae.codec.chords import NO_CHORD, parse_chord
from seqvae.codec.events import EventCodec
from seqvae.data.chord_inference import infer_corpus_chords

CHORD_SOURCES = ("abc", "inferred")  # meta.json counts windows under these names


def chords_per_step(symbols: list[tuple[int, str]], n_steps: int) -> np.ndarray:
    """(step, symbol) changes -> uint8 chord class for each of n_steps; symbols parse_chord cannot read are ignored."""
    out = np.full(n_steps, NO_CHORD, dtype=np.uint8)
    changes = []
    for step, symbol in symbols:
        try:
            changes.append((max(int(step), 0), parse_chord(symbol)))
        except ValueError:
            continue
    for i, (step, cls) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else n_steps
        out[step:until] = cls
    return out


def fill_inferred(windows: np.ndarray, meters: np.ndarray, chords: np.ndarray, given: np.ndarray,
                  codec: EventCodec | None = None) -> np.ndarray:
    """Windows' chords with every window that has no written chords (`given` False) inferred from its melody."""
    out = np.array(chords, dtype=np.uint8, copy=True)
    todo = np.flatnonzero(~np.asarray(given, dtype=bool))
    if len(todo):
        out[todo] = infer_corpus_chords(windows[todo], meters[todo], codec)
    return out
