"""UDP and TCP on one port: who may send, stream framing, and the serving loop's lifecycle.

One asyncio loop receives; it drops senders the allow-list refuses and hands everything else to a
`Receiver` (the server), which finds the client and answers. The transport knows senders by
address and connection, not clients: a TCP connection carries whatever handle the receiver gave it
(None until its first request). Connections cost a file descriptor each, so the transport bounds
them itself: at most `max_per_host` open from one address, a half-sent packet closed after
`frame_timeout_s`, and a connection that holds nothing closed after `idle_timeout_s` of silence.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from seqvae.server.osc import FramingError, StreamDeframer, encode_message

log = logging.getLogger("seqvae.server")

TCP_WRITE_LIMIT = 4 * 1024 * 1024
REFUSAL_LOG_S = 10.0  # refused connections are logged at most once per host this often


@dataclass
class ServerStats:
    """Counts for logs and tests; the transport, the server and the request order each count their part."""

    packets: int = 0
    messages: int = 0
    errors: int = 0
    dropped: int = 0  # from addresses not on the allow-list
    busy: int = 0
    tcp_connections: int = 0  # accepted
    refused_connections: int = 0  # over --max-connections
    timed_out: int = 0  # closed by --idle-timeout or --frame-timeout
    reply_pauses: int = 0  # long replies that gave the loop back between slices


@dataclass(frozen=True)
class ConnectionLimits:
    """What one host's TCP connections may hold: how many, how long silent, how long mid-packet."""

    max_per_host: int = 64
    idle_timeout_s: float = 60.0  # a connection that holds nothing, silent this long, is closed
    frame_timeout_s: float = 10.0  # a packet started but not finished this long ago closes the connection

    @property
    def sweep_interval_s(self) -> float:
        return min(1.0, max(0.02, min(self.idle_timeout_s, self.frame_timeout_s) / 4))


def is_loopback(host: str) -> bool:
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


class AllowList:
    """Who may send requests (and be sent note events): this machine always; other machines only when
    the server was started with --allow-remote and --allow names them."""

    def __init__(self, host: str, allow_remote: bool = False, allow: tuple[str, ...] | list[str] = ()) -> None:
        """Refuse to listen beyond loopback unless asked explicitly, with an allow-list."""
        self.networks = parse_allow_list(allow)
        self.allow_remote = allow_remote
        if not is_loopback(host):
            if not allow_remote:
                raise ValueError(
                    f"--host {host} would accept requests from other machines: add --allow-remote and "
                    "--allow ADDRESS[,ADDRESS...] naming the machines that may connect (or keep --host 127.0.0.1)"
                )
            if not self.networks:
                raise ValueError("--allow-remote needs --allow ADDRESS[,ADDRESS...] naming who may connect, "
                                 "e.g. --allow 192.168.1.20")

    def allows(self, host: str) -> bool:
        if is_loopback(host):
            return True
        if not self.allow_remote:
            return False
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if getattr(address, "ipv4_mapped", None) is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


class Receiver(Protocol):
    """What the transport hands allowed traffic to; a connection's `client` is the receiver's handle or None."""

    def accept_datagram(self, data: bytes, host: str, port: int) -> None: ...

    def accept_stream_packet(self, conn: TcpConnection, data: bytes) -> bool:
        """True when the packet was a request: only requests count as hearing from the connection."""

    def handle_framing_error(self, conn: TcpConnection, error: FramingError) -> None: ...

    def connection_closed(self, conn: TcpConnection) -> None: ...

    def holds_nothing(self, client: Any) -> bool:
        """True when closing the client's connection would lose nothing (no slots, nothing in flight)."""


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, transport: OscTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            self.transport.handle_datagram(data, addr)
        except Exception:  # asyncio would close the UDP transport on an escaped exception: never let one out
            log.exception("request from %s failed", addr)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable after a reply
        log.debug("udp: %s", exc)


class TcpConnection(asyncio.Protocol):
    """One TCP client's stream: OSC 1.0 size-prefixed or OSC 1.1 SLIP frames, replies framed the same way."""

    def __init__(self, listener: OscTransport) -> None:
        self.listener = listener  # counts this host's connections and closes stale ones
        self.receiver = listener.receiver
        self.transport: asyncio.Transport | None = None
        self.deframer = StreamDeframer(listener.max_packet)
        self.client: Any = None  # set by the receiver at the connection's first request
        self.host, self.port = "?", 0
        self.heard_at = time.monotonic()  # the last request, else the connection's opening
        self.partial_since: float | None = None  # when the packet now half-arrived began
        self.counted = False  # in the listener's per-host count

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.host, self.port = peer[0], peer[1]
        self.listener.opened(self)

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        now = time.monotonic()
        try:
            items = self.deframer.feed(data)
            if items or not self.deframer.partial:  # a packet ended: the next one starts its own clock
                self.partial_since = now if self.deframer.partial else None
            elif self.partial_since is None:
                self.partial_since = now
            for item in items:
                if isinstance(item, FramingError):
                    self.receiver.handle_framing_error(self, item)
                    if item.fatal:
                        self.close()
                        return
                elif self.receiver.accept_stream_packet(self, item):
                    self.heard_at = now
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
        self.listener.closed(self)
        if self.client is not None:
            self.receiver.connection_closed(self)


class OscTransport:
    """Listens on host:port (UDP, and TCP unless `tcp` is off); `start()` from a thread, `serve_forever()` here."""

    def __init__(self, receiver: Receiver, allow: AllowList, stats: ServerStats, host: str, port: int,
                 max_packet: int, tcp: bool = True, limits: ConnectionLimits | None = None) -> None:
        self.receiver = receiver
        self.allow = allow
        self.stats = stats
        self.host, self.port, self.max_packet, self.tcp = host, port, max_packet, tcp
        self.limits = limits or ConnectionLimits()
        self.connections: dict[str, set[TcpConnection]] = {}  # open connections by host
        self.loop: asyncio.AbstractEventLoop | None = None
        self.address: tuple[str, int] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._sweeper: asyncio.Task | None = None
        self._refused: dict[str, tuple[int, float]] = {}  # host -> (refusals not yet logged, last log time)

    # ---- TCP connections: who may open one, and when one is closed for them -----------------------

    def opened(self, conn: TcpConnection) -> None:
        """A new connection: refused when its host is not allowed or already has its share open."""
        host = conn.host
        if not self.allow.allows(host):
            self.stats.dropped += 1
            conn.close()
            return
        mine = self.connections.setdefault(host, set())
        if len(mine) >= self.limits.max_per_host:
            self.stats.refused_connections += 1
            conn.send(encode_message("/seqvae/error", ["?", (
                f"too many connections: {host} already has {len(mine)} open, the limit is "
                f"{self.limits.max_per_host} (seqvae serve --max-connections); close some or reuse one")]))
            conn.close()
            self._log_refusal(host, len(mine))
            return
        mine.add(conn)
        conn.counted = True
        self.stats.tcp_connections += 1

    def closed(self, conn: TcpConnection) -> None:
        if conn.counted:
            conn.counted = False
            mine = self.connections.get(conn.host)
            if mine is not None:
                mine.discard(conn)
                if not mine:
                    del self.connections[conn.host]

    def _log_refusal(self, host: str, open_now: int) -> None:
        """One log line per host per 10 s however many connections a flood opens (the sweep logs the rest)."""
        count, last = self._refused.get(host, (0, -REFUSAL_LOG_S))
        now = time.monotonic()
        if now - last < REFUSAL_LOG_S:
            self._refused[host] = (count + 1, last)
            return
        log.warning("refused %d TCP connection(s) from %s: it has %d open, the --max-connections limit "
                    "(more refusals are counted and logged every %g s)", count + 1, host, open_now, REFUSAL_LOG_S)
        self._refused[host] = (0, now)

    def _flush_refusals(self, now: float) -> None:
        for host, (count, last) in list(self._refused.items()):
            if now - last < REFUSAL_LOG_S:
                continue
            if count:
                log.warning("refused %d more TCP connection(s) from %s over the --max-connections limit", count, host)
                self._refused[host] = (0, now)
            else:
                del self._refused[host]

    def close_stale(self, now: float | None = None) -> int:
        """Close connections stuck mid-packet past the frame timeout, and silent ones that hold nothing."""
        now = time.monotonic() if now is None else now
        self._flush_refusals(now)
        limits = self.limits
        half_sent = idle = 0
        for conn in [conn for mine in self.connections.values() for conn in mine]:
            if conn.partial_since is not None and now - conn.partial_since > limits.frame_timeout_s:
                half_sent += 1
                conn.close()
            elif now - conn.heard_at > limits.idle_timeout_s and (
                    conn.client is None or self.receiver.holds_nothing(conn.client)):
                idle += 1
                conn.close()
        if half_sent:
            log.info("closed %d TCP connection(s) that sent part of a packet and stopped for %g s (--frame-timeout)",
                     half_sent, limits.frame_timeout_s)
        if idle:
            log.info("closed %d TCP connection(s) that hold nothing and were silent for %g s (--idle-timeout)",
                     idle, limits.idle_timeout_s)
        self.stats.timed_out += half_sent + idle
        return half_sent + idle

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.limits.sweep_interval_s)
            try:
                self.close_stale()
            except Exception:  # the sweep must outlive any one bad connection
                log.exception("closing stale connections failed")

    def handle_datagram(self, data: bytes, addr: tuple) -> None:
        host, port = addr[0], addr[1]
        if not self.allow.allows(host):
            self.stats.dropped += 1
            return
        self.receiver.accept_datagram(data, host, port)

    def send_udp(self, packet: bytes, addr: tuple[str, int]) -> None:
        if self._udp is None:
            return
        try:
            self._udp.sendto(packet, addr)
        except OSError as exc:
            log.debug("reply to %s failed: %s", addr, exc)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def _open(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        host, port = self.host, self.port
        for attempt in range(20):
            transport, _ = await self.loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port),
            )
            bound_port = transport.get_extra_info("sockname")[1]
            if not self.tcp:
                break
            try:
                self._tcp = await self.loop.create_server(lambda: TcpConnection(self), host, bound_port,
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
        if self._tcp is not None:
            self._sweeper = self.loop.create_task(self._sweep())

    async def _serve(self, ready: threading.Event | None = None) -> None:
        try:
            await self._open()
        finally:
            if ready is not None:
                ready.set()
        assert self._stopped is not None
        await self._stopped.wait()
        self._close()

    def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
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

    def serve_forever(self, on_ready: Callable[[tuple[str, int]], Any] | None = None) -> None:
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
            self._close()

        asyncio.run(main())

    def stop(self) -> None:
        if self.loop is not None and self._stopped is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
