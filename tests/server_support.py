"""Helpers for the server tests: a tiny untrained checkpoint, a running server, and OSC clients built on
python-osc (UDP, TCP OSC 1.0 and TCP OSC 1.1 SLIP). The fixtures built from them live in conftest.py.

Untrained weights are enough here: these tests check the protocol (shapes, types, order, errors),
not musicality.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.tcp_client import TCPClient
from pythonosc.udp_client import UDPClient

from seqvae.server import SeqvaeServer, ServerConfig

Reply = tuple[str, list]


def make_tiny_checkpoint(directory: Path) -> Path:
    import torch

    from seqvae.models import build_model, get_config, save_model

    torch.manual_seed(0)
    save_model(build_model(get_config("tiny_lstm")), directory)
    return directory


def make_tiny_chord_checkpoint(directory: Path) -> Path:
    """A tiny chord model whose chord inputs are loud, so its untrained melodies follow the chords they hear."""
    import torch

    from seqvae.codec.chords import NUM_CHORD_CLASSES
    from seqvae.models import build_model, get_config, save_model

    torch.manual_seed(0)
    model = build_model(get_config("tiny_chords"))
    with torch.no_grad():
        model.decoder.core.layers[0].weight_ih_l0[:, -NUM_CHORD_CLASSES:] *= 40
    save_model(model, directory)
    return directory


@contextlib.contextmanager
def running_server(engine, export_dir: Path, **config) -> Iterator[SeqvaeServer]:
    server = SeqvaeServer(engine, ServerConfig(port=0, export_dir=export_dir, **config))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def jack_keyboard(port: str):
    """A JACK MIDI output connected to the server's MIDI in `port` (under the jack_server fixture)."""
    import rtmidi

    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="keyboard")
    names = out.get_ports()
    index = next(i for i, name in enumerate(names) if name.endswith(port))
    out.open_port(index)
    return out


def build(address: str, args: tuple | list = ()) -> OscMessage:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build()


class OscClient:
    """A python-osc client over 'udp', 'tcp1.0' (size prefix) or 'tcp1.1' (SLIP)."""

    def __init__(self, port: int, transport: str = "udp", host: str = "127.0.0.1") -> None:
        self.transport = transport
        if transport == "udp":
            self.client = UDPClient(host, port)
        else:
            self.client = TCPClient(host, port, mode="1.0" if transport == "tcp1.0" else "1.1", timeout=10)
        self._pending: list[bytes] = []

    def send(self, address: str, *args) -> None:
        self.client.send(build(address, args))

    def send_raw(self, data: bytes) -> None:
        if self.transport == "udp":
            self.client._sock.sendto(data, (self.client._address, self.client._port))
        else:
            self.client.socket.sendall(data)

    def receive(self, timeout: float = 10.0) -> Reply | None:
        if not self._pending:
            if self.transport == "udp":
                self.client._sock.settimeout(timeout)
                try:  # python-osc's own receive() reads at most 4096 bytes; replies may be up to 8 KB
                    self._pending.append(self.client._sock.recv(65536))
                except TimeoutError:
                    return None
            else:
                self._pending.extend(p for p in self.client.receive(timeout) if p)
                if not self._pending:
                    return None
        msg = OscMessage(self._pending.pop(0))
        return msg.address, list(msg.params)

    def replies(self, count: int, timeout: float = 20.0) -> list[Reply]:
        out: list[Reply] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            left = deadline - time.monotonic()
            got = self.receive(max(left, 0.01)) if left > 0 else None
            if got is None:
                raise AssertionError(f"expected {count} replies, got {len(out)}: {out}")
            out.append(got)
        return out

    def call(self, address: str, *args, expect: int = 1, timeout: float = 20.0) -> list[Reply]:
        self.send(address, *args)
        return self.replies(expect, timeout)

    def one(self, address: str, *args, timeout: float = 20.0) -> Reply:
        return self.call(address, *args, timeout=timeout)[0]

    def quiet(self, seconds: float = 0.3) -> bool:
        """True when nothing more arrives within `seconds`."""
        return self.receive(seconds) is None

    def close(self) -> None:
        self.client.close()


def notes_of(reply: Reply) -> list[tuple[int, float, float, int]]:
    """The (pitch, start, duration, velocity) notes of a /seqvae/notes reply, checking its shape and types."""
    address, args = reply
    assert address == "/seqvae/notes", reply
    slot, bpm, count, *flat = args
    assert isinstance(slot, str) and isinstance(bpm, float) and isinstance(count, int)
    assert len(flat) == 4 * count
    notes = [tuple(flat[i:i + 4]) for i in range(0, len(flat), 4)]
    for pitch, start, duration, velocity in notes:
        assert isinstance(pitch, int) and isinstance(velocity, int)
        assert isinstance(start, float) and isinstance(duration, float)
    return notes


def count_model_rows(monkeypatch, engine) -> list[int]:
    """The row counts of every decoder call of `engine`'s model from now on (how a decode was cut into pieces)."""
    rows: list[int] = []
    decode = engine.model.decode

    def counted(zt, **kwargs):
        rows.append(len(zt))
        return decode(zt, **kwargs)

    monkeypatch.setattr(engine.model, "decode", counted)
    return rows
