"""A morph knob's positions decoded ahead: the knob then answers without waiting for the model.

A morph is deterministic (greedy) and a knob sweeps one pair of slots back and forth, so KNOB_RUN morphs in a row
of one pair (under the client's key, range, chords and model: a knob turning, not one-offs or a patch hopping
between pairs) queue one heavy job that decodes all RESOLUTION + 1 positions in one batch; from then on a morph
of that pair is a lookup on the receiving loop, however busy the model is with other performers' work. A client
has at most one table being decoded, and a table evicted before its job runs is skipped, so one-off morphs of
fresh pairs cost nothing.
Every morph, looked up or decoded, is resolved to the same grid of 1/RESOLUTION (twice a MIDI controller's 128
steps), so a position gives the same melody before and after its table is there.
Tables match on the endpoints' latents by value: refilling a slot makes a new table.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

RESOLUTION = 256  # grid steps of t in [0, 1]
TABLES_PER_CLIENT = 2  # pairs a client's knobs keep decoded; the least recently used goes first
KNOB_RUN = 4  # morphs in a row of one pair that make it a knob worth a table (a table costs 257 rows of decoding)
# Rows per model call of a table's decode: a knob still decoding waits at most for a short decode's worth (the fast
# lane's 4 rows), and the table is ready 2.5x sooner than in the heavy lane's 1-row pieces (0.31 s against 0.78 s
# for the default model on one core), so the knob stops needing the model within a second of turning.
TABLE_PIECE_ROWS = 4


def grid_position(t: float) -> tuple[int, float]:
    """The grid index of morph amount t (0-1) and the amount it stands for."""
    index = int(round(float(t) * RESOLUTION))
    return index, index / RESOLUTION


def grid_amounts() -> np.ndarray:
    return np.arange(RESOLUTION + 1, dtype=np.float64) / RESOLUTION


@dataclass
class MorphTable:
    za: np.ndarray
    zb: np.ndarray
    signature: Hashable  # what else decides the melodies: the client's model, key, range and chords
    melodies: list | None = None  # one per grid position, None while its job runs
    evicted: bool = False  # read by its job before it decodes

    def matches(self, za: np.ndarray, zb: np.ndarray, signature: Hashable) -> bool:
        return signature == self.signature and np.array_equal(za, self.za) and np.array_equal(zb, self.zb)


class MorphTables:
    """One client's tables, most recently used last."""

    def __init__(self, limit: int = TABLES_PER_CLIENT) -> None:
        self.limit = limit
        self._tables: OrderedDict[int, MorphTable] = OrderedDict()
        self._next = 0
        self._run: MorphTable | None = None  # the pair of the last morphs that found no table, and how many
        self._run_length = 0

    def find(self, za: np.ndarray, zb: np.ndarray, signature: Hashable) -> MorphTable | None:
        for key, table in self._tables.items():
            if table.matches(za, zb, signature):
                self._tables.move_to_end(key)
                return table
        return None

    def wants(self, za: np.ndarray, zb: np.ndarray, signature: Hashable) -> bool:
        """Called for a morph that found no table: True once KNOB_RUN such morphs in a row were of this pair (a knob
        turning; 8 slots morphed at random hardly ever make a run, so they never churn tables) and no other table
        is being decoded."""
        if self._run is not None and self._run.matches(za, zb, signature):
            self._run_length += 1
        else:
            self._run, self._run_length = MorphTable(np.array(za, copy=True), np.array(zb, copy=True), signature), 1
        return self._run_length >= KNOB_RUN and all(table.melodies is not None for table in self._tables.values())

    def begin(self, za: np.ndarray, zb: np.ndarray, signature: Hashable) -> tuple[int, MorphTable]:
        """Register a table whose melodies are still to come; returns its key for `fill` or `drop`."""
        key, self._next = self._next, self._next + 1
        self._tables[key] = MorphTable(np.array(za, copy=True), np.array(zb, copy=True), signature)
        while len(self._tables) > self.limit:
            self._tables.popitem(last=False)[1].evicted = True
        self._run, self._run_length = None, 0
        return key, self._tables[key]

    def fill(self, key: int, melodies: list) -> None:
        table = self._tables.get(key)
        if table is not None:
            table.melodies = melodies

    def drop(self, key: int) -> None:
        table = self._tables.pop(key, None)
        if table is not None:
            table.evicted = True

    def __len__(self) -> int:
        return len(self._tables)

    def filled(self) -> int:
        """How many tables are ready to answer."""
        return sum(table.melodies is not None for table in self._tables.values())
