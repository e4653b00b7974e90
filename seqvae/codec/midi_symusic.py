"""The fast MIDI reader: symusic's compiled parser, giving exactly the score the mido reader gives.

symusic groups notes by (channel, program) without saying which channel, drops notes never released and
keeps no text events. So each track is parsed on its own with a tail put before its end-of-track: a
marker (where the track ends), a note-off there for every pitch of every channel the track may use (a
note never released ends with its track, as mido's reading has it), a second round one tick later (a
pitch still held: held twice over), and one probe note per channel whose pitch is the channel number
(which group is which channel, and which program the channel ends on). Chord texts and unusual track
names come from mido reading just that track. Wherever this cannot vouch for the mido result (a pitch
held twice over, a channel's notes under two programs, odd bytes, short meta events), the reader
returns None and read_midi asks mido.
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

END_MARKER = "seqvae:track-end"
META_LENGTHS = {0x51: 3, 0x58: 4, 0x59: 2}  # set_tempo, time_signature, key_signature: mido needs these whole
_FILE_HEADER = struct.Struct(">4sLHHH")
_CHUNK_HEADER = struct.Struct(">4sL")
_END_OF_TRACK = b"\xff\x2f\x00"
_UNKNOWN = -1  # a channel's program after a track that may or may not have set it to 0


def symusic_available() -> bool:
    return symusic is not None


def read_with_symusic(path: str | Path) -> MidiScore | None:
    """The file's score as read_with_mido gives it, or None where only mido can say (or symusic is missing)."""
    if symusic is None:
        return None
    data = Path(path).read_bytes()
    layout = _track_chunks(data)
    if layout is None:
        return None
    division, chunks = layout
    ticks_per_step = division / STEPS_PER_QUARTER
    meters: dict[int, Meter | None] = {}
    tempo = None
    lines: list[Line] = []
    chords: list[tuple[int, str]] = []
    programs: dict[int, int] = {}  # channel -> program set by an earlier track (mido's programs carry over)
    last_tick = 0
    for index, chunk in enumerate(chunks):
        track = _read_track(chunk, division)
        if track is None:
            return None
        notes, probes, signatures, tempos, texts, name = track
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
        for tick, numerator, denominator in signatures:
            meters[int(round(tick / ticks_per_step))] = _meter(numerator, denominator)
        if tempo is None and tempos:
            tempo = mido.tempo2bpm(tempos[0])
        chords += [(int(round(tick / ticks_per_step)), symbol) for tick, symbol in texts]
    if 0 not in meters:
        meters[0] = Meter(4, 4)
    chords.sort(key=lambda c: c[0])
    meter_list = sorted(meters.items(), key=lambda kv: kv[0])
    return MidiScore(lines, meter_list, float(tempo or 120.0), int(round(last_tick / ticks_per_step)), chords)


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


def _read_track(chunk: bytes, division: int):
    """One track through symusic: notes per (channel, program), the channels' end programs, meters, tempi, texts.

    None when the result might differ from mido's.
    """
    if not chunk.endswith(_END_OF_TRACK) or chunk.count(_END_OF_TRACK) != 1 or not _plain_bytes(chunk):
        return None
    counts = np.bincount(np.frombuffer(chunk, dtype=np.uint8), minlength=256)
    note_channels = tuple(int(c) for c in np.flatnonzero(counts[0x90:0xA0]))
    probe_channels = tuple(int(c) for c in np.flatnonzero(counts[0x90:0xA0] + counts[0xC0:0xD0]))
    body = chunk[: -len(_END_OF_TRACK)] + _tail(note_channels, probe_channels)
    single = _FILE_HEADER.pack(b"MThd", 6, 0, 1, division) + _CHUNK_HEADER.pack(b"MTrk", len(body)) + body
    try:
        score = symusic.Score.from_midi(single)
    except Exception:  # noqa: BLE001 - whatever symusic refuses, mido gets to judge
        return None
    ends = [m.time for m in score.markers if m.text == END_MARKER]
    if len(ends) != 1 or any(not -7 <= k.key <= 7 or k.tonality not in (0, 1) for k in score.key_signatures):
        return None
    end = ends[0]
    notes, probes = {}, {}
    for group in score.tracks:
        columns = group.notes.numpy()
        time = columns["time"].astype(np.int64)
        probe = time == end + 2
        if probe.sum() != 1:
            return None  # a channel's notes under two programs: only its last group has the probe
        channel = int(columns["pitch"][probe][0])
        probes[channel] = int(group.program)
        real = ~probe
        if real.any():
            stop = time[real] + columns["duration"][real].astype(np.int64)
            if stop.max() > end:
                return None  # closed by the second round of note-offs: a pitch held twice over at the end
            notes[(channel, int(group.program))] = (time[real], stop, columns["pitch"][real].astype(np.int64),
                                                    columns["velocity"][real].astype(np.int64))
    signatures = [(s.time, s.numerator, s.denominator) for s in score.time_signatures]
    tempos = [(t.time, t.mspq) for t in score.tempos]
    if _ambiguous_order(signatures) or _ambiguous_order(tempos):
        return None
    name, texts = _names_and_texts(chunk, score.tracks[0].name if len(score.tracks) else "", bool(notes))
    if texts is None:
        return None
    return notes, probes, signatures, [mspq for _, mspq in tempos], texts, name


def _plain_bytes(chunk: bytes) -> bool:
    """No short tempo, meter or key event (mido refuses those, symusic reads past) and no meter denominator
    past 2**7 (symusic's shift wraps). Checks every byte pair that might start such an event, so a false
    alarm only sends the file to mido."""
    for kind, length in META_LENGTHS.items():
        marker = bytes((0xFF, kind))
        at = chunk.find(marker)
        while at >= 0:
            if at + 2 >= len(chunk) or chunk[at + 2] != length or kind == 0x58 and chunk[at + 4] >= 8:
                return False
            at = chunk.find(marker, at + 2)
    return True


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


@lru_cache(maxsize=1024)
def _tail(note_channels: tuple[int, ...], probe_channels: tuple[int, ...]) -> bytes:
    """The end marker, two rounds of note-offs and the probes, then end-of-track (see the module docstring).

    The marker takes the old end-of-track's delta, so it sits at the track's end tick E; the rounds sit
    at E and E + 1, the probes start at E + 2.
    """
    events = [(delay, 0x80 | channel, pitch, 0)
              for delay in (0, 1) for channel in note_channels for pitch in range(128)]
    events += [(2, 0x90 | channel, channel, 1) for channel in probe_channels]
    events += [(3, 0x80 | channel, channel, 0) for channel in probe_channels]
    out = bytearray(b"\xff\x06" + bytes((len(END_MARKER),)) + END_MARKER.encode())
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
