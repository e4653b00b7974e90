"""A morph knob's positions are decoded ahead on the heavy lane and then answered without the model; every morph
is resolved to the same grid, so a position sounds the same before and after its table is there."""

from __future__ import annotations

import threading
import time

import numpy as np
from server_support import OscClient, count_model_rows, notes_of, running_server

from seqvae.engine.latent import slerp
from seqvae.server.morph_tables import (
    KNOB_RUN,
    RESOLUTION,
    TABLE_PIECE_ROWS,
    MorphTables,
    grid_amounts,
    grid_position,
)


def test_the_grid_and_the_tables_of_one_client():
    assert grid_position(0.0) == (0, 0.0) and grid_position(1.0) == (RESOLUTION, 1.0)
    index, t = grid_position(0.3)
    assert index == round(0.3 * RESOLUTION) and abs(t - 0.3) <= 0.5 / RESOLUTION
    assert len(grid_amounts()) == RESOLUTION + 1
    za, zb, zc = (np.full(4, v, np.float32) for v in (1.0, 2.0, 3.0))
    tables = MorphTables(limit=2)
    for _ in range(3):  # pairs taking turns (a patch hopping between slots) never make a run
        assert not tables.wants(za, zb, "view") and not tables.wants(zb, zc, "view")
    assert [tables.wants(za, zb, "view") for _ in range(KNOB_RUN)] == [False] * (KNOB_RUN - 1) + [True]  # a knob
    key, table = tables.begin(za, zb, "view")
    assert not any(tables.wants(zb, zc, "view") for _ in range(KNOB_RUN))  # one table is decoded at a time
    assert tables.find(za, zb, "view") is table and table.melodies is None and tables.filled() == 0
    assert tables.find(za, zb, "other key") is None and tables.find(zb, za, "view") is None
    za[0] = 9.0  # the table kept its own copy: a slot refilled in place does not match it
    assert tables.find(np.full(4, 1.0, np.float32), zb, "view") is table
    tables.fill(key, ["m"] * (RESOLUTION + 1))
    assert tables.filled() == 1
    assert tables.wants(zb, zc, "view")  # its run went on, and nothing is pending now
    _, second = tables.begin(zb, zc, "view")
    tables.find(np.full(4, 1.0, np.float32), zb, "view")  # used last: the next new pair evicts the other one
    tables.begin(za, zc, "view")
    assert len(tables) == 2 and tables.find(zb, zc, "view") is None and second.evicted
    tables.drop(key)
    assert tables.find(np.full(4, 1.0, np.float32), zb, "view") is None


def _client_tables(server):
    return [client.morph_tables for client in server.clients.clients.values() if len(client.morph_tables)]


def _wait_for_table(server) -> None:
    deadline = time.monotonic() + 20
    while not any(tables.filled() for tables in _client_tables(server)):
        assert time.monotonic() < deadline, "the morph table was never filled"
        time.sleep(0.01)


def test_a_knob_is_answered_from_its_table_while_the_model_is_held(tiny_engine, tmp_path, monkeypatch):
    with running_server(tiny_engine, tmp_path) as server:
        b = OscClient(server.address[1], "udp")
        try:
            b.one("/seqvae/sample", "x", 0.5, 2)
            b.one("/seqvae/sample", "y", 0.5, 3)
            first = notes_of(b.one("/seqvae/morph", "x", "y", 0.3))  # decoded: the table is not there yet
            for _ in range(KNOB_RUN - 2):
                assert notes_of(b.one("/seqvae/morph", "x", "y", 0.3)) == first
            assert not _client_tables(server)  # a few morphs of a pair are not a knob yet
            rows = count_model_rows(monkeypatch, tiny_engine)
            assert notes_of(b.one("/seqvae/morph", "x", "y", 0.3)) == first  # the run's last queues the table
            _wait_for_table(server)
            monkeypatch.undo()
            # The morph's own row, then the table's in pieces of its own size, not the heavy lane's single rows.
            assert sum(rows) == 1 + RESOLUTION + 1 and max(rows) == TABLE_PIECE_ROWS
            client = next(iter(server.clients.clients.values()))
            za, zb = client.latent("x"), client.latent("y")
            grid = [grid_position(t)[1] for t in (0.3, 0.7)]
            expected = [tiny_engine.decode(slerp(za, zb, t)[None].astype(np.float32))[0] for t in grid]

            held, release = threading.Event(), threading.Event()

            def held_decode(*args, **kwargs):
                held.set()
                release.wait(20)
                raise RuntimeError("released")

            monkeypatch.setitem(vars(tiny_engine), "decode", held_decode)
            try:
                for _ in range(3):  # no model call: decode is held and would fail
                    assert notes_of(b.one("/seqvae/morph", "x", "y", 0.3)) == first
                    assert b.one("/seqvae/morph", "x", "y", 0.7)[0] == "/seqvae/notes"
                    assert np.array_equal(client.slots["morph"].melody.events, expected[1].events)
                assert not held.is_set()
                assert notes_of(b.one("/seqvae/morph", "x", "y", 0.3 + 0.1 / RESOLUTION)) == first  # same grid step
            finally:
                release.set()
                monkeypatch.delitem(vars(tiny_engine), "decode")
            stored = client.slots["morph"]  # the last morph: 0.3 and a bit, on 0.3's grid step
            np.testing.assert_allclose(stored.z, slerp(za, zb, grid[0]), rtol=1e-5, atol=1e-6)
            assert np.array_equal(stored.melody.events, expected[0].events)
        finally:
            b.close()


def test_a_refilled_slot_gets_a_new_table_and_a_full_heavy_lane_only_skips_the_table(tiny_engine, tmp_path):
    with running_server(tiny_engine, tmp_path) as server:
        b = OscClient(server.address[1], "udp")
        try:
            b.one("/seqvae/sample", "x", 0.5, 2)
            b.one("/seqvae/sample", "y", 0.5, 3)
            for _ in range(KNOB_RUN):
                b.one("/seqvae/morph", "x", "y", 0.5)
            _wait_for_table(server)
            tables = _client_tables(server)[0]
            b.one("/seqvae/sample", "x", 0.5, 9)  # new endpoint: the old table no longer matches
            for _ in range(KNOB_RUN):
                assert b.one("/seqvae/morph", "x", "y", 0.5)[0] == "/seqvae/notes"
            deadline = time.monotonic() + 20
            while tables.filled() < 2:
                assert time.monotonic() < deadline, "the second table was never filled"
                time.sleep(0.01)
            assert len(tables) == 2
        finally:
            b.close()
