"""The fast MIDI reader: symusic's compiled parser, giving exactly the score the mido reader gives.

symusic groups notes by (channel, program) without saying which channel or track, drops notes never
released and keeps no text events. So the file is parsed with a tail put before each track's
end-of-track: a marker naming the track (where it ends), a note-off there for every pitch of every
channel the track may use (a note never released ends with its track, as mido's reading has it), a
second round one tick later (a pitch still held: held twice over), and one probe note per channel whose
pitch is the channel and whose velocity the track (which group is which, and which program each channel
ends on). Chord texts and unusual track names come from mido reading just that track. Wherever this
cannot vouch for the mido result (a pitch held twice over, a channel's notes under two programs, two
meters at one step, tempi spread over tracks, short meta events), the reader returns None and
read_midi asks mido.
"""

from __future__ import annotations

import io
import struct
from functools import lru_cache
from pathlib import Path

import mido
import numpy as np

from seqvae.codec.meter import STEPS_PER_QUARTER, Meter
from seqvae.codec.midi_score import CHORD_TEXT_PREFIX, DRUM_CHANNEL, Line, MidiScore, NoteArray, line_name

try:
    import symusic
except ImportError:  # an optional speed-up: mido reads everything without it
    symusic = None

END_MARKER = "seqvae:track-end:"  # then the track's number
MAX_TRACKS = 127  # a probe's velocity is its track's number + 1
MIDO_META_TYPES = frozenset((0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x09, 0x20, 0x21, 0x2F, 0x51, 0x54, 0x58,
                             0x59, 0x7F))  # the meta events mido 1.3 decodes
_FILE_HEADER = struct.Struct(">4sLHHH")
_CHUNK_HEADER = struct.Struct(">4sL")
_END_OF_TRACK = b"\xff\x2f\x00"
_REFUSED_SYSTEM = b"\xfa\xfb\xfc"  # start, continue, stop: mido refuses them in a file
_SYSTEM_DATA = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFE: 0}  # data bytes of the system messages mido reads
_SYSTEM_STATUS = bytes((0xF0, 0xF7, *_SYSTEM_DATA))
_CHANNEL_STATUS = tuple(range(0x90, 0xA0)) + tuple(range(0xC0, 0xD0))  # note-on and program change, by channel
_UNKNOWN = -1  # a channel's program after a track that may or may not have set it to 0


def symusic_available() -> bool:
    return symusic is not None


def read_with_symusic(path: str | Path) -> MidiScore | None:
    """The file's score as read_with_mido gives it, or None where only mido can say (or symusic is missing)."""
    if symusic is None:
        return None
    data = Path(path).read_bytes()
    layout = _track_chunks(data)
    if layout is None or len(layout[1]) > MAX_TRACKS:
        return None
    division, chunks = layout
    parsed = _parse_with_tails(chunks, division)
    if parsed is None:
        return None
    score, groups = parsed
    ticks_per_step = division / STEPS_PER_QUARTER
    meters = _meters(score, ticks_per_step)
    tempo = _first_tempo(score, chunks)
    if meters is None or tempo is False:
        return None
    lines: list[Line] = []
    chords: list[tuple[int, str]] = []
    programs: dict[int, int] = {}  # channel -> program set by an earlier track (mido's programs carry over)
    last_tick = 0
    for index, chunk in enumerate(chunks):
        notes, probes, name = groups[index]
        name, texts = _names_and_texts(chunk, name, bool(notes))
        if texts is None:
            return None
        for channel, program in sorted(notes):
            if program == 0 and programs.get(channel, 0) != 0:
                return None  # no program change here, or one back to 0: mido's program is not knowable here
            time, end, pitch, velocity = notes[(channel, program)]
            start = np.rint(time / ticks_per_step).astype(np.int64)
            stop = np.maximum(np.rint(end / ticks_per_step).astype(np.int64), start + 1)
            order = np.lexsort((-pitch, start))
            lines.append(Line(line_name(name, index, channel), program, channel == DRUM_CHANNEL,
                              NoteArray(pitch[order], start[order], stop[order], velocity[order])))
            last_tick = max(last_tick, int(end.max()))
        for channel, program in probes.items():
            if program != 0:
                programs[channel] = program
            elif programs.get(channel, 0) != 0:
                programs[channel] = _UNKNOWN
        chords += [(int(round(tick / ticks_per_step)), symbol) for tick, symbol in texts]
    if 0 not in meters:
        meters[0] = Meter(4, 4)
    chords.sort(key=lambda c: c[0])
    meter_list = sorted(meters.items(), key=lambda kv: kv[0])
    return MidiScore(lines, meter_list, float(tempo or 120.0), int(round(last_tick / ticks_per_step)), chords)


def _parse_with_tails(chunks: list[bytes], division: int):
    """symusic over the file with every track's tail put in: the score, and per track its note groups by
    (channel, program), its channels' programs at its end and its name. None where mido must judge."""
    bodies = []
    for index, chunk in enumerate(chunks):
        if not chunk.endswith(_END_OF_TRACK) or chunk.count(_END_OF_TRACK) != 1 or not _plain_bytes(chunk):
            return None
        present = [status for status in _CHANNEL_STATUS if status in chunk]
        note_channels = tuple(status & 0x0F for status in present if status < 0xA0)
        probe_channels = tuple(sorted({status & 0x0F for status in present}))
        body = chunk[: -len(_END_OF_TRACK)] + _tail(note_channels, probe_channels, index)
        bodies.append(_CHUNK_HEADER.pack(b"MTrk", len(body)) + body)
    single = _FILE_HEADER.pack(b"MThd", 6, 1, len(chunks), division) + b"".join(bodies)
    try:
        score = symusic.Score.from_midi(single)
    except Exception:  # noqa: BLE001 - whatever symusic refuses, mido gets to judge
        return None
    ends = np.full(len(chunks), -1, dtype=np.int64)
    for marker in score.markers:
        if marker.text.startswith(END_MARKER):
            number = marker.text[len(END_MARKER):]
            if not number.isdigit() or int(number) >= len(chunks) or ends[int(number)] >= 0:
                return None  # the file holds a marker like ours
            ends[int(number)] = marker.time
    if (ends < 0).any() or any(not -7 <= k.key <= 7 or k.tonality not in (0, 1) for k in score.key_signatures):
        return None
    groups: list[tuple[dict, dict, str]] = [({}, {}, "") for _ in chunks]
    for group in score.tracks:
        columns = group.notes.numpy()
        if not len(columns["time"]):
            continue  # lyrics only
        time, velocity = columns["time"].astype(np.int64), columns["velocity"].astype(np.int64)
        track = np.minimum(velocity, len(chunks)) - 1  # a note's velocity is 1 or more
        probe = (velocity <= len(chunks)) & (time == ends[track] + 2) & (columns["duration"] == 1)
        if probe.sum() != 1:
            return None  # a channel's notes under two programs: only its last group has the probe
        index, channel = int(track[probe][0]), int(columns["pitch"][probe][0])
        notes, probes, _ = groups[index]
        probes[channel] = int(group.program)
        real = ~probe
        if real.any():
            stop = time[real] + columns["duration"][real].astype(np.int64)
            if stop.max() > ends[index]:
                return None  # closed by the second round of note-offs: a pitch held twice over at the end
            notes[(channel, int(group.program))] = (time[real], stop, columns["pitch"][real].astype(np.int64),
                                                    velocity[real])
            groups[index] = (notes, probes, group.name)
    return score, groups


def _meters(score, ticks_per_step: float) -> dict[int, Meter | None] | None:
    """First step -> meter, as mido's reading (the last in file order at a step) has it; None if that order
    is lost (two meters at one step: symusic sorts them by time across tracks)."""
    meters: dict[int, tuple[int, int]] = {}
    for signature in score.time_signatures:
        step = int(round(signature.time / ticks_per_step))
        meter = (signature.numerator, signature.denominator)
        if meters.setdefault(step, meter) != meter:
            return None
    return {step: _meter(*meter) for step, meter in meters.items()}


def _first_tempo(score, chunks: list[bytes]) -> float | None | bool:
    """The bpm of the first tempo in file order (None if there is none), or False where it is not knowable:
    tempi that differ, and not all in one track (symusic sorts them by time across tracks)."""
    tempos = [(t.time, t.mspq) for t in score.tempos]
    if len({mspq for _, mspq in tempos}) > 1:
        holding = [chunk.count(b"\xff\x51\x03") for chunk in chunks]
        if sorted(holding)[-1] != len(tempos) or sum(holding) != len(tempos) or _ambiguous_order(tempos[:2]):
            return False
    return mido.tempo2bpm(tempos[0][1]) if tempos else None


def _meter(numerator: int, denominator: int) -> Meter | None:
    try:
        return Meter(numerator, denominator)
    except ValueError:
        return None  # an unusable meter stops windows until the next one


def _track_chunks(data: bytes) -> tuple[int, list[bytes]] | None:
    """(ticks per quarter, each MTrk chunk's bytes) of a file mido would read as type 0 or 1; None otherwise."""
    if len(data) < _FILE_HEADER.size:
        return None
    tag, size, file_format, n_tracks, division = _FILE_HEADER.unpack_from(data)
    if tag != b"MThd" or size < 6 or file_format > 1 or not 0 < division < 0x8000 or n_tracks >= 0x8000:
        return None
    if file_format == 0 and n_tracks != 1:
        return None
    chunks, at = [], 8 + size
    for _ in range(n_tracks):
        if at + _CHUNK_HEADER.size > len(data):
            return None
        tag, length = _CHUNK_HEADER.unpack_from(data, at)
        at += _CHUNK_HEADER.size
        if tag != b"MTrk" or at + length > len(data):
            return None
        chunks.append(data[at : at + length])
        at += length
    return division, chunks


def _plain_bytes(chunk: bytes) -> bool:
    """Nothing mido reads otherwise than symusic: every meta event of a type mido knows (it drops the delta
    time of any other) and long enough for mido to decode (it refuses the file otherwise), a meter
    denominator under 2**8 (symusic's shift wraps), no start, continue or stop byte (mido refuses them),
    no running status straight after a system message (mido takes it for more of the message; a system
    exclusive one counts when it ends in 0xF7). Checks every byte that might start such an event, so a
    false alarm only sends the file to mido."""
    metas = []  # where each meta event starts and ends
    at = chunk.find(b"\xff", _varint(chunk, 0)[1])  # after the first delta
    while 0 <= at < len(chunk) - 1:
        kind = chunk[at + 1]
        length, data = _varint(chunk, at + 2)
        if kind not in MIDO_META_TYPES or not _decodable(kind, chunk[data : data + length], length):
            return False
        metas.append((at, data + length))
        at = chunk.find(b"\xff", _varint(chunk, data + length)[1])  # past its payload and the next delta
    if _next_status(chunk, 0, metas, _REFUSED_SYSTEM) >= 0:
        return False
    at = _next_status(chunk, 0, metas, _SYSTEM_STATUS)
    while at >= 0:
        if chunk[at] in (0xF0, 0xF7):
            length, after = _varint(chunk, at + 1)
            whole = length and after + length <= len(chunk) and chunk[after + length - 1] == 0xF7
            end = after + length if whole else None  # else a delta's byte, most likely
        else:
            end = at + 1 + _SYSTEM_DATA[chunk[at]]
        if end is not None:
            _, status = _varint(chunk, end)  # past the next event's delta
            if status >= len(chunk) or chunk[status] < 0x80:
                return False  # running status straight after a system message: mido reads it otherwise
        at = _next_status(chunk, at + 1 if end is None else status, metas, _SYSTEM_STATUS)
    return True


def _next_status(chunk: bytes, start: int, metas: list[tuple[int, int]], statuses: bytes = b"\xf0\xf7") -> int:
    """Where the next of `statuses` (system exclusive by default) that may start an event is, from `start`:
    not inside a meta event, and after the last byte of a delta time (under 0x80, where a longer delta's
    inner bytes are not); -1 if none."""
    while True:
        found = [i for i in (chunk.find(bytes((status,)), start) for status in statuses) if i >= 0]
        if not found:
            return -1
        at = min(found)
        inside = next((end for begin, end in metas if begin < at < end), None)
        if inside is None and (at == 0 or chunk[at - 1] < 0x80):
            return at
        start = inside or at + 1


def _decodable(kind: int, data: bytes, length: int) -> bool:
    """Whether mido decodes a meta event of this type and length the way symusic reads it."""
    if len(data) != length:
        return False
    if kind in (0x00, 0x20):  # sequence number (empty or 2 bytes), channel prefix
        return length in (0, 2) if kind == 0x00 else length >= 1
    if kind == 0x54:  # SMPTE offset: a frame rate mido knows
        return length >= 5 and data[0] >> 5 < 4
    if kind == 0x58:
        return length == 4 and data[1] < 8
    return length == {0x51: 3, 0x59: 2}.get(kind, length)


def _varint(chunk: bytes, at: int) -> tuple[int, int]:
    """A variable-length quantity at `at`: (value, index after it); runs to the end of a truncated chunk."""
    value = 0
    while at < len(chunk):
        byte = chunk[at]
        at += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            break
    return value, at


def _ambiguous_order(events: list[tuple]) -> bool:
    """Two different events at one tick: symusic's sort may have swapped them, and mido keeps file order."""
    return any(a[0] == b[0] and a[1:] != b[1:] for a, b in zip(events, events[1:], strict=False))


@lru_cache(maxsize=4096)
def _tail(note_channels: tuple[int, ...], probe_channels: tuple[int, ...], index: int) -> bytes:
    """The end marker, two rounds of note-offs and the probes, then end-of-track (see the module docstring).

    The marker takes the old end-of-track's delta, so it sits at the track's end tick E; the rounds sit
    at E and E + 1, the probes start at E + 2.
    """
    events = [(delay, 0x80 | channel, pitch, 0)
              for delay in (0, 1) for channel in note_channels for pitch in range(128)]
    events += [(2, 0x90 | channel, channel, index + 1) for channel in probe_channels]
    events += [(3, 0x80 | channel, channel, 0) for channel in probe_channels]
    marker = f"{END_MARKER}{index}".encode()
    out = bytearray(b"\xff\x06" + bytes((len(marker),)) + marker)
    now = 0
    for at, status, pitch, velocity in events:
        out += bytes((at - now, status, pitch, velocity))
        now = at
    return bytes(out + b"\x00" + _END_OF_TRACK)


def _names_and_texts(chunk: bytes, parsed_name: str, need_name: bool) -> tuple[str, list[tuple[int, str]] | None]:
    """The track's name and (tick, chord symbol) texts, as mido reads them; texts None when mido cannot read it.

    Cheap when the track holds no chord text and at most one name event, in ASCII (symusic's name then is
    mido's); mido reads the track otherwise.
    """
    if CHORD_TEXT_PREFIX.encode() not in chunk:
        if not need_name or b"\xff\x03" not in chunk:
            return "", []
        if chunk.count(b"\xff\x03") == 1 and _ascii_name(chunk) == parsed_name:
            return parsed_name, []
    try:
        track = mido.midifiles.midifiles.read_track(io.BytesIO(_CHUNK_HEADER.pack(b"MTrk", len(chunk)) + chunk),
                                                    clip=True)
    except Exception:  # noqa: BLE001 - a track mido cannot read alone: leave the whole file to mido
        return None, None
    name, texts, tick = "", [], 0
    for msg in track:
        tick += msg.time
        if msg.type == "track_name" and not name.strip():
            name = msg.name
        elif msg.type == "text" and msg.text.startswith(CHORD_TEXT_PREFIX):
            texts.append((tick, msg.text[len(CHORD_TEXT_PREFIX):].strip()))
    return name, texts


def _ascii_name(chunk: bytes) -> str | None:
    """The text of the one track-name event (FF 03, length, bytes) when it is plain ASCII."""
    length, at = _varint(chunk, chunk.find(b"\xff\x03") + 2)
    raw = chunk[at : at + length]
    return raw.decode("ascii") if raw.isascii() and len(raw) == length else None
