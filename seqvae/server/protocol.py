"""The address space: one table of OSC addresses -> argument specs -> handlers.

A handler runs on the receiving loop with a `Session`: the engine, the player and the calling
client's slots, never the server. It checks its arguments, reads the client's slots and either
answers at once (a list of reply messages) or returns work for the inference worker plus a
`finish` step that runs back on the loop with the result (storing slots, building replies).
Latent blending (morph, XY pad, variations, attribute shifts, interpolation paths) is numpy on
the loop; only decoding goes to the worker, where concurrent decodes share one forward pass.

A slot may hold a clip longer than the model's window (`encode` with notes past it, `encode_file`
without a bar): its latent is then [windows, Z], every operation on it runs window by window, and
the decoded windows are joined back into one melody by the tie rule of engine/clips.py.

server/PROTOCOL.md documents this table for people; a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import seqvae
from seqvae.codec import Melody, write_midi
from seqvae.codec.chords import PROGRESSION_FORMS, parse_progression
from seqvae.codec.scales import OFF, Key, PitchRange, allowed_classes, transpose_events
from seqvae.engine import clips
from seqvae.engine.latent import blend_corners, path_positions, slerp, variations
from seqvae.engine.personalize import MIN_WINDOWS, PersonalModel, personal_engine, save_personal_model
from seqvae.server.clients import Client, Slot
from seqvae.server.file_jobs import FileJobs, read_line
from seqvae.server.morph_tables import TABLE_PIECE_ROWS, grid_amounts, grid_position
from seqvae.server.params import Param, RequestError, as_float, as_int, as_slot
from seqvae.server.paths import export_path, midi_input_path, new_export_folder
from seqvae.server.player import Player

Message = tuple[str, list]

NOTES = "/seqvae/notes"
NOTES_PAGE = "/seqvae/notes_page"
ERROR = "/seqvae/error"
MAX_INLINE_NOTES = 1024
MAX_INTERPOLATION_POINTS = 64  # path points; the OSC argument keeps its documented name, steps
MAX_SEED = 2**31 - 1


@dataclass
class DecodeWork:
    """Decode latents z [k, Z] on the worker, then `finish(melodies)` on the loop."""

    z: np.ndarray
    finish: Callable[[list[Melody]], Iterable[Message]]  # a generator may store and yield as it goes
    temperature: float = 0.0
    seed: int | None = None
    writes: tuple[str, ...] = ()  # slots `finish` fills: later requests reading them wait
    chords: np.ndarray | None = None  # classes [k, steps] per row (a clip's windows); None: the view's progression


@dataclass
class CallWork:
    """Run `fn()` on the worker (it may call the engine), then `finish(result)` on the loop."""

    fn: Callable[[], Any]
    finish: Callable[[Any], list[Message]]
    writes: tuple[str, ...] = ()
    heavy: bool = True  # False only for work about as short as one decode: it then takes the fast lane


@dataclass
class Ready:
    """A result already at hand (a morph table's melody): `finish(result)` runs on the loop when its turn in the
    client's reply order comes, like a decode's."""

    result: Any
    finish: Callable[[Any], list[Message]]
    writes: tuple[str, ...] = ()


Reply = list[Message] | DecodeWork | CallWork | Ready


@dataclass(frozen=True)
class Session:
    """What a handler may touch for one request: the engine, the player, the calling client. Like python-osc's
    dispatcher, the address table knows no server."""

    engine: Any
    client: Client
    player: Player
    rng: np.random.Generator  # for requests without a seed
    export_dir: Path
    page_bytes: int
    client_count: int  # clients the server holds now, for /seqvae/status
    allowed: Callable[[str], bool]  # hosts the allow-list accepts, for note targets
    knobs: Any = None  # the server's Knobs (mappings.py)
    midi_in: Any = None  # the server's MidiIn (midi_in.py), None without --midi-in
    parked: Any = None  # the server's ParkedSlots (parking.py): slots of clients a full table let go
    files: FileJobs = field(default_factory=FileJobs)  # the server's helper process for MIDI files (file_jobs.py)
    # Queues work with no reply of its own for this client (a morph table); False when the lanes refuse it.
    background: Callable[[CallWork], bool] | None = None

    def store(self, name: str, melody: Melody, z: np.ndarray) -> Melody:
        """Put a melody (at the server tempo) and its latent in a slot; a playing voice switches at the next bar."""
        if melody.bpm != self.player.bpm:
            melody = replace(melody, bpm=self.player.bpm)
        self.client.slots[name] = Slot(melody, np.asarray(z, dtype=np.float32))
        self.player.update((self.client.key, name), melody)
        return melody


@dataclass(frozen=True)
class Route:
    address: str
    params: tuple[Param, ...]
    handler: Callable[..., Reply]
    reply: str
    variadic: bool = False  # extra arguments go to the handler as one tuple
    reads: tuple[str, ...] = ()  # parameters naming slots the handler reads (it waits for pending results)
    barrier: bool = False  # waits for all of the client's pending results (reads many slots)
    plays: bool = False  # runs the model: on a chord model it needs the client's /seqvae/chords first


# ---- replies -----------------------------------------------------------------------------------


def _padded(n: int) -> int:
    return (n // 4 + 1) * 4


def _notes_bytes(address: str, slot: str, header_tags: str, n_notes: int) -> int:
    """Wire size of a notes reply with `n_notes` notes (4 numbers each) after the header values."""
    tags = "," + header_tags + "ifif" * n_notes
    header_values = sum(4 for tag in header_tags if tag in "if")  # the slot string is counted apart
    return _padded(len(address)) + _padded(len(tags)) + _padded(len(slot.encode())) + header_values + 16 * n_notes


def notes_messages(slot: str, melody: Melody, page_bytes: int = 8192) -> list[Message]:
    """`/seqvae/notes slot bpm count p s d v ...`, or numbered `/seqvae/notes_page`s past `page_bytes`.

    Pages: `/seqvae/notes_page slot page pages bpm count p s d v ...` (page counts from 1, count is
    the notes on that page); a client appends pages 1..pages in order.
    """
    flat: list = []
    notes = melody.notes_in_beats()
    for pitch, start, duration, velocity in notes:
        flat += [int(pitch), float(start), float(duration), int(velocity)]
    bpm = float(melody.bpm)
    if _notes_bytes(NOTES, slot, "sfi", len(notes)) <= page_bytes:
        return [(NOTES, [slot, bpm, len(notes), *flat])]
    per_page = max(1, (page_bytes - _notes_bytes(NOTES_PAGE, slot, "siifi", 0)) // 20)
    while per_page > 1 and _notes_bytes(NOTES_PAGE, slot, "siifi", per_page) > page_bytes:
        per_page -= 1
    pages = math.ceil(len(notes) / per_page)
    out: list[Message] = []
    for page in range(pages):
        chunk = flat[page * per_page * 4 : (page + 1) * per_page * 4]
        out.append((NOTES_PAGE, [slot, page + 1, pages, bpm, len(chunk) // 4, *chunk]))
    return out


def error_message(address: str, text: str) -> Message:
    return (ERROR, [address, text])


# ---- helpers -----------------------------------------------------------------------------------


def _seed(value: int) -> int | None:
    """-1 (the default) means 'no seed'."""
    return None if value < 0 else value


def _stored(session: Session, slot: str, melody: Melody, z: np.ndarray) -> list[Message]:
    """Store a result in a slot (the live player picks it up at the next bar) and reply its notes."""
    melody = session.store(slot, melody, z)
    return notes_messages(slot, melody, session.page_bytes)


def _decode_into(session: Session, out: str, z: np.ndarray, temperature: float = 0.0, seed: int | None = None
                 ) -> DecodeWork:
    z = np.asarray(z, dtype=np.float32).reshape(1, -1)
    session.client.check_room([out])

    def finish(melodies: list[Melody]) -> list[Message]:
        return _stored(session, out, melodies[0], z[0])

    return DecodeWork(z, finish, temperature, seed, writes=(out,))


def _is_clip(z: np.ndarray) -> bool:
    return np.ndim(z) == 2


def _slot_latent(z: np.ndarray) -> np.ndarray:
    """What a slot keeps: [Z] for one window, [windows, Z] for a clip."""
    z = np.asarray(z, dtype=np.float32)
    return z[0] if z.ndim == 2 and len(z) == 1 else z


def _latent_of(engine: Any, melody: Melody) -> np.ndarray:
    """A melody's latent as a slot keeps it (runs the encoder: call it on the worker)."""
    return engine.latent(melody) if melody.n_steps == engine.steps else _slot_latent(clips.encode(engine, melody))


def _clip_work(session: Session, outs: list[str], zs: list[np.ndarray], likes: list[Melody],
               layouts: list[clips.ClipLayout], then: Callable[[], None] | None = None) -> DecodeWork:
    """Decode clips (each [windows, Z]) in one pass and join each one's windows into its slot (then `then()`)."""
    session.client.check_room(outs)
    rows = [np.atleast_2d(np.asarray(z, dtype=np.float32)) for z in zs]
    eng = session.engine
    codec = eng.codec
    heard = [clips.window_chords(eng, len(z)) for z in rows]  # each clip lays the progression over its windows

    def finish(melodies: list[Melody]) -> list[Message]:
        out: list[Message] = []
        start = 0
        for name, z, like, clip in zip(outs, rows, likes, layouts, strict=True):
            tokens = np.stack([m.events for m in melodies[start:start + len(z)]])
            melody = clips.as_clip_melody(clips.join_windows(tokens, clip, codec), like)
            out += _stored(session, name, melody, _slot_latent(z))
            start += len(z)
        if then is not None:
            then()
        return out

    return DecodeWork(np.concatenate(rows), finish, writes=tuple(outs),
                      chords=None if heard[0] is None else np.concatenate(heard))


def _resolve_host(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise RequestError(f"host {host!r} is not an IP address: send e.g. 127.0.0.1") from None


# ---- handlers ----------------------------------------------------------------------------------


def ping(session: Session, ident: Any) -> Reply:
    head = [] if ident is None else [ident]
    return [("/seqvae/pong", [*head, session.engine.model_name, seqvae.__version__])]


def status(session: Session) -> Reply:
    eng = session.engine
    names = list(session.client.slots)
    return [("/seqvae/status", [eng.model_name, eng.device, len(names), float(session.player.bpm),
                                session.client_count, *names, session.player.clock.name])]


def clock(session: Session) -> Reply:
    now = session.player.clock.read(time.perf_counter())
    return [("/seqvae/clock", [now.source, now.tempo, now.beat, now.phase, now.peers, int(now.playing)])]


def sample(session: Session, slot: str, temperature: float, seed: int) -> Reply:
    seed_or_none = _seed(seed)
    rng = np.random.default_rng(seed_or_none) if seed_or_none is not None else session.rng
    eng = session.engine
    if eng.prior_draw_runs_model:
        return _drawn_on_worker(session, slot, lambda r: eng.draw_prior(1, r), rng, temperature, seed_or_none)
    return _decode_into(session, slot, eng.draw_prior(1, rng), temperature, seed_or_none)  # as Engine.sample draws


def _drawn_on_worker(session: Session, slot: str, draw: Callable[[np.random.Generator], np.ndarray],
                     rng: np.random.Generator, temperature: float, seed: int | None) -> CallWork:
    """Draw a latent [1, Z] that runs the model (a chord bank encodes its nearest windows under the progression)
    and decode it, both on the fast lane; an unseeded draw gets a generator of its own, since the loop's is not
    shared with a worker thread."""
    session.client.check_room([slot])
    eng = session.engine
    if seed is None:
        rng = np.random.default_rng(int(session.rng.integers(2**63)))

    def run() -> tuple[Melody, np.ndarray]:
        z = np.asarray(draw(rng), dtype=np.float32).reshape(1, -1)
        return eng.decode(z, temperature=temperature, seed=seed)[0], z[0]

    return CallWork(run, lambda result: _stored(session, slot, *result), writes=(slot,), heavy=False)


def encode(session: Session, slot: str, n: int, values: tuple) -> Reply:
    if len(values) != 4 * n:
        raise RequestError(
            f"n = {n} notes needs {4 * n} numbers after it (pitch, start beat, duration beats, velocity for each "
            f"note), got {len(values)}"
        )
    notes = []
    for i in range(n):
        p, s, d, v = values[4 * i : 4 * i + 4]
        notes.append((
            as_int(p, f"note {i + 1} pitch", 0, 127),
            as_float(s, f"note {i + 1} start beat", 0.0),
            as_float(d, f"note {i + 1} duration", 1e-6),
            as_int(v, f"note {i + 1} velocity", 1, 127),
        ))
    session.client.check_room([slot])
    eng = session.engine
    melody = eng.clip_from_notes(notes, bpm=session.player.bpm)  # one window, or a clip of whole bars past it

    def run() -> tuple[Melody, np.ndarray]:
        return melody, _latent_of(eng, melody)

    return CallWork(run, lambda result: _stored(session, slot, *result), writes=(slot,),
                    heavy=melody.n_steps > eng.steps)


def encode_file(session: Session, slot: str, path: str, track: Any, bar: int) -> Reply:
    resolved = midi_input_path(session.export_dir, path, allow_absolute=session.client.is_local)
    chosen_track = None if track in (0, "") else track
    if isinstance(chosen_track, float):
        chosen_track = as_int(chosen_track, "track", 1)
    session.client.check_room([slot])
    eng = session.engine

    def run() -> tuple[Melody, np.ndarray]:  # bar 0: the whole line, one window when it fits in one, else a clip
        melody = session.files.run(read_line, resolved, eng.steps, eng.codec, chosen_track, bar)
        return melody, _latent_of(eng, melody)

    return CallWork(run, lambda result: _stored(session, slot, *result), writes=(slot,))


def interpolate(session: Session, a: str, b: str, points: int, prefix: str) -> Reply:
    client = session.client
    za, zb = client.latent(a), client.latent(b)
    names = [f"{prefix}_{i}" for i in range(points)]
    client.check_room(names)

    def remember() -> None:
        client.interpolations[prefix] = names

    if _is_clip(za) or _is_clip(zb):
        positions = [float(t) for t in path_positions(points)]
        ma, mb = client.melody(a), client.melody(b)
        la, lb = clips.layout(ma, session.engine.steps), clips.layout(mb, session.engine.steps)
        layouts = [clips.morph_layout(la, lb, t) for t in positions]
        return _clip_work(session, names, [clips.blend(za, zb, t) for t in positions],
                          [ma if t < 0.5 else mb for t in positions], layouts, then=remember)
    z = slerp(za, zb, path_positions(points))

    def finish(melodies: list[Melody]) -> Iterator[Message]:  # stores as it is sent, a slice per loop turn
        for name, melody, zi in zip(names, melodies, z, strict=True):
            yield from _stored(session, name, melody, zi)
        remember()

    return DecodeWork(z, finish, writes=tuple(names))


def morph(session: Session, a: str, b: str, t: float, out: str) -> Reply:
    client = session.client
    za, zb = client.latent(a), client.latent(b)
    if _is_clip(za) or _is_clip(zb):
        ma, mb = client.melody(a), client.melody(b)
        steps = session.engine.steps
        return _clip_work(session, [out], [clips.blend(za, zb, t)], [ma if t < 0.5 else mb],
                          [clips.morph_layout(clips.layout(ma, steps), clips.layout(mb, steps), t)])
    index, t = grid_position(t)
    z = np.asarray(slerp(za, zb, t), dtype=np.float32)
    signature = (id(client.personal), client.music_key, client.pitch_range, client.chords)
    table = client.morph_tables.find(za, zb, signature)
    if table is not None and table.melodies is not None:
        client.check_room([out])
        return Ready(table.melodies[index], lambda melody: _stored(session, out, melody, z), writes=(out,))
    if table is None and session.background is not None and client.morph_tables.wants(za, zb, signature):
        _build_morph_table(session, za, zb, signature)
    return _decode_into(session, out, z)


def _build_morph_table(session: Session, za: np.ndarray, zb: np.ndarray, signature: tuple) -> None:
    """Queue the decode of every grid position of this pair on the heavy lane (morph_tables.py)."""
    tables, engine = session.client.morph_tables, session.engine
    key, table = tables.begin(za, zb, signature)
    z = np.asarray(slerp(za, zb, grid_amounts()), dtype=np.float32)

    def run() -> list[Melody] | None:
        return None if table.evicted else engine.decode(z, temperature=0.0, seed=None, piece_rows=TABLE_PIECE_ROWS)

    def filled(result: Any) -> list[Message]:
        if result is None or isinstance(result, Exception):
            tables.drop(key)  # evicted before its turn, or failed: the pair's next morphs decode and try again
        else:
            tables.fill(key, result)
        return []

    if not session.background(CallWork(run, filled)):
        tables.drop(key)


def morph_xy(session: Session, a: str, b: str, c: str, d: str, x: float, y: float, out: str) -> Reply:
    names = (a, b, c, d)
    corners = [session.client.latent(name) for name in names]
    if any(_is_clip(z) for z in corners):
        melodies = [session.client.melody(name) for name in names]
        nearest = clips.nearest_corner(x, y)
        layouts = [clips.layout(m, session.engine.steps) for m in melodies]
        return _clip_work(session, [out], [clips.blend_corners(corners, x, y)], [melodies[nearest]],
                          [clips.blend_layout(layouts, nearest)])
    return _decode_into(session, out, blend_corners(*corners, x, y))


def _clip_of(session: Session, slot: str, out: str, z: np.ndarray) -> DecodeWork:
    """Decode a clip slot's changed latents [windows, Z] into `out`, joined by the slot's own ties."""
    melody = session.client.melody(slot)
    return _clip_work(session, [out], [z], [melody], [clips.layout(melody, session.engine.steps)])


def similar(session: Session, slot: str, amount: float, out: str, seed: int) -> Reply:
    seed_or_none = _seed(seed)
    rng = np.random.default_rng(seed_or_none) if seed_or_none is not None else session.rng
    z = session.client.latent(slot)
    if _is_clip(z):
        return _clip_of(session, slot, out or slot, clips.variation_latents(z, 1, amount, rng,
                                                                            session.engine.draw_prior)[0])
    eng = session.engine
    if eng.prior_draw_runs_model:
        return _drawn_on_worker(session, out or slot, lambda r: variations(z, 1, amount, r, eng.draw_prior), rng,
                                0.0, None)
    return _decode_into(session, out or slot, variations(z, 1, amount, rng, eng.draw_prior)[0])


def shift(session: Session, slot: str, attribute: str, amount: float, out: str) -> Reply:
    z = session.client.latent(slot)
    vector = session.engine.attribute_vector(attribute)  # ValueError names the attributes, or how to compute them
    if _is_clip(z):
        return _clip_of(session, slot, out or slot, z + np.float32(amount) * vector)
    return _decode_into(session, out or slot, z + np.float32(amount) * vector)


def infill(session: Session, slot: str, first_bar: int, last_bar: int, out: str, seed: int) -> Reply:
    melody = session.client.melody(slot)
    target = out or slot
    session.client.check_room([target])
    eng = session.engine
    whole = melody.n_steps > eng.steps  # a clip: its bars, window by window
    if whole:  # bad bars are refused before queueing
        clips.check_bars(melody, first_bar, last_bar)
    else:
        eng.bar_span(melody, first_bar, last_bar)

    def run() -> tuple[Melody, np.ndarray]:
        if whole:
            result = clips.infill(eng, melody, first_bar, last_bar, seed=_seed(seed))
        else:
            result = eng.infill(melody, first_bar, last_bar, seed=_seed(seed))
        return result, _latent_of(eng, result)

    return CallWork(run, lambda result: _stored(session, target, *result), writes=(target,))


def novelty(session: Session, slot: str) -> Reply:
    melody = session.client.melody(slot)
    eng = session.engine
    if melody.n_steps > eng.steps:
        clips.check_clip(eng, melody)  # a clip the model can't read is refused before queueing

    def run() -> float:
        return float(np.mean(clips.novelty(eng, melody) if melody.n_steps > eng.steps else eng.novelty([melody])))

    return CallWork(run, lambda score: [("/seqvae/novelty", [slot, score])])


def _chord_parts(session: Session, melodies: list[Melody], chord_track: int) -> list[np.ndarray] | None:
    """With `chord_track`, the client's progression as each melody hears it (from its first step, as the engine lays
    it over a window or a clip), for the file's second track; None without."""
    if not chord_track:
        return None
    if session.client.chords is None:
        raise RequestError("chord_track 1 writes your progression beside the melody, and you have none: send "
                           "/seqvae/chords Am F first (on a chord model), or export with chord_track 0")
    return [session.engine.chord_steps(melody.n_steps) for melody in melodies]


def export(session: Session, slot: str, filename: str, chord_track: int) -> Reply:
    melody = session.client.melody(slot)
    chords = _chord_parts(session, [melody], chord_track)
    target = export_path(session.export_dir, filename)
    return CallWork(lambda: str(session.files.run(write_midi, melody, target, keep_existing=True, chords=chords)),
                    lambda path: [("/seqvae/exported", [slot, path])])


def export_all(session: Session, prefix: str, filename: str, chord_track: int) -> Reply:
    client = session.client
    names = client.interpolations.get(prefix)
    if names is None:
        known = ", ".join(sorted(client.interpolations)) or "none yet"
        raise RequestError(
            f"no interpolation named {prefix!r} (yours: {known}): make one with /seqvae/interpolate a b steps {prefix}"
        )
    melodies = [client.melody(name) for name in names]
    chords = _chord_parts(session, melodies, chord_track)
    target = export_path(session.export_dir, filename)
    return CallWork(lambda: str(session.files.run(write_midi, melodies, target, keep_existing=True, chords=chords)),
                    lambda path: [("/seqvae/exported", [prefix, path])])


def tempo(session: Session, bpm: float) -> Reply:
    session.player.set_tempo(bpm)
    return [("/seqvae/tempo", [float(session.player.bpm)])]


def play(session: Session, slot: str, loop: int, channel: int) -> Reply:
    client = session.client
    melody = client.melody(slot)
    session.player.play((client.key, slot), slot, melody, loop=bool(loop), channel=channel - 1,
                        osc_target=client.note_target)
    return [("/seqvae/playing", [slot, int(bool(loop)), channel])]


def stop(session: Session, slot: str) -> Reply:
    client, player = session.client, session.player
    playing = [key for key in player.playing() if key[0] == client.key and (not slot or key[1] == slot)]
    player.stop(playing)
    return [("/seqvae/stopped", [key[1] for key in playing])]


def note_target(session: Session, host: str, port: int) -> Reply:
    client = session.client
    if port == 0:
        client.note_target = None
    else:
        resolved = _resolve_host(host)
        if resolved != client.host and not session.allowed(resolved):
            raise RequestError(
                f"note events go only to this machine, your own address or an --allow address; {host!r} is none"
            )
        client.note_target = (resolved, port)
    session.player.set_target(client.key, client.note_target)
    return [("/seqvae/note_target", [host, port])]


def reply_to(session: Session, port: int) -> Reply:
    session.client.reply_to_port(port)
    return [("/seqvae/reply_to", [port])]


def clear(session: Session, slot: str) -> Reply:
    client = session.client
    names = [slot] if slot else list(client.slots)
    if slot:
        client.melody(slot)  # unknown slot -> clear error
    session.player.stop([(client.key, name) for name in names])
    for name in names:
        client.slots.pop(name, None)
    for prefix in [p for p, members in client.interpolations.items() if set(members) & set(names)]:
        del client.interpolations[prefix]
    return [("/seqvae/cleared", names)]


def restore(session: Session, slot: str) -> Reply:
    """Claim slots parked from a client of this host that a full server let go (the newest first)."""
    client, parked = session.client, session.parked
    owner, names = parked.find(client.host, slot or None)
    client.check_room(names)
    slots, paths = parked.take(owner, names)
    for name, found in slots:
        session.store(name, found.melody, found.z)
    client.interpolations.update(paths)
    return [("/seqvae/restored", names)]


PERSONAL_OFF = "off"


def personalize(session: Session, name: str, slots: tuple) -> Reply:
    client = session.client
    if name == PERSONAL_OFF:
        if slots:
            raise RequestError("/seqvae/personalize off takes no slots: send it alone to go back to the server's model")
        client.personal = None
        base = session.engine.base_engine or session.engine
        return [("/seqvae/personalized", [PERSONAL_OFF, 0, f"the server's model {base.model_name}"])]
    names = list(dict.fromkeys(as_slot(value, f"slot {i + 1}") for i, value in enumerate(slots)))
    if not names:
        raise RequestError(f"a personal model needs the melodies of at least {MIN_WINDOWS} windows (slots, or a clip "
                           f"slot's windows): send e.g. /seqvae/personalize {name} a b c d")
    melodies = [client.melody(slot) for slot in names]
    eng = session.engine.constrained()  # fitted and kept free of your key and range, which apply on top of it

    def finish(personal: PersonalModel) -> list[Message]:
        client.personal = personal
        return [("/seqvae/personalized", [name, personal.fit.windows, personal.fit.prior.describe()])]

    return CallWork(lambda: personal_engine(eng, melodies, name, names), finish)


def personalize_save(session: Session, name: str) -> Reply:
    personal = session.client.personal
    if personal is None:
        raise RequestError("you have no personal model to save: make one with /seqvae/personalize name slot...")
    target = new_export_folder(session.export_dir, name)
    command = f"/seqvae/personalize {personal.engine.model_name} {' '.join(personal.sources)}"

    def run() -> str:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            return str(save_personal_model(personal, target, command))
        except FileExistsError as exc:
            raise RequestError(str(exc)) from None

    return CallWork(run, lambda path: [("/seqvae/personalize_saved", [name, path])])


def _midi_in(session: Session, address: str) -> Any:
    if session.midi_in is None:
        raise RequestError(f"{address} needs MIDI in: start the server with seqvae serve --midi-in NAME")
    return session.midi_in


def record(session: Session, slot: str, bars: int) -> Reply:
    midi_in = _midi_in(session, "/seqvae/record")
    if not midi_in.chords_armed(session.client):  # else a take ending with the chord take hears its chords
        check_progression(session)
    eng = session.engine
    window_bars = eng.steps // eng.meter.steps_per_bar
    if bars == 0:
        bars = window_bars
    if bars > window_bars:
        raise RequestError(f"{bars} bars is longer than the model's window of {window_bars} bars "
                           f"({eng.meter}): record at most {window_bars}")
    session.client.check_room([slot])
    take = midi_in.arm(session.client, slot, bars, session.player.bar_beats)
    return [("/seqvae/recording", [slot, bars, float(take.start_beat)])]


def record_cancel(session: Session, slot: str) -> Reply:
    midi_in = _midi_in(session, "/seqvae/record_cancel")
    return [("/seqvae/record_cancelled", midi_in.cancel(session.client, slot or None))]


def chords_from_midi(session: Session, channel: int, bars: int) -> Reply:
    """Arm a chord take on one MIDI channel; when it ends its chords become the client's progression (the server
    dispatches them as /seqvae/chords, which answers)."""
    midi_in = _midi_in(session, "/seqvae/chords_from_midi")
    eng = session.engine
    _check_chord_inputs(eng)
    bars = bars or eng.steps // eng.meter.steps_per_bar
    take = midi_in.arm_chords(session.client, channel, bars, session.player.bar_beats)
    return [("/seqvae/chords_recording", [channel, bars, float(take.start_beat)])]


def map_cc(session: Session, channel: int, cc: int, words: tuple) -> Reply:
    _midi_in(session, "/seqvae/map_cc")
    request = session.knobs.map_cc(session.client, channel, cc, words)
    return [("/seqvae/mapped_cc", [channel, cc, *request.describe()])]


def unmap_cc(session: Session, channel: int, cc: int) -> Reply:
    session.knobs.unmap_cc(session.client, channel, cc)
    return [("/seqvae/unmapped_cc", [channel, cc])]


def _constrain(session: Session, key: Key | None, pitch_range: PitchRange | None) -> None:
    """Set the client's key and range, refusing a pair that leaves the model no pitch to play."""
    try:
        allowed_classes(session.engine.codec, key, pitch_range)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    session.client.music_key, session.client.pitch_range = key, pitch_range


def music_key(session: Session, words: tuple) -> Reply:
    client = session.client
    if words:
        text = " ".join(str(word) for word in words)
        try:
            chosen = Key.parse(text)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        _constrain(session, chosen, client.pitch_range)
    if client.music_key is None:
        return [("/seqvae/key", [OFF])]
    root, mode = str(client.music_key).split(" ", 1)
    return [("/seqvae/key", [root, mode])]


def pitch_range(session: Session, words: tuple) -> Reply:
    client = session.client
    if words:
        if len(words) > 2:
            raise RequestError(f"/seqvae/range takes low high (e.g. 57 76 or A3 E5), one text (57-76) or off; got "
                               f"{len(words)} values")
        ends = [as_int(word, name, 0, 127) if isinstance(word, (int, float)) else str(word)
                for word, name in zip(words, ("low", "high"), strict=False)]
        try:
            chosen = PitchRange.parse("-".join(str(end) for end in ends))
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        _constrain(session, client.music_key, chosen)
    if client.pitch_range is None:
        return [("/seqvae/range", [OFF])]
    return [("/seqvae/range", [client.pitch_range.low, client.pitch_range.high])]


def check_progression(session: Session) -> None:
    """A chord model plays only under a progression: a request that runs it before /seqvae/chords is refused (a
    silent default would be a harmony the musician never chose)."""
    eng = session.engine
    if eng.chord_classes and session.client.chords is None:
        raise RequestError(f"model {eng.model_name!r} is chord-conditioned: send your progression first, e.g. "
                           f"/seqvae/chords Am F ({PROGRESSION_FORMS})")


def _check_chord_inputs(eng: Any) -> None:
    if not eng.chord_classes:
        raise RequestError(f"model {eng.model_name!r} has no chord inputs: serve a chord model to play under chords "
                           "(seqvae serve --model chords, a checkpoint of mel_2bar_chords)")


def chord_progression(session: Session, words: tuple) -> Reply:
    client = session.client
    text = " ".join(str(word) for word in words).strip()
    if not text or text.lower() == OFF:
        client.chords = None
        return [("/seqvae/chords", [OFF])]
    eng = session.engine
    _check_chord_inputs(eng)
    try:
        parse_progression(text, eng.meter, eng.steps)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    client.chords = text
    return [("/seqvae/chords", text.split())]


def transpose(session: Session, slot: str, semitones: int, out: str) -> Reply:
    melody = session.client.melody(slot)
    target = out or slot
    session.client.check_room([target])
    eng = session.engine
    try:
        moved = replace(melody, events=transpose_events(melody.events, melody.codec, semitones))
    except ValueError as exc:
        raise RequestError(f"slot {slot!r}: {exc}") from None

    def run() -> tuple[Melody, np.ndarray]:
        return moved, _latent_of(eng, moved)

    return CallWork(run, lambda result: _stored(session, target, *result), writes=(target,),
                    heavy=moved.n_steps > eng.steps)


def map_osc(session: Session, address: str, words: tuple) -> Reply:
    mapping = session.knobs.map_osc(session.client, address, words)
    return [("/seqvae/mapped_osc", [address, mapping.arg_index, *mapping.request.describe()])]


def unmap_osc(session: Session, address: str) -> Reply:
    session.knobs.unmap_osc(session.client, address)
    return [("/seqvae/unmapped_osc", [address])]


# ---- the table ---------------------------------------------------------------------------------

SLOT = Param("slot", "slot")
OUT = Param("out", "slot", default="")
SEED = Param("seed", "int", default=-1, low=-1, high=MAX_SEED)
CHORD_TRACK = Param("chord_track", "int", default=0, low=0, high=1)

ROUTES: dict[str, Route] = {route.address: route for route in (
    Route("/seqvae/ping", (Param("id", "any", default=None),), ping, "/seqvae/pong [id] model version"),
    Route("/seqvae/status", (), status, "/seqvae/status model device slots tempo clients slot_names... clock",
          barrier=True),
    Route("/seqvae/sample", (SLOT, Param("temperature", "float", 0.5, 0.0, 5.0), SEED), sample, NOTES, plays=True),
    Route("/seqvae/encode", (SLOT, Param("n", "int", low=0, high=MAX_INLINE_NOTES)), encode, NOTES, variadic=True,
          plays=True),
    Route("/seqvae/encode_file", (SLOT, Param("path", "text"), Param("track", "any", default=0),
                                  Param("bar", "int", default=0, low=0, high=100000)), encode_file, NOTES, plays=True),
    Route("/seqvae/interpolate", (Param("a", "slot"), Param("b", "slot"),
                                  Param("steps", "int", low=2, high=MAX_INTERPOLATION_POINTS), Param("prefix", "slot")),
          interpolate, f"{NOTES} x steps", reads=("a", "b"), plays=True),
    Route("/seqvae/morph", (Param("a", "slot"), Param("b", "slot"), Param("t", "float", low=0.0, high=1.0),
                            Param("out", "slot", default="morph")), morph, NOTES, reads=("a", "b"), plays=True),
    Route("/seqvae/morph_xy", (Param("a", "slot"), Param("b", "slot"), Param("c", "slot"), Param("d", "slot"),
                               Param("x", "float", low=0.0, high=1.0), Param("y", "float", low=0.0, high=1.0),
                               Param("out", "slot", default="xy")), morph_xy, NOTES, reads=("a", "b", "c", "d"),
          plays=True),
    Route("/seqvae/similar", (SLOT, Param("amount", "float", low=0.0, high=1.0), OUT, SEED), similar, NOTES,
          reads=("slot",), plays=True),
    Route("/seqvae/shift", (SLOT, Param("attribute", "text"), Param("amount", "float", low=-10.0, high=10.0), OUT),
          shift, NOTES, reads=("slot",), plays=True),
    Route("/seqvae/infill", (SLOT, Param("first_bar", "int", low=1, high=1000),
                             Param("last_bar", "int", low=1, high=1000), OUT, SEED), infill, NOTES, reads=("slot",),
          plays=True),
    Route("/seqvae/novelty", (SLOT,), novelty, "/seqvae/novelty slot score", reads=("slot",), plays=True),
    Route("/seqvae/export", (SLOT, Param("filename", "text"), CHORD_TRACK), export, "/seqvae/exported slot path",
          reads=("slot",)),
    Route("/seqvae/export_all", (Param("prefix", "slot"), Param("filename", "text"), CHORD_TRACK), export_all,
          "/seqvae/exported prefix path", barrier=True),
    Route("/seqvae/tempo", (Param("bpm", "float", low=20.0, high=400.0),), tempo, "/seqvae/tempo bpm",
          barrier=True),  # melodies asked for earlier keep the tempo they were made at
    Route("/seqvae/clock", (), clock, "/seqvae/clock source tempo beat phase peers playing"),
    Route("/seqvae/play", (SLOT, Param("loop", "int", default=1, low=0, high=1),
                           Param("channel", "int", default=1, low=1, high=16)), play,
          "/seqvae/playing slot loop channel", reads=("slot",)),
    Route("/seqvae/stop", (Param("slot", "slot", default=""),), stop, "/seqvae/stopped slot..."),
    Route("/seqvae/note_target", (Param("host", "text"), Param("port", "int", low=0, high=65535)), note_target,
          "/seqvae/note_target host port"),
    Route("/seqvae/reply_to", (Param("port", "int", low=1, high=65535),), reply_to, "/seqvae/reply_to port"),
    Route("/seqvae/clear", (Param("slot", "slot", default=""),), clear, "/seqvae/cleared slot...", barrier=True),
    Route("/seqvae/restore", (Param("slot", "slot", default=""),), restore, "/seqvae/restored slot...",
          barrier=True),
    Route("/seqvae/record", (SLOT, Param("bars", "int", default=0, low=0, high=64)), record,
          "/seqvae/recording slot bars beat, then /seqvae/notes slot ... when the take ends"),
    Route("/seqvae/record_cancel", (Param("slot", "slot", default=""),), record_cancel,
          "/seqvae/record_cancelled slot..."),
    Route("/seqvae/chords_from_midi", (Param("channel", "int", low=1, high=16),
                                       Param("bars", "int", default=0, low=0, high=64)), chords_from_midi,
          "/seqvae/chords_recording channel bars beat, then /seqvae/chords symbol... when the take ends"),
    Route("/seqvae/map_cc", (Param("channel", "int", low=1, high=16), Param("cc", "int", low=0, high=127)),
          map_cc, "/seqvae/mapped_cc channel cc request...", variadic=True),
    Route("/seqvae/unmap_cc", (Param("channel", "int", low=1, high=16), Param("cc", "int", low=0, high=127)),
          unmap_cc, "/seqvae/unmapped_cc channel cc"),
    Route("/seqvae/map_osc", (Param("address", "text"),), map_osc, "/seqvae/mapped_osc address arg_index request...",
          variadic=True),
    Route("/seqvae/unmap_osc", (Param("address", "text"),), unmap_osc, "/seqvae/unmapped_osc address"),
    Route("/seqvae/key", (), music_key, "/seqvae/key root mode, or /seqvae/key off", variadic=True),
    Route("/seqvae/range", (), pitch_range, "/seqvae/range low high, or /seqvae/range off", variadic=True),
    Route("/seqvae/chords", (), chord_progression, "/seqvae/chords symbol..., or /seqvae/chords off", variadic=True),
    Route("/seqvae/transpose", (SLOT, Param("semitones", "int", low=-48, high=48), OUT), transpose, NOTES,
          reads=("slot",), plays=True),
    Route("/seqvae/personalize", (Param("name", "slot"),), personalize, "/seqvae/personalized name windows prior",
          variadic=True, barrier=True, plays=True),
    Route("/seqvae/personalize_save", (Param("name", "slot"),), personalize_save,
          "/seqvae/personalize_saved name path"),
)}


def unknown_address(address: str) -> str:
    close = [a for a in ROUTES if a.rsplit("/", 1)[-1] in address or address.rsplit("/", 1)[-1] in a]
    hint = f" (did you mean {close[0]}?)" if close and address.startswith("/seqvae/") else ""
    return f"unknown address {address!r}{hint}: send one of {', '.join(ROUTES)}"
