"""OSC on the wire: packets in (messages and bundles, through python-osc), replies out, TCP framing.

Incoming messages are parsed by python-osc's `OscMessage`; bundles are walked here because
python-osc's bundle parser trusts element sizes (a negative size loops forever) and recurses
without limit, and a server facing arbitrary bytes must not. Replies are encoded here with one
`struct.pack` per message: python-osc's builder costs ~120 us for a 32-note reply, this ~20 us,
and replies sit on the round-trip path that the latency targets measure.

TCP carries OSC 1.0 (each packet after a big-endian int32 size, what liblo and sclang send) or
OSC 1.1 (SLIP, double-END framed); `StreamDeframer` picks one per connection from its first byte.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message import ParseError as PyOscParseError

BUNDLE_PREFIX = b"#bundle\x00"
MAX_BUNDLE_DEPTH = 8
MAX_MESSAGES_PER_PACKET = 256
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP epoch) to 1970-01-01
# Type tags python-osc parses; anything else ('c', 'S', 'I' ...) is refused with a message.
SUPPORTED_TYPE_TAGS = frozenset("ihfdsbrmtTFN[]")

SLIP_END, SLIP_ESC, SLIP_ESC_END, SLIP_ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class OscParseError(ValueError):
    """Bytes that are not an OSC packet; the message says what was wrong."""


@dataclass(frozen=True)
class IncomingMessage:
    """One message of a packet, with the time it should run (None = immediately, unix seconds)."""

    address: str
    args: tuple
    run_at: float | None = None


def _read_padded_string(data: bytes, index: int) -> tuple[str, int]:
    end = data.find(b"\x00", index)
    if end < 0:
        raise OscParseError("an OSC string is not terminated by a zero byte")
    text = data[index:end].decode("utf-8", errors="replace")
    return text, end + 4 - (end % 4)


def ntp_to_unix(timetag: int) -> float | None:
    """An OSC timetag as unix seconds; None for the special value 1 ('immediately')."""
    if timetag == 1:
        return None
    return (timetag >> 32) - NTP_UNIX_OFFSET + (timetag & 0xFFFFFFFF) / 2**32


def unix_to_ntp(seconds: float) -> int:
    whole = math.floor(seconds)
    return ((whole + NTP_UNIX_OFFSET) << 32) | int((seconds - whole) * 2**32)


def parse_message(data: bytes) -> IncomingMessage:
    """One OSC message; unsupported type tags and truncated arguments raise OscParseError."""
    if not data.startswith(b"/"):
        raise OscParseError("an OSC message must start with an address beginning with '/'")
    if len(data) % 4:
        raise OscParseError(f"an OSC message is a multiple of 4 bytes long, this one is {len(data)}")
    address, index = _read_padded_string(data, 0)
    if index < len(data):
        tags, _ = _read_padded_string(data, index)
        if not tags.startswith(","):
            raise OscParseError("the OSC type tag string must start with ','")
        unsupported = sorted(set(tags[1:]) - SUPPORTED_TYPE_TAGS)
        if unsupported:
            raise OscParseError(
                f"OSC type tag {unsupported[0]!r} is not supported: send ints (i), floats (f) and strings (s)"
            )
    try:
        parsed = OscMessage(data)
    except (PyOscParseError, IndexError, ValueError, struct.error, OverflowError):
        tags = _read_padded_string(data, index)[0] if index < len(data) else ","
        raise OscParseError(
            f"malformed OSC message: its arguments do not match its type tags {tags[:40]!r} "
            "(a value is missing or cut short)"
        ) from None
    return IncomingMessage(address, tuple(parsed.params))


def parse_packet(data: bytes) -> list[IncomingMessage]:
    """A datagram or stream frame -> its messages in order, bundles flattened with their run times."""
    out: list[IncomingMessage] = []
    _parse_into(bytes(data), None, 0, out)
    return out


def _parse_into(data: bytes, outer_time: float | None, depth: int, out: list[IncomingMessage]) -> None:
    if data.startswith(b"/"):
        msg = parse_message(data)
        out.append(IncomingMessage(msg.address, msg.args, outer_time) if outer_time is not None else msg)
        return
    if not data.startswith(BUNDLE_PREFIX):
        head = data[:8]
        raise OscParseError(f"not an OSC packet: it starts with {head!r}, not '/' (a message) or '#bundle'")
    if depth >= MAX_BUNDLE_DEPTH:
        raise OscParseError(f"bundles nested more than {MAX_BUNDLE_DEPTH} deep")
    if len(data) < 16:
        raise OscParseError("an OSC bundle needs a 8-byte timetag after '#bundle'")
    run_at = ntp_to_unix(struct.unpack_from(">Q", data, 8)[0])
    if run_at is None:
        run_at = outer_time
    elif outer_time is not None:
        run_at = max(run_at, outer_time)  # an inner bundle never runs before its enclosing one
    index = 16
    while index < len(data):
        if index + 4 > len(data):
            raise OscParseError("a bundle element size is cut short")
        (size,) = struct.unpack_from(">i", data, index)
        index += 4
        if size <= 0 or size % 4 or index + size > len(data):
            raise OscParseError(f"bundle element size {size} does not fit the {len(data)}-byte bundle")
        _parse_into(data[index : index + size], run_at, depth + 1, out)
        if len(out) > MAX_MESSAGES_PER_PACKET:
            raise OscParseError(f"more than {MAX_MESSAGES_PER_PACKET} messages in one packet")
        index += size


def _pad_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return raw + b"\x00" * (4 - len(raw) % 4)


def encode_message(address: str, args: list | tuple = ()) -> bytes:
    """An OSC message of ints (i), floats (f) and strings (s) only: what Pd, Max and liblo all read."""
    tags = [","]
    fmt = [">"]
    values: list = []
    for arg in args:
        if isinstance(arg, bool):
            raise TypeError("replies carry no booleans: Pd and liblo reject T/F")
        if isinstance(arg, int):
            if not INT32_MIN <= arg <= INT32_MAX:
                raise OverflowError(f"{arg} does not fit an OSC int32")
            tags.append("i")
            fmt.append("i")
            values.append(arg)
        elif isinstance(arg, float):
            tags.append("f")
            fmt.append("f")
            values.append(arg)
        elif isinstance(arg, str):
            raw = _pad_string(arg)
            tags.append("s")
            fmt.append(f"{len(raw)}s")
            values.append(raw)
        else:
            raise TypeError(f"cannot send {type(arg).__name__} in an OSC reply")
    return _pad_string(address) + _pad_string("".join(tags)) + struct.pack("".join(fmt), *values)


def encode_bundle(elements: list[bytes], run_at: float | None = None) -> bytes:
    """A bundle of already encoded messages or bundles; run_at None means 'immediately'."""
    tag = 1 if run_at is None else unix_to_ntp(run_at)
    parts = [BUNDLE_PREFIX, struct.pack(">Q", tag)]
    for element in elements:
        parts.append(struct.pack(">i", len(element)))
        parts.append(element)
    return b"".join(parts)


# ---- TCP framing ---------------------------------------------------------------------------


def slip_encode(packet: bytes) -> bytes:
    """Double-END SLIP framing (OSC 1.1)."""
    body = packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


def slip_decode(frame: bytes) -> bytes:
    if b"\xdb" not in frame:
        return frame
    out = bytearray()
    it = iter(frame)
    for byte in it:
        if byte == SLIP_ESC:
            nxt = next(it, None)
            if nxt == SLIP_ESC_END:
                out.append(SLIP_END)
            elif nxt == SLIP_ESC_ESC:
                out.append(SLIP_ESC)
            else:
                raise OscParseError("bad SLIP escape: 0xDB must be followed by 0xDC or 0xDD")
        else:
            out.append(byte)
    return bytes(out)


def size_prefix_encode(packet: bytes) -> bytes:
    """OSC 1.0 stream framing: big-endian int32 length, then the packet."""
    return struct.pack(">i", len(packet)) + packet


class FramingError(ValueError):
    """A stream that broke its framing; `fatal` means the connection cannot resynchronise."""

    def __init__(self, message: str, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


class StreamDeframer:
    """Splits a TCP byte stream into OSC packets, detecting OSC 1.0 or 1.1 framing from the first byte.

    A SLIP stream starts with END (0xC0), or with the packet itself ('/' or '#') when the sender
    only ends frames; a size-prefixed stream starts with the high byte of a length, which is 0x00
    for any packet under 16 MB.
    """

    def __init__(self, max_packet: int = 65536) -> None:
        self.max_packet = max_packet
        self.mode: str | None = None  # 'slip' | 'size'
        self._buf = bytearray()
        self._skipping = False  # SLIP: discarding an oversized frame up to its END

    @property
    def partial(self) -> bool:
        """True while a packet has started arriving but is not complete (a length prefix or SLIP frame open)."""
        return bool(self._buf) or self._skipping

    def frame(self, packet: bytes) -> bytes:
        """Frame an outgoing packet the way this connection frames its own."""
        return slip_encode(packet) if self.mode == "slip" else size_prefix_encode(packet)

    def feed(self, data: bytes) -> list[bytes | FramingError]:
        """Packets completed by `data`, in order, with FramingErrors where the stream was bad."""
        if not data:
            return []
        if self.mode is None:
            first = data[0]
            self.mode = "slip" if first in (SLIP_END, ord("/"), ord("#")) else "size"
        self._buf += data
        return self._feed_slip() if self.mode == "slip" else self._feed_size()

    def _feed_size(self) -> list[bytes | FramingError]:
        out: list[bytes | FramingError] = []
        buf = self._buf
        start = 0
        while len(buf) - start >= 4:
            (size,) = struct.unpack_from(">i", buf, start)
            if size <= 0 or size > self.max_packet:
                self._buf = bytearray()
                out.append(FramingError(
                    f"OSC 1.0 size prefix {size} is outside 1..{self.max_packet} bytes; closing the connection",
                    fatal=True,
                ))
                return out
            if len(buf) - start - 4 < size:
                break
            out.append(bytes(buf[start + 4 : start + 4 + size]))
            start += 4 + size
        del buf[:start]
        return out

    def _feed_slip(self) -> list[bytes | FramingError]:
        out: list[bytes | FramingError] = []
        buf = self._buf
        start = 0
        while True:
            end = buf.find(b"\xc0", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif end > start:
                try:
                    out.append(slip_decode(bytes(buf[start:end])))
                except OscParseError as exc:
                    out.append(FramingError(str(exc), fatal=False))
            start = end + 1
        del buf[:start]
        if len(buf) > 2 * self.max_packet + 2:  # escapes can double a frame's size
            buf.clear()
            if not self._skipping:
                self._skipping = True
                out.append(FramingError(
                    f"SLIP frame longer than {self.max_packet} bytes; it is dropped", fatal=False,
                ))
        return out

