"""The OSC server: wires the transport, the clients, the request order, the worker and the player.

Threads: one asyncio loop receives, parses, checks and answers cheap requests and owns all
client state (transport.py, clients.py, ordering.py); one inference worker runs the model (see
worker.py); one clock thread plays (see player.py). Handlers (protocol.py) see a `Session` per
request, never this class.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqvae.codec.chord_recognition import progression_of
from seqvae.codec.meter import STEPS_PER_QUARTER
from seqvae.server import protocol
from seqvae.server.clients import Client, ClientRegistry, TooManyClients
from seqvae.server.clock import Clock, make_clock
from seqvae.server.file_jobs import FileJobs
from seqvae.server.mappings import Knobs
from seqvae.server.midi_in import MidiIn, Played, Take, TakeNote, take_messages
from seqvae.server.midi_ports import open_rtmidi_input
from seqvae.server.ordering import RequestOrder
from seqvae.server.osc import FramingError, IncomingMessage, OscParseError, encode_message, parse_packet
from seqvae.server.parking import ParkedSlots
from seqvae.server.player import MidiSink, OscNoteSink, Player
from seqvae.server.transport import AllowList, ConnectionLimits, OscTransport, ServerStats, TcpConnection
from seqvae.server.worker import InferenceWorker

DEFAULT_PORT = 57130
DEFAULT_HOST = "127.0.0.1"


@dataclass
class ServerConfig:
    """How `seqvae serve` listens and behaves; the defaults are the safe, local ones."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0 picks a free port (tests)
    reply_port: int | None = None
    export_dir: Path = Path("seqvae-exports")
    allow_remote: bool = False
    allow: tuple[str, ...] = ()  # addresses or networks (CIDR) that may talk to a non-loopback server
    batching: bool = True
    max_queue: int = 64
    page_bytes: int = 8192
    max_packet: int = 32768  # the largest real request (1024 inline notes) is ~21 KB
    max_clients: int = 256
    max_slots: int = 256
    max_parked_slots: int = 8192  # slots kept for clients a full table let go (oldest dropped beyond)
    max_connections: int = 64  # open TCP connections per host; more are closed at once
    idle_timeout_s: float = 60.0  # a TCP connection that holds nothing, silent this long, is closed
    frame_timeout_s: float = 10.0  # a TCP connection with a packet half-sent this long is closed
    bpm: float = 120.0
    tcp: bool = True
    clock: str = "internal"  # internal | link | midi[:PORT] (see clock.py)
    latency_ms: float = 0.0  # OSC note events leave this far ahead of their onset, as timetagged bundles
    clock_delay_ms: float = 0.0  # MIDI clock: how late the ticks get here (the MIDI system's hand-over)
    midi_in: str | None = None  # MIDI input for /seqvae/record and CC mappings
    map_cc: tuple = ()  # [channel, cc, address, args...] entries, run for the house client
    map_osc: tuple = ()  # [address, (arg_index (low high)), request...] entries, run for the house client


def check_bind(config: ServerConfig) -> AllowList:
    """Refuse to listen beyond loopback unless asked explicitly, with an allow-list; the list of who may send."""
    return AllowList(config.host, config.allow_remote, config.allow)


class SeqvaeServer:
    """An OSC front end over an `Engine`. `start()` serves from a background thread, `serve_forever()` blocks."""

    def __init__(self, engine: Any, config: ServerConfig | None = None, midi_port: Any = None,
                 clock: Clock | None = None, midi_in_port: Any = None) -> None:
        self.engine = engine
        self.config = config or ServerConfig()
        self.allow_list = check_bind(self.config)
        self.export_dir = Path(self.config.export_dir)
        self.rng = np.random.default_rng()
        self.stats = ServerStats()
        self.worker = InferenceWorker(engine, max_queue=self.config.max_queue, batching=self.config.batching)
        latency_s = self.config.latency_ms / 1000.0
        sinks: list[Any] = [OscNoteSink(latency_s)]
        if midi_port is not None:
            sinks.append(MidiSink(midi_port))
        if clock is None:  # the model's bar is the clock's bar (Link's quantum): 4 beats in 4/4, 3 in 3/4 and 6/8
            clock = make_clock(self.config.clock, self.config.bpm, engine.meter.steps_per_bar / STEPS_PER_QUARTER,
                               self.config.clock_delay_ms / 1000.0)
        self.player = Player(sinks, on_voice_end=self._voice_ended, clock=clock, latency_s=latency_s)
        limits = ConnectionLimits(self.config.max_connections, self.config.idle_timeout_s, self.config.frame_timeout_s)
        self.transport = OscTransport(self, self.allow_list, self.stats, self.config.host, self.config.port,
                                      self.config.max_packet, tcp=self.config.tcp, limits=limits)
        self.order = RequestOrder(self.transport, self.worker, self._session)
        self.parked = ParkedSlots(self.config.max_parked_slots)
        self.files = FileJobs()
        self.clients = ClientRegistry(self._in_use, self.config.max_clients, self.config.max_slots,
                                      self.config.reply_port, self.parked)
        # The house client owns the --config mappings and their slots; it has no address, so replies go nowhere.
        self.house = Client(("house",), "127.0.0.1", None, max_slots=self.config.max_slots)
        self.knobs = Knobs(protocol.ROUTES, self._run_mapped)
        self.midi_in: MidiIn | None = None
        if midi_in_port is None and self.config.midi_in:
            midi_in_port = open_rtmidi_input(self.config.midi_in)
        if midi_in_port is not None:
            self.midi_in = MidiIn(midi_in_port, self.player.clock, self._take_ended, self._cc_moved,
                                  name=self.config.midi_in or "", on_chords=self._chords_ended)
        try:
            self._house_mappings()
        except ValueError:
            self.close_parts()
            raise

    @property
    def address(self) -> tuple[str, int] | None:
        return self.transport.address

    @property
    def client_count(self) -> int:
        return len(self.clients)

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Serve from a background thread; returns the bound (host, port)."""
        return self.transport.start()

    def serve_forever(self, on_ready: Any = None) -> None:
        """Serve in this thread until stop() or Ctrl-C."""
        try:
            self.transport.serve_forever(on_ready)
        finally:
            self.close_parts()

    def stop(self) -> None:
        self.transport.stop()
        self.close_parts()

    def close_parts(self) -> None:
        if self.midi_in is not None:
            self.midi_in.close()
        self.player.close()
        self.worker.close()
        self.files.close()

    # ---- what the transport hands over ---------------------------------------------------------

    def accept_datagram(self, data: bytes, host: str, port: int) -> None:
        """A datagram: a known sender's goes to its client; a new sender becomes a client with its first request."""
        client = self.clients.get(self.clients.udp_key(host, port))
        if client is not None:
            self.clients.heard(client)
            self.handle_packet(client, data)
            return
        messages = self._read_unregistered(data, lambda packet: self.transport.send_udp(
            packet, (host, self.config.reply_port or port)))
        if not messages:
            return
        try:
            client = self.clients.for_udp(host, port)
        except TooManyClients as exc:
            self.stats.busy += 1
            self.transport.send_udp(encode_message(protocol.ERROR, [messages[0].address, str(exc)]),
                                    (host, self.config.reply_port or port))
            return
        self.take(client, messages)

    def accept_stream_packet(self, conn: TcpConnection, data: bytes) -> bool:
        """A TCP packet: the connection becomes a client with its first request. True for a request (or a
        mapped message): what counts as hearing from the connection."""
        if conn.client is not None:
            self.handle_packet(conn.client, data)
            return True
        messages = self._read_unregistered(data, conn.send)
        if not messages:
            return messages is not None
        try:
            conn.client = self.clients.for_tcp(conn, conn.host, conn.port)
        except TooManyClients as exc:
            self.stats.busy += 1
            conn.send(encode_message(protocol.ERROR, [messages[0].address, str(exc)]))
            return False
        self.take(conn.client, messages)
        return True

    def _read_unregistered(self, data: bytes, send: Any) -> list[IncomingMessage] | None:
        """A packet from a sender that is not a client yet: its messages when it holds a request. Otherwise its
        mapped addresses move their knobs ([] then), the rest is answered through `send` (None when nothing
        was of use): garbage and strangers' addresses register nobody."""
        self.stats.packets += 1
        if len(data) > self.config.max_packet:
            problem = self._too_big(data)
        else:
            try:
                messages = parse_packet(data)
            except OscParseError as exc:
                problem = str(exc)
            else:
                if any(msg.address in protocol.ROUTES for msg in messages):
                    return messages
                used = False
                for msg in messages:
                    self.stats.messages += 1
                    if self.knobs.is_mapped(msg.address):
                        used = True
                        problem = self.knobs.on_osc(msg.address, msg.args)
                    else:
                        problem = protocol.unknown_address(msg.address)
                    if problem:
                        self.stats.errors += 1
                        send(encode_message(protocol.ERROR, [msg.address, problem]))
                return [] if used else None
        self.stats.errors += 1
        send(encode_message(protocol.ERROR, [_address_hint(data), problem]))
        return None

    def _too_big(self, data: bytes) -> str:
        return (f"packet of {len(data)} bytes is over the {self.config.max_packet}-byte limit: "
                "send at most 1024 notes per /seqvae/encode")

    def handle_packet(self, client: Client, data: bytes) -> None:
        self.stats.packets += 1
        if len(data) > self.config.max_packet:
            self.order.respond(client, [protocol.error_message(_address_hint(data), self._too_big(data))])
            return
        try:
            messages = parse_packet(data)
        except OscParseError as exc:
            self.order.respond(client, [protocol.error_message(_address_hint(data), str(exc))])
            return
        self.take(client, messages)

    def take(self, client: Client, messages: list[IncomingMessage]) -> None:
        """A client's parsed packet: other tools' mapped addresses move knobs, the rest go in the client's order."""
        if self.knobs.osc:
            for msg in [m for m in messages if self.knobs.is_mapped(m.address)]:
                problem = self.knobs.on_osc(msg.address, msg.args)
                if problem:
                    self.order.respond(client, [protocol.error_message(msg.address, problem)])
            messages = [m for m in messages if not self.knobs.is_mapped(m.address)]
        self.order.take(client, messages)

    def handle_framing_error(self, conn: TcpConnection, error: FramingError) -> None:
        if conn.client is None:
            self.stats.errors += 1
            conn.send(encode_message(protocol.ERROR, ["?", str(error)]))
        else:
            self.order.respond(conn.client, [protocol.error_message("?", str(error))])

    def connection_closed(self, conn: TcpConnection) -> None:
        """A TCP connection closed: its voices stop and its slots go."""
        client = conn.client
        if self.clients.forget(client):
            self.player.stop([key for key in self.player.playing() if key[0] == client.key])
            self.knobs.forget(client)
            if self.midi_in is not None:
                self.midi_in.cancel(client)

    def holds_nothing(self, client: Client) -> bool:
        """A client whose connection may close after --idle-timeout: no slots, nothing in flight or mapped."""
        return not client.slots and client.key not in self._in_use()

    # ---- what clients and handlers are given ---------------------------------------------------

    def _session(self, client: Client) -> protocol.Session:
        engine = self.engine if client.personal is None else client.personal.engine  # /seqvae/personalize
        if client.music_key is not None or client.pitch_range is not None:  # /seqvae/key, /seqvae/range
            engine = engine.constrained(client.music_key, client.pitch_range)
        if client.chords is not None:  # /seqvae/chords (refused on a model without chord inputs)
            engine = engine.with_chords(client.chords)
        return protocol.Session(engine, client, self.player, self.rng, self.export_dir, self.config.page_bytes,
                                len(self.clients), self.allow_list.allows, self.knobs, self.midi_in, self.parked,
                                self.files)

    def _in_use(self) -> set[Hashable]:
        """Clients a full registry must keep: those with requests in flight, voices playing, mappings or takes."""
        keys = self.order.in_use() | {key[0] for key in self.player.playing()} | self.knobs.owners()
        if self.midi_in is not None:
            keys |= {owner.key for owner in self.midi_in.owners()}
        return keys

    def _voice_ended(self, key: Hashable, slot: str) -> None:
        loop = self.transport.loop
        if loop is None:
            return

        def tell() -> None:
            client = self.clients.get(key[0])  # type: ignore[index]
            if client is not None:
                self.order.respond(client, [("/seqvae/stopped", [slot])])

        try:
            loop.call_soon_threadsafe(tell)
        except RuntimeError:  # the loop has closed
            pass


    # ---- MIDI in and mappings --------------------------------------------------------------------

    def _house_mappings(self) -> None:
        """The --config mappings, checked now: a bad entry stops the server with its position named."""
        for kind, entries in (("map_cc", self.config.map_cc), ("map_osc", self.config.map_osc)):
            for n, entry in enumerate(entries, 1):
                if not isinstance(entry, (list, tuple)) or len(entry) < 2:
                    raise ValueError(f"{kind} entry {n} should be a list such as "
                                     + ('[1, 1, "/seqvae/morph", "a", "b", "$", "knob"]' if kind == "map_cc"
                                        else '["/1/fader1", "/seqvae/morph", "a", "b", "$", "knob"]'))
                try:
                    if kind == "map_cc":
                        if self.midi_in is None:
                            raise ValueError("map_cc needs MIDI in: set midi_in (--midi-in NAME)")
                        self.knobs.map_cc(self.house, entry[0], entry[1], tuple(entry[2:]))
                    else:
                        self.knobs.map_osc(self.house, entry[0], tuple(entry[1:]))
                except ValueError as exc:
                    raise ValueError(f"{kind} entry {n} {list(entry)}: {exc}") from None

    def _run_mapped(self, owner: Client, address: str, args: tuple, done: Any) -> None:
        self.order.dispatch(owner, address, args, on_reply=done)

    def _on_loop(self, fn: Any, *args: Any) -> None:
        """Run `fn(*args)` on the receiving loop, which owns all client state (from the MIDI thread)."""
        loop = self.transport.loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop has closed
            pass

    def _cc_moved(self, channel: int, cc: int, value: int) -> None:
        self._on_loop(self.knobs.on_cc, channel, cc, value)

    def _take_ended(self, take: Take, notes: list[TakeNote]) -> None:
        self._on_loop(self._store_take, take, notes)

    def _store_take(self, take: Take, notes: list[TakeNote]) -> None:
        """A finished take is encoded into its slot like /seqvae/encode, and replied the same way."""
        client = take.owner
        if not notes:
            self.order.respond(client, [protocol.error_message("/seqvae/record", (
                f"slot {take.slot!r}: no notes were played in the take (beats {take.start_beat:g} to "
                f"{take.end_beat:g}); play into MIDI in {self.config.midi_in or ''!r} after the bar line and "
                "check that the keyboard is routed to it"))])
            return
        self.order.dispatch(client, "/seqvae/encode", (take.slot, len(notes), *take_messages(notes)))

    def _chords_ended(self, take: Take, played: list[Played]) -> None:
        self._on_loop(self._store_chords, take, played)

    def _store_chords(self, take: Take, played: list[Played]) -> None:
        """A finished chord take becomes its owner's progression, set and answered as /seqvae/chords would."""
        beat = 4 / self.engine.meter.denominator  # the progression's grid: a beat of the model's meter, in quarters
        try:
            text = progression_of([note[:3] for note in played], round(take.beats / beat), beat)
        except ValueError as exc:
            self.order.respond(take.owner, [protocol.error_message("/seqvae/chords_from_midi", (
                f"{exc}, on channel {take.channel} in the take (beats {take.start_beat:g} to {take.end_beat:g}): "
                f"play into MIDI in {self.config.midi_in or ''!r} on that channel after the bar line; your "
                "progression stays as it was"))])
            return
        self.order.dispatch(take.owner, "/seqvae/chords", tuple(text.split()))


def _address_hint(data: bytes) -> str:
    """The address of a packet that could not be parsed, when it has a readable one, else '?'."""
    if data.startswith(b"/"):
        end = data.find(b"\x00", 0, 256)
        if end > 0:
            text = data[:end].decode("utf-8", errors="replace")
            if text.isprintable():
                return text
    return "?"

