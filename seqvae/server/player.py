"""Live playback: slots played on the clock's 16th-note grid to a MIDI port and/or as OSC note events.

One clock thread plays every voice. Step k sounds at the clock's time for beat k / 4 (see
clock.py: the server's own clock, an Ableton Link session or MIDI clock), recomputed as the clock
moves, so timing does not drift with the work done per step and follows a shared tempo. A voice
that is told its slot changed (a morph knob moved) keeps playing the old melody to the next bar
line, releases what is sounding there, and carries on in the new melody at the same position: no
stuck notes and no broken bar. New voices join at the next bar line of the clock. When the clock
jumps (a stall, a new song position, a restart) voices keep their place against the bar.

With a look-ahead (`latency_s`), steps are worked out that far ahead of their sound: sinks that
can schedule (OSC bundles with a timetag) get each event at once with its onset time; the others
(MIDI out) get it at the onset.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from seqvae.codec import Melody
from seqvae.codec.meter import STEPS_PER_QUARTER
from seqvae.server.clock import Clock, InternalClock
from seqvae.server.midi_ports import open_midi_output as open_midi_output  # where callers have found it
from seqvae.server.osc import encode_bundle, encode_message

log = logging.getLogger("seqvae.server")

MIN_BPM, MAX_BPM = 20.0, 400.0
LATE_RESYNC_S = 0.25  # further behind than this (a stall), the clock skips ahead instead of rushing
POLL_S = 0.01  # the longest the clock thread sleeps before asking the clock again (a shared clock moves)
# The clock thread wakes this long before a step and spins the rest: a sleeping thread wakes late by the OS's
# wake-up latency plus the wait for the GIL (see `seqvae serve`'s switch interval), a spinning one holds both.
SPIN_S = 0.002
REALTIME_PRIORITY = 10  # SCHED_FIFO 1..99; JACK's own threads default to 10 and above
MAX_LATENCY_S = 2.0


def realtime_priority() -> bool:
    """Ask for real-time scheduling (SCHED_FIFO, low priority) for the calling thread, as audio apps do: on a
    loaded machine a woken clock thread otherwise waits for a core behind the decoding threads. Where the user
    may not (no CAP_SYS_NICE or rtprio limit), the thread stays as it is; False then."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))  # 0: this thread, on Linux
    except (AttributeError, OSError):
        log.debug("the clock thread runs without real-time scheduling (not permitted here)")
        return False
    return True


@dataclass(frozen=True)
class Score:
    """A melody flattened for playback: what starts and what ends on each step."""

    n_steps: int
    steps_per_bar: int
    program: int
    onsets: dict[int, list[tuple[int, int, int]]]  # step -> [(pitch, velocity, duration steps)]
    offsets: dict[int, list[int]]  # step -> [pitch]; offsets at n_steps happen at the loop point

    @classmethod
    def from_melody(cls, melody: Melody) -> Score:
        onsets: dict[int, list[tuple[int, int, int]]] = {}
        offsets: dict[int, list[int]] = {}
        for note in melody.notes():
            onsets.setdefault(note.start, []).append((note.pitch, int(note.velocity), note.end - note.start))
            offsets.setdefault(note.end, []).append(note.pitch)
        return cls(melody.n_steps, melody.meter.steps_per_bar, int(melody.program), onsets, offsets)


@dataclass
class Voice:
    key: Hashable  # (client key, slot)
    slot: str
    score: Score
    loop: bool
    channel: int
    osc_target: tuple[str, int] | None
    pending: Score | None = None
    position: int = 0  # the step of the score it plays next
    origin: int = 0  # the clock step where position 0 is (a bar line): position = step - origin
    started: bool = False
    sounding: set[int] = field(default_factory=set)


class MidiSink:
    """A mido output port; each voice plays on its own channel."""

    def __init__(self, port: Any) -> None:
        import mido

        self._mido = mido
        self.port = port

    def program(self, voice: Voice, program: int) -> None:
        self.port.send(self._mido.Message("program_change", channel=voice.channel, program=program))

    def note_on(self, voice: Voice, pitch: int, velocity: int, seconds: float) -> None:
        self.port.send(self._mido.Message("note_on", channel=voice.channel, note=pitch, velocity=velocity))

    def note_off(self, voice: Voice, pitch: int) -> None:
        self.port.send(self._mido.Message("note_off", channel=voice.channel, note=pitch, velocity=0))

    def close(self) -> None:
        self.port.close()


class OscNoteSink:
    """OSC note events to each voice's target: /seqvae/note slot pitch velocity seconds, /seqvae/note_off.

    With a look-ahead each event leaves at once as a bundle timetagged with its onset (wall-clock
    NTP time), the way SuperCollider and TidalCycles schedule; without, as a plain message at the onset.
    """

    def __init__(self, latency_s: float = 0.0) -> None:
        self._sockets: dict[int, socket.socket] = {}
        self.looks_ahead = latency_s > 0  # the Player hands over events early, with their onset time

    def _send(self, voice: Voice, address: str, args: list, at: float | None) -> None:
        if voice.osc_target is None:
            return
        host, port = voice.osc_target
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self._sockets.get(family)
        if sock is None:
            sock = self._sockets[family] = socket.socket(family, socket.SOCK_DGRAM)
        packet = encode_message(address, args)
        if at is not None:
            packet = encode_bundle([packet], run_at=time.time() + (at - time.perf_counter()))
        try:
            sock.sendto(packet, (host, port))
        except OSError as exc:  # nobody listening is the listener's business, not the clock's
            log.debug("note event to %s:%s failed: %s", host, port, exc)

    def program(self, voice: Voice, program: int, at: float | None = None) -> None:
        return None

    def note_on(self, voice: Voice, pitch: int, velocity: int, seconds: float, at: float | None = None) -> None:
        self._send(voice, "/seqvae/note", [voice.slot, pitch, velocity, float(seconds)], at)

    def note_off(self, voice: Voice, pitch: int, at: float | None = None) -> None:
        self._send(voice, "/seqvae/note_off", [voice.slot, pitch], at)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


class Player:
    """Voices on one clock; all methods are safe to call from any thread."""

    def __init__(self, sinks: list[Any], bpm: float = 120.0,
                 on_voice_end: Callable[[Hashable, str], None] | None = None, clock: Clock | None = None,
                 latency_s: float = 0.0) -> None:
        if not 0.0 <= latency_s <= MAX_LATENCY_S:
            raise ValueError(f"look-ahead {latency_s * 1000:g} ms is outside 0..{MAX_LATENCY_S * 1000:g} ms")
        self.sinks = sinks
        self.clock = clock if clock is not None else InternalClock(bpm)
        self.latency_s = float(latency_s)
        self.on_voice_end = on_voice_end
        self.step_count = 0  # the clock step played last (step k is beat k / 4)
        self._voices: dict[Hashable, Voice] = {}
        self._held: deque[tuple[float, Any, str, Voice, tuple]] = deque()  # (onset, sink, method, voice, args)
        self._lock = threading.Condition()
        self._closed = False
        self.clock.on_change = self._wake
        self._thread = threading.Thread(target=self._run, name="seqvae-clock", daemon=True)
        self._thread.start()

    @property
    def bpm(self) -> float:
        return self.clock.tempo()

    @property
    def bar_beats(self) -> float:
        """The bar the player aligns voices to, in quarter notes (the model's bar; Link's quantum)."""
        return self.clock.bar_beats

    @property
    def step_seconds(self) -> float:
        return 60.0 / (self.bpm * STEPS_PER_QUARTER)

    def beat_at(self, t: float) -> float:
        """Beats (quarter notes) since the clock's origin at perf_counter time `t`."""
        return self.clock.beat_at(t)

    def playing(self) -> list[Hashable]:
        with self._lock:
            return list(self._voices)

    def set_tempo(self, bpm: float) -> None:
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise ValueError(f"tempo {bpm:g} bpm is outside {MIN_BPM:g}..{MAX_BPM:g}: send a tempo in that range")
        self.clock.set_tempo(float(bpm))

    def play(self, key: Hashable, slot: str, melody: Melody, loop: bool = True, channel: int = 0,
             osc_target: tuple[str, int] | None = None) -> None:
        """Start (or restart) a voice; it joins at the next bar line if the clock is running."""
        with self._lock:
            old = self._voices.pop(key, None)
            if old is not None:
                self._release(old, self._event_time())
            self._voices[key] = Voice(key, slot, Score.from_melody(melody), loop, channel, osc_target)
            self._lock.notify_all()

    def update(self, key: Hashable, melody: Melody) -> bool:
        """The slot behind a voice changed: switch at the voice's next bar line. False if not playing."""
        with self._lock:
            voice = self._voices.get(key)
            if voice is None:
                return False
            voice.pending = Score.from_melody(melody)
            return True

    def set_target(self, key_prefix: Hashable, osc_target: tuple[str, int] | None) -> None:
        """Point every voice of one client (keys (client, slot)) at a new OSC note target."""
        with self._lock:
            for key, voice in self._voices.items():
                if isinstance(key, tuple) and key[0] == key_prefix:
                    voice.osc_target = osc_target

    def stop(self, keys: list[Hashable] | None = None) -> int:
        """Stop the given voices (all when None), releasing their notes; returns how many stopped."""
        with self._lock:
            chosen = list(self._voices) if keys is None else [k for k in keys if k in self._voices]
            for key in chosen:
                self._release(self._voices.pop(key), self._event_time())
            self._lock.notify_all()
            return len(chosen)

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(2.0)
        with self._lock:
            self._send_held(math.inf)  # releases still waiting for their time go now: nothing sticks
        for part in [*self.sinks, self.clock]:
            try:
                part.close()
            except Exception:
                log.exception("closing %s failed", type(part).__name__)

    # ---- the clock thread -----------------------------------------------------------------

    def _wake(self) -> None:
        with self._lock:
            self._lock.notify_all()

    def _event_time(self) -> float:
        """When an event decided now sounds: after everything already handed out ahead."""
        return time.perf_counter() + self.latency_s

    def _next_step(self, t: float) -> int:
        """The first step of the clock's grid at or after time t."""
        return math.ceil(self.clock.beat_at(t) * STEPS_PER_QUARTER - 1e-6)

    def _run(self) -> None:
        realtime_priority()
        self.clock.realtime_thread()
        step = None  # the step to play next, on the clock's grid
        spin_until = 0.0
        while True:
            while time.perf_counter() < spin_until:
                pass
            with self._lock:
                if self._closed:
                    return
                now = time.perf_counter()
                self._send_held(now)
                if not self._voices:
                    step = None
                    self._lock.wait(self._held[0][0] - now if self._held else None)
                    continue
                horizon = now + self.latency_s  # steps are worked out this far ahead of their sound
                if step is None:  # playback starts from silence
                    self.clock.begin(horizon)
                    step = self._next_step(horizon)
                elif step > self._next_step(horizon) + 1:  # the beat went back: a restart, a song position
                    step = self._next_step(horizon)
                due = self.clock.time_at(step / STEPS_PER_QUARTER)
                if due is not None and horizon - due > LATE_RESYNC_S:
                    log.warning("playback clock stalled %.0f ms; skipping ahead", (horizon - due) * 1000)
                    step = self._next_step(horizon)
                    due = self.clock.time_at(step / STEPS_PER_QUARTER)
                if due is None or due > horizon:
                    if not self.clock.playing():  # the transport stopped: nothing may keep sounding
                        for voice in self._voices.values():
                            self._release(voice, self._event_time())
                    wait = POLL_S if due is None else min(due - horizon, POLL_S)
                    if self._held:
                        wait = min(wait, self._held[0][0] - now)
                    if wait > SPIN_S:
                        self._lock.wait(wait - SPIN_S)  # woken early by play/stop or a clock change: recheck
                    else:
                        spin_until = now + max(wait, 0.0)
                    continue
                self.step_count = step
                self._tick(step, due)
                step += 1

    def _send_held(self, now: float) -> None:
        while self._held and self._held[0][0] <= now:
            _, sink, method, voice, args = self._held.popleft()
            self._call(sink, method, voice, args)

    def _emit(self, method: str, voice: Voice, args: tuple, at: float) -> None:
        """An event sounding at `at`: look-ahead sinks get it now with its time, the others at that time."""
        for sink in self.sinks:
            if getattr(sink, "looks_ahead", False):
                self._call(sink, method, voice, args, at)
            elif self._held or at > time.perf_counter():
                self._held.append((at, sink, method, voice, args))
            else:
                self._call(sink, method, voice, args)

    @staticmethod
    def _call(sink: Any, method: str, voice: Voice, args: tuple, at: float | None = None) -> None:
        try:
            if at is None:
                getattr(sink, method)(voice, *args)
            else:
                getattr(sink, method)(voice, *args, at=at)
        except Exception:
            log.exception("%s to a note output failed", method)

    def _tick(self, step: int, at: float) -> None:
        ended = []
        for voice in list(self._voices.values()):
            if voice.started and step < voice.origin:  # the clock went back before this voice began
                self._release(voice, at)
                voice.started = False
            if not voice.started:
                if step % voice.score.steps_per_bar:
                    continue
                voice.started, voice.origin, voice.position = True, step, 0
                self._emit("program", voice, (voice.score.program,), at)
            if self._advance(voice, step, at):
                ended.append(voice)
        for voice in ended:
            self._voices.pop(voice.key, None)
            if self.on_voice_end is not None:
                self.on_voice_end(voice.key, voice.slot)

    def _advance(self, voice: Voice, step: int, at: float) -> bool:
        """Play one step of a voice; True when a one-shot voice has finished."""
        score = voice.score
        position = step - voice.origin
        if position != voice.position:  # the clock skipped: what sounded belongs to another place
            self._release(voice, at)
        if position >= score.n_steps:  # the loop point: the last notes end here
            self._release(voice, at)
            if not voice.loop:
                return True
            voice.origin += position - position % score.n_steps
            position %= score.n_steps
        if voice.pending is not None and position % score.steps_per_bar == 0:
            self._release(voice, at)
            voice.score = score = voice.pending
            voice.pending = None
            voice.origin += position - position % score.n_steps
            position %= score.n_steps
        for pitch in score.offsets.get(position, ()):
            if pitch in voice.sounding:
                voice.sounding.discard(pitch)
                self._emit("note_off", voice, (pitch,), at)
        step_s = self.step_seconds
        for pitch, velocity, duration in score.onsets.get(position, ()):
            if pitch in voice.sounding:
                self._emit("note_off", voice, (pitch,), at)
            voice.sounding.add(pitch)
            self._emit("note_on", voice, (pitch, velocity, duration * step_s), at)
        voice.position = position + 1
        return False

    def _release(self, voice: Voice, at: float) -> None:
        for pitch in sorted(voice.sounding):
            self._emit("note_off", voice, (pitch,), at)
        voice.sounding.clear()
