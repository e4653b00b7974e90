"""Who is a client, and what the server keeps for each: named slots, interpolations, where replies go.

A client is a UDP sender (host, port), or a TCP connection, from its first request on: the server
registers nobody for garbage or silence. With a fixed reply port (--reply-port) every sender on a
host is one client whose replies go to host:reply_port, so one-shot senders such as `oscsend` share
their slots between calls. The registry is bounded: when it is full, the least recently heard
client without slots makes room; only when every client holds slots does one of those go, the
least recently heard, and its slots are parked (parking.py), not dropped. Clients with requests in
flight, voices playing or mappings are never let go.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqvae.codec import Melody
from seqvae.server.morph_tables import MorphTables
from seqvae.server.params import RequestError
from seqvae.server.parking import ParkedSlots
from seqvae.server.transport import TcpConnection, is_loopback


class TooManyClients(RuntimeError):
    """Every place in the client table is taken by a client with work in flight, voices or mappings."""


@dataclass
class Slot:
    melody: Melody
    z: np.ndarray


@dataclass(eq=False)
class Client:
    key: Hashable
    host: str
    reply_addr: tuple[str, int] | None  # UDP destination; None for a TCP connection without reply_to
    tcp: TcpConnection | None = None
    slots: OrderedDict[str, Slot] = field(default_factory=OrderedDict)
    interpolations: dict[str, list[str]] = field(default_factory=dict)
    note_target: tuple[str, int] | None = None
    is_local: bool = True
    fixed_reply: bool = False  # reply port set by --reply-port: reply_to cannot move it
    max_slots: int = 256
    personal: Any = None  # this client's PersonalModel (/seqvae/personalize): its engine serves this client
    music_key: Any = None  # this client's Key (/seqvae/key): every melody made for it is decoded in it
    pitch_range: Any = None  # this client's PitchRange (/seqvae/range), likewise
    chords: str | None = None  # this client's progression (/seqvae/chords): a chord model plays every request under it
    morph_tables: MorphTables = field(default_factory=MorphTables)  # its morph knobs' positions, decoded ahead

    def slot(self, name: str) -> Slot:
        found = self.slots.get(name)
        if found is None:
            mine = ", ".join(list(self.slots)[:12]) or "none yet"
            raise RequestError(
                f"slot {name!r} is empty (your slots: {mine}): fill it first with /seqvae/sample {name} "
                f"or /seqvae/encode {name} ..."
            )
        return found

    def melody(self, name: str) -> Melody:
        return self.slot(name).melody

    def latent(self, name: str) -> np.ndarray:
        return self.slot(name).z

    def check_room(self, names: list[str]) -> None:
        """Refuse, before any work is queued, a request that would fill slots past the limit."""
        new = [name for name in dict.fromkeys(names) if name not in self.slots]
        if len(self.slots) + len(new) > self.max_slots:
            raise RequestError(
                f"you have {len(self.slots)} slots, the limit is {self.max_slots}: reuse slot names "
                "or free some with /seqvae/clear slot"
            )

    def reply_to_port(self, port: int) -> None:
        if self.fixed_reply:
            raise RequestError("this server sends every reply to its --reply-port; /seqvae/reply_to is not needed")
        self.reply_addr = (self.host, port)


class ClientRegistry:
    """Clients by key, least recently heard first; `in_use()` names the keys that must not be let go."""

    def __init__(self, in_use: Callable[[], set[Hashable]], max_clients: int = 256, max_slots: int = 256,
                 reply_port: int | None = None, parked: ParkedSlots | None = None) -> None:
        self.in_use = in_use
        self.max_clients = max_clients
        self.max_slots = max_slots
        self.reply_port = reply_port
        self.parked = parked if parked is not None else ParkedSlots()
        self.clients: OrderedDict[Hashable, Client] = OrderedDict()
        self._tcp_ids = 0

    def __len__(self) -> int:
        return len(self.clients)

    def get(self, key: Hashable) -> Client | None:
        return self.clients.get(key)

    def udp_key(self, host: str, port: int) -> Hashable:
        return ("host", host, self.reply_port) if self.reply_port else ("udp", host, port)

    def heard(self, client: Client) -> None:
        """A request from a registered client: it is now the most recently heard."""
        if client.key in self.clients:
            self.clients.move_to_end(client.key)

    def for_udp(self, host: str, port: int) -> Client:
        """The sender's client, registered now if new (with its parked slots back, if it was let go)."""
        key = self.udp_key(host, port)
        client = self.clients.get(key)
        if client is not None:
            self.clients.move_to_end(key)
            return client
        self._make_room()
        client = self.parked.claim(key)
        if client is None:
            client = Client(key, host, (host, self.reply_port or port), is_local=is_loopback(host),
                            fixed_reply=bool(self.reply_port), max_slots=self.max_slots)
        self.clients[key] = client
        return client

    def for_tcp(self, conn: TcpConnection, host: str, port: int) -> Client:
        if self.reply_port:
            return self.for_udp(host, port)
        self._make_room()
        self._tcp_ids += 1
        client = Client(("tcp", self._tcp_ids), host, None, tcp=conn, is_local=is_loopback(host),
                        max_slots=self.max_slots)
        self.clients[client.key] = client
        return client

    def forget(self, client: Client) -> bool:
        """A TCP connection closed: its slots go. False for a UDP or host client, which stays."""
        if client.tcp is None:
            return False
        self.clients.pop(client.key, None)
        return True

    def _make_room(self) -> None:
        """Below the limit, nothing. Full: let go of the least recently heard client without slots, else the
        least recently heard one with slots (parked), else TooManyClients. A TCP client let go is closed."""
        if len(self.clients) < self.max_clients:
            return
        in_use = self.in_use()
        free = [client for key, client in self.clients.items() if key not in in_use]
        victim = next((client for client in free if not client.slots), None)
        if victim is None and free:
            victim = free[0]
            self.parked.park(victim)
        if victim is None:
            raise TooManyClients(f"busy: {len(self.clients)} clients are active, the limit is "
                                 f"{self.max_clients}; try again when one finishes")
        del self.clients[victim.key]
        if victim.tcp is not None:
            victim.tcp.close()
