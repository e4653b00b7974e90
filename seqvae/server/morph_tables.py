"""A morph knob's positions decoded ahead: the knob then answers without waiting for the model.

A morph is deterministic (greedy) and a knob sweeps one pair of slots back and forth, so the first morph of a
pair (under the client's key, range, chords and model) queues one heavy job that decodes all RESOLUTION + 1
positions in one batch; from then on a morph of that pair is a lookup on the receiving loop, however busy
the model is with other performers' work. Every morph, looked up or decoded, is resolved to the same grid of
1/RESOLUTION (twice a MIDI controller's 128 steps), so a position gives the same melody before and after its
table is there. Tables match on the endpoints' latents by value: refilling a slot makes a new table.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

RESOLUTION = 256  # grid steps of t in [0, 1]
TABLES_PER_CLIENT = 2  # pairs a client's knobs keep decoded; the least recently used goes first


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

    def matches(self, za: np.ndarray, zb: np.ndarray, signature: Hashable) -> bool:
        return signature == self.signature and np.array_equal(za, self.za) and np.array_equal(zb, self.zb)


class MorphTables:
    """One client's tables, most recently used last."""

    def __init__(self, limit: int = TABLES_PER_CLIENT) -> None:
        self.limit = limit
        self._tables: OrderedDict[int, MorphTable] = OrderedDict()
        self._next = 0

    def find(self, za: np.ndarray, zb: np.ndarray, signature: Hashable) -> MorphTable | None:
        for key, table in self._tables.items():
            if table.matches(za, zb, signature):
                self._tables.move_to_end(key)
                return table
        return None

    def begin(self, za: np.ndarray, zb: np.ndarray, signature: Hashable) -> tuple[int, MorphTable]:
        """Register a table whose melodies are still to come; returns its key for `fill` or `drop`."""
        key, self._next = self._next, self._next + 1
        self._tables[key] = MorphTable(np.array(za, copy=True), np.array(zb, copy=True), signature)
        while len(self._tables) > self.limit:
            self._tables.popitem(last=False)
        return key, self._tables[key]

    def fill(self, key: int, melodies: list) -> None:
        table = self._tables.get(key)
        if table is not None:
            table.melodies = melodies

    def drop(self, key: int) -> None:
        self._tables.pop(key, None)

    def __len__(self) -> int:
        return len(self._tables)

    def filled(self) -> int:
        """How many tables are ready to answer."""
        return sum(table.melodies is not None for table in self._tables.values())
