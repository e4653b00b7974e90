"""The OSC server: UDP and TCP on one port, per-client slots, ordered replies, live playback.

Threads: one asyncio loop receives, parses, checks and answers cheap requests and owns all
client state; one inference worker runs the model (see worker.py); one clock thread plays
(see player.py). Results come back to the loop, which sends each client's replies in the order
its requests arrived, whatever order the work finished in.

Who is a client: a UDP sender (host, port), or a TCP connection. With a fixed reply port
(--reply-port) every sender on a host is one client whose replies go to host:reply_port, so
one-shot senders such as `oscsend` share their slots between calls.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import socket
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from seqvae.codec import Melody
from seqvae.server import protocol
from seqvae.server.osc import FramingError, OscParseError, StreamDeframer, encode_message, parse_packet
from seqvae.server.params import RequestError, bind
from seqvae.server.player import OscNoteSink, Player
from seqvae.server.worker import CallJob, DecodeJob, InferenceWorker

log = logging.getLogger("seqvae.server")

DEFAULT_PORT = 57130
DEFAULT_HOST = "127.0.0.1"
MAX_SCHEDULE_AHEAD_S = 60.0
MAX_SCHEDULED_PER_CLIENT = 256
MAX_PENDING_PER_CLIENT = 256
TCP_WRITE_LIMIT = 4 * 1024 * 1024


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
    bpm: float = 120.0
    tcp: bool = True


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def parse_allow_list(entries: tuple[str, ...] | list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """'192.168.1.20', '10.0.0.0/24', 'fe80::1' -> networks; a clear error for anything else."""
    networks = []
    for entry in entries:
        for part in str(entry).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(
                    f"--allow {part!r} is not an IP address or network: send e.g. 192.168.1.20 or 192.168.1.0/24"
                ) from None
    return networks


def check_bind(config: ServerConfig) -> list:
    """Refuse to listen beyond loopback unless asked explicitly, with an allow-list."""
    networks = parse_allow_list(config.allow)
    if not _is_loopback(config.host) and config.host != "localhost":
        if not config.allow_remote:
            raise ValueError(
                f"--host {config.host} would accept requests from other machines: add --allow-remote and "
                "--allow ADDRESS[,ADDRESS...] naming the machines that may connect (or keep --host 127.0.0.1)"
            )
        if not networks:
            raise ValueError("--allow-remote needs --allow ADDRESS[,ADDRESS...] naming who may connect, "
                             "e.g. --allow 192.168.1.20")
    return networks


class TooManyClients(RuntimeError):
    """Every client slot is taken by a client with work in flight."""


@dataclass
class Slot:
    melody: Melody
    z: np.ndarray


class Ticket:
    """A request's place in its client's order: replies go out, and results land in slots, in this order."""

    __slots__ = ("address", "messages", "done", "work", "result", "writes")

    def __init__(self, address: str = "?") -> None:
        self.address = address
        self.messages: list[protocol.Message] = []
        self.done = False
        self.work: protocol.DecodeWork | protocol.CallWork | None = None
        self.result: Any = None
        self.writes: tuple[str, ...] = ()


@dataclass(eq=False)
class Client:
    key: Hashable
    host: str
    reply_addr: tuple[str, int] | None  # UDP destination; None for a TCP connection without reply_to
    tcp: Any = None  # the connection protocol object, for TCP clients
    slots: OrderedDict[str, Slot] = field(default_factory=OrderedDict)
    interpolations: dict[str, list[str]] = field(default_factory=dict)
    tickets: deque[Ticket] = field(default_factory=deque)
    blocked: deque[tuple[Ticket, str, tuple]] = field(default_factory=deque)  # waiting on earlier results
    pending_writes: Counter[str] = field(default_factory=Counter)  # slots that queued work will fill
    flushing: bool = False
    note_target: tuple[str, int] | None = None
    scheduled: int = 0
    is_local: bool = True
    fixed_reply: bool = False  # reply port set by --reply-port: reply_to cannot move it

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

    def reply_to_port(self, port: int) -> None:
        if self.fixed_reply:
            raise RequestError("this server sends every reply to its --reply-port; /seqvae/reply_to is not needed")
        self.reply_addr = (self.host, port)

    @property
    def idle(self) -> bool:
        return not self.tickets and not self.scheduled and not self.blocked


@dataclass
class ServerStats:
    packets: int = 0
    messages: int = 0
    errors: int = 0
    dropped: int = 0  # from addresses not on the allow-list
    busy: int = 0
    tcp_connections: int = 0


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SeqvaeServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            self.server.handle_datagram(data, addr)
        except Exception:  # asyncio would close the UDP transport on an escaped exception: never let one out
            log.exception("request from %s failed", addr)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable after a reply
        log.debug("udp: %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, server: SeqvaeServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.deframer = StreamDeframer(server.config.max_packet)
        self.client: Client | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("?", 0)
        if not self.server.allowed(peer[0]):
            self.server.stats.dropped += 1
            transport.close()
            return
        self.server.stats.tcp_connections += 1
        try:
            self.client = self.server.client_for_tcp(self, peer[0], peer[1])
        except TooManyClients as exc:
            transport.write(self.deframer.frame(encode_message(protocol.ERROR, ["?", str(exc)])))
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self.client is None:
            return
        try:
            for item in self.deframer.feed(data):
                if isinstance(item, FramingError):
                    self.server.respond(self.client, [protocol.error_message("?", str(item))])
                    if item.fatal:
                        self.close()
                        return
                else:
                    self.server.handle_packet(self.client, item)
        except Exception:
            log.exception("request on a TCP connection failed")

    def send(self, packet: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > TCP_WRITE_LIMIT:
            log.warning("tcp client is not reading its replies; closing the connection")
            self.close()
            return
        self.transport.write(self.deframer.frame(packet))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.server.forget(self.client)


class SeqvaeServer:
    """An OSC front end over an `Engine`. `start()` serves from a background thread, `serve_forever()` blocks."""

    def __init__(self, engine: Any, config: ServerConfig | None = None, midi_port: Any = None) -> None:
        self.engine = engine
        self.config = config or ServerConfig()
        self.networks = check_bind(self.config)
        self.export_dir = Path(self.config.export_dir)
        self.rng = np.random.default_rng()
        self.stats = ServerStats()
        self.clients: OrderedDict[Hashable, Client] = OrderedDict()
        self.worker = InferenceWorker(engine, max_queue=self.config.max_queue, batching=self.config.batching)
        sinks: list[Any] = [OscNoteSink()]
        if midi_port is not None:
            from seqvae.server.player import MidiSink

            sinks.append(MidiSink(midi_port))
        self.player = Player(sinks, bpm=self.config.bpm, on_voice_end=self._voice_ended)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.address: tuple[str, int] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._conn_ids = 0

    # ---- lifecycle -----------------------------------------------------------------------------

    async def _open(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        host, port = self.config.host, self.config.port
        for attempt in range(20):
            transport, _ = await self.loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port),
            )
            bound_port = transport.get_extra_info("sockname")[1]
            if not self.config.tcp:
                break
            try:
                self._tcp = await self.loop.create_server(lambda: _TcpConnection(self), host, bound_port,
                                                          reuse_address=True)
                break
            except OSError:
                transport.close()
                if port != 0 or attempt == 19:
                    raise
        self._udp = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass
        self.address = (host, bound_port)

    async def _serve(self, ready: threading.Event | None = None) -> None:
        try:
            await self._open()
        finally:
            if ready is not None:
                ready.set()
        assert self._stopped is not None
        await self._stopped.wait()
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()

    def start(self) -> tuple[str, int]:
        """Serve from a background thread; returns the bound (host, port)."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._serve(ready))
            except BaseException as exc:  # surfaced to the caller of start()
                errors.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="seqvae-osc", daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        if self.address is None:
            raise RuntimeError("the OSC server did not start within 30 s")
        return self.address

    def serve_forever(self, on_ready: Any = None) -> None:
        """Serve in this thread until stop() or Ctrl-C."""

        async def main() -> None:
            await self._open()
            assert self.loop is not None and self._stopped is not None
            for sig in (signal.SIGINT, signal.SIGTERM):  # a clean stop: notes off, files closed
                try:
                    self.loop.add_signal_handler(sig, self._stopped.set)
                except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
                    pass
            if on_ready is not None:
                on_ready(self.address)
            await self._stopped.wait()

        try:
            asyncio.run(main())
        finally:
            self.close_parts()

    def stop(self) -> None:
        if self.loop is not None and self._stopped is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.close_parts()

    def close_parts(self) -> None:
        self.player.close()
        self.worker.close()

    # ---- clients -------------------------------------------------------------------------------

    def allowed(self, host: str) -> bool:
        if _is_loopback(host):
            return True
        if not self.config.allow_remote:
            return False
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if getattr(address, "ipv4_mapped", None) is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def may_send_to(self, host: str, client: Client) -> bool:
        resolved = self.resolve_host(host)
        return resolved == client.host or self.allowed(resolved)

    @staticmethod
    def resolve_host(host: str) -> str:
        if host == "localhost":
            return "127.0.0.1"
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            raise RequestError(f"host {host!r} is not an IP address: send e.g. 127.0.0.1") from None

    @property
    def client_count(self) -> int:
        return len(self.clients)

    def _register(self, client: Client) -> Client:
        """Add a client, forgetting the least recently heard idle UDP client when full; TooManyClients if none is."""
        if len(self.clients) >= self.config.max_clients:
            playing = {key[0] for key in self.player.playing()}
            for key, old in list(self.clients.items()):
                if old.tcp is None and old.idle and key not in playing:
                    del self.clients[key]
                    break
            else:
                raise TooManyClients(f"busy: {len(self.clients)} clients are active, the limit is "
                                     f"{self.config.max_clients}; try again when one finishes")
        self.clients[client.key] = client
        return client

    def client_for_udp(self, host: str, port: int) -> Client:
        reply_port = self.config.reply_port
        key = ("host", host, reply_port) if reply_port else ("udp", host, port)
        client = self.clients.get(key)
        if client is None:
            client = self._register(Client(key, host, (host, reply_port or port), is_local=_is_loopback(host),
                                           fixed_reply=bool(reply_port)))
        else:
            self.clients.move_to_end(key)
        return client

    def client_for_tcp(self, conn: _TcpConnection, host: str, port: int) -> Client:
        if self.config.reply_port:
            return self.client_for_udp(host, port)
        self._conn_ids += 1
        return self._register(Client(("tcp", self._conn_ids), host, None, tcp=conn, is_local=_is_loopback(host)))

    def forget(self, client: Client) -> None:
        """A TCP connection closed: its voices stop and its slots go."""
        if client.tcp is None:
            return
        self.player.stop([key for key in self.player.playing() if key[0] == client.key])
        self.clients.pop(client.key, None)

    def check_room(self, client: Client, names: list[str]) -> None:
        new = [name for name in dict.fromkeys(names) if name not in client.slots]
        if len(client.slots) + len(new) > self.config.max_slots:
            raise RequestError(
                f"you have {len(client.slots)} slots, the limit is {self.config.max_slots}: reuse slot names "
                "or free some with /seqvae/clear slot"
            )

    def store(self, client: Client, name: str, melody: Melody, z: np.ndarray) -> Melody:
        """Put a melody (at the server tempo) and its latent in a slot; a playing voice switches at the next bar."""
        if melody.bpm != self.player.bpm:
            melody = replace(melody, bpm=self.player.bpm)
        client.slots[name] = Slot(melody, np.asarray(z, dtype=np.float32))
        self.player.update((client.key, name), melody)
        return melody

    def _voice_ended(self, key: Hashable, slot: str) -> None:
        if self.loop is None:
            return

        def tell() -> None:
            client = self.clients.get(key[0])  # type: ignore[index]
            if client is not None:
                self.respond(client, [("/seqvae/stopped", [slot])])

        try:
            self.loop.call_soon_threadsafe(tell)
        except RuntimeError:  # the loop has closed
            pass

    # ---- requests ------------------------------------------------------------------------------

    def handle_datagram(self, data: bytes, addr: tuple) -> None:
        host, port = addr[0], addr[1]
        if not self.allowed(host):
            self.stats.dropped += 1
            return
        try:
            client = self.client_for_udp(host, port)
        except TooManyClients as exc:
            self.stats.busy += 1
            if self._udp is not None:
                self._udp.sendto(encode_message(protocol.ERROR, [_address_hint(data), str(exc)]),
                                 (host, self.config.reply_port or port))
            return
        self.handle_packet(client, data)

    def handle_packet(self, client: Client, data: bytes) -> None:
        self.stats.packets += 1
        if len(data) > self.config.max_packet:
            self.respond(client, [protocol.error_message(
                _address_hint(data), f"packet of {len(data)} bytes is over the {self.config.max_packet}-byte limit: "
                "send at most 1024 notes per /seqvae/encode")])
            return
        try:
            messages = parse_packet(data)
        except OscParseError as exc:
            self.respond(client, [protocol.error_message(_address_hint(data), str(exc))])
            return
        for msg in messages:
            self.stats.messages += 1
            try:
                delay = protocol.check_time(msg.run_at, MAX_SCHEDULE_AHEAD_S)
                if delay > 0.0005:
                    if client.scheduled >= MAX_SCHEDULED_PER_CLIENT:
                        self._refuse_now(client, msg.address, f"busy: {client.scheduled} bundled messages wait "
                                                              "for their time already; send fewer future bundles")
                        continue
                    client.scheduled += 1
                    assert self.loop is not None
                    self.loop.call_later(delay, self._run_scheduled, client, msg.address, msg.args)
                    continue
            except RequestError as exc:
                self.respond(client, [protocol.error_message(msg.address, str(exc))])
                continue
            self.dispatch(client, msg.address, msg.args)

    def _refuse_now(self, client: Client, address: str, text: str) -> None:
        """A 'busy' answer sent at once, ahead of the replies the client waits for: queueing it behind
        them would let a flood grow the queue it is refused for."""
        self.stats.busy += 1
        self.stats.errors += 1
        self._send(client, encode_message(protocol.ERROR, [address, text]))

    def _run_scheduled(self, client: Client, address: str, args: tuple) -> None:
        client.scheduled -= 1
        self.dispatch(client, address, args)

    def dispatch(self, client: Client, address: str, args: tuple) -> None:
        """Take a request in arrival order; it runs now unless it reads slots that earlier work will fill."""
        if len(client.tickets) >= MAX_PENDING_PER_CLIENT:
            self._refuse_now(client, address, f"busy: {len(client.tickets)} of your requests are waiting; "
                                              "wait for replies")
            return
        ticket = Ticket(address)
        client.tickets.append(ticket)
        if client.blocked or not self._start(client, ticket, address, args):
            client.blocked.append((ticket, address, args))

    def _start(self, client: Client, ticket: Ticket, address: str, args: tuple) -> bool:
        """Run a request's handler; False (nothing done) when it must wait for pending slot writes."""
        try:
            route = protocol.ROUTES.get(address)
            if route is None:
                raise RequestError(protocol.unknown_address(address))
            if route.variadic:
                fixed = len(route.params)
                values = bind(address, route.params, tuple(args[:fixed]))
                values.append(tuple(args[fixed:]))
            else:
                values = bind(address, route.params, tuple(args))
            if client.pending_writes and self._waits(route, values, client):
                return False
            reply = route.handler(self, client, *values)
        except ValueError as exc:  # RequestError, or an engine check with its own message
            self._finish(client, ticket, [protocol.error_message(address, str(exc))])
            return True
        except Exception as exc:
            log.exception("handler for %s failed", address)
            self._finish(client, ticket, [protocol.error_message(address, f"internal error: {exc}")])
            return True
        if isinstance(reply, list):
            self._finish(client, ticket, reply)
        else:
            self._submit(client, ticket, address, reply)
        return True

    @staticmethod
    def _waits(route: protocol.Route, values: list, client: Client) -> bool:
        if route.barrier:
            return True
        return any(values[i] in client.pending_writes for i, param in enumerate(route.params)
                   if param.name in route.reads)

    def _submit(self, client: Client, ticket: Ticket, address: str, work: protocol.DecodeWork | protocol.CallWork
                ) -> None:
        loop = self.loop
        assert loop is not None

        def done(result: Any) -> None:
            try:
                loop.call_soon_threadsafe(self._complete, client, ticket, address, work, result)
            except RuntimeError:  # shutting down
                pass

        if isinstance(work, protocol.DecodeWork):
            job: DecodeJob | CallJob = DecodeJob(work.z, work.temperature, work.seed, done)
        else:
            job = CallJob(work.fn, done)
        if not self.worker.submit(job):
            self.stats.busy += 1
            self._finish(client, ticket, [protocol.error_message(
                address, f"busy: {self.worker.waiting} requests are queued for the model; try again in a moment")])
            return
        ticket.writes = tuple(work.writes)
        client.pending_writes.update(ticket.writes)

    def _complete(self, client: Client, ticket: Ticket, address: str,
                  work: protocol.DecodeWork | protocol.CallWork, result: Any) -> None:
        if isinstance(result, ValueError):
            ticket.messages = [protocol.error_message(address, str(result))]
        elif isinstance(result, Exception):
            log.error("%s failed: %r", address, result)
            ticket.messages = [protocol.error_message(address, f"internal error: {type(result).__name__}: {result}")]
        else:
            ticket.work, ticket.result = work, result
        ticket.done = True
        self._flush(client)

    def _finish(self, client: Client, ticket: Ticket, messages: list[protocol.Message]) -> None:
        ticket.messages = messages
        ticket.done = True
        self._flush(client)

    def respond(self, client: Client, messages: list[protocol.Message]) -> None:
        """Replies that need no work, kept in order behind the client's earlier requests."""
        ticket = Ticket()
        client.tickets.append(ticket)
        self._finish(client, ticket, messages)

    def _flush(self, client: Client) -> None:
        """Send finished replies in order (storing results in slots as they go), then start waiting requests."""
        if client.flushing:  # re-entered from a request started below: the loop here picks it up
            return
        client.flushing = True
        try:
            progress = True
            while progress:
                progress = False
                tickets = client.tickets
                while tickets and tickets[0].done:
                    self._deliver(client, tickets.popleft())
                    progress = True
                while client.blocked:
                    ticket, address, args = client.blocked[0]
                    if not self._start(client, ticket, address, args):
                        break
                    client.blocked.popleft()
                    progress = True
        finally:
            client.flushing = False

    def _deliver(self, client: Client, ticket: Ticket) -> None:
        messages = ticket.messages
        if ticket.work is not None:
            try:
                messages = ticket.work.finish(ticket.result)
            except ValueError as exc:
                messages = [protocol.error_message(ticket.address, str(exc))]
            except Exception as exc:
                log.exception("finishing %s failed", ticket.address)
                messages = [protocol.error_message(ticket.address, f"internal error: {exc}")]
        if ticket.writes:
            client.pending_writes.subtract(ticket.writes)
            for name in ticket.writes:
                if client.pending_writes[name] <= 0:
                    del client.pending_writes[name]
        for address, args in messages:
            if address == protocol.ERROR:
                self.stats.errors += 1
            try:
                packet = encode_message(address, args)
            except (TypeError, OverflowError) as exc:
                log.error("reply %s %r could not be encoded: %s", address, args[:8], exc)
                packet = encode_message(protocol.ERROR, [ticket.address, f"internal error: reply not sendable ({exc})"])
            self._send(client, packet)

    def _send(self, client: Client, packet: bytes) -> None:
        if client.reply_addr is not None and self._udp is not None:
            try:
                self._udp.sendto(packet, client.reply_addr)
            except OSError as exc:
                log.debug("reply to %s failed: %s", client.reply_addr, exc)
        elif client.tcp is not None:
            client.tcp.send(packet)


def _address_hint(data: bytes) -> str:
    """The address of a packet that could not be parsed, when it has a readable one, else '?'."""
    if data.startswith(b"/"):
        end = data.find(b"\x00", 0, 256)
        if end > 0:
            text = data[:end].decode("utf-8", errors="replace")
            if text.isprintable():
                return text
    return "?"

