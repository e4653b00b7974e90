"""Live playback: slots played on a steady 16th-note clock to a MIDI port and/or as OSC note events.

The clock runs in its own thread on absolute deadlines (each step is due at start + k * step,
recomputed from the tempo), so timing does not drift with the work done per step. A voice that
is told its slot changed (a morph knob moved) keeps playing the old melody to the next bar line,
releases what is sounding there, and carries on in the new melody at the same position: no
stuck notes and no broken bar. New voices join at the next bar line of a running clock.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from seqvae.codec import Melody
from seqvae.codec.meter import STEPS_PER_QUARTER
from seqvae.server.osc import encode_message

log = logging.getLogger("seqvae.server")

MIN_BPM, MAX_BPM = 20.0, 400.0
LATE_RESYNC_S = 0.25  # further behind than this (a stall), the clock skips ahead instead of rushing


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
    position: int = 0
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
    """OSC note events to each voice's target: /seqvae/note slot pitch velocity seconds, /seqvae/note_off."""

    def __init__(self) -> None:
        self._sockets: dict[int, socket.socket] = {}

    def _send(self, voice: Voice, address: str, args: list) -> None:
        if voice.osc_target is None:
            return
        host, port = voice.osc_target
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self._sockets.get(family)
        if sock is None:
            sock = self._sockets[family] = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.sendto(encode_message(address, args), (host, port))
        except OSError as exc:  # nobody listening is the listener's business, not the clock's
            log.debug("note event to %s:%s failed: %s", host, port, exc)

    def program(self, voice: Voice, program: int) -> None:
        return None

    def note_on(self, voice: Voice, pitch: int, velocity: int, seconds: float) -> None:
        self._send(voice, "/seqvae/note", [voice.slot, pitch, velocity, float(seconds)])

    def note_off(self, voice: Voice, pitch: int) -> None:
        self._send(voice, "/seqvae/note_off", [voice.slot, pitch])

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


class Player:
    """Voices on one clock; all methods are safe to call from any thread."""

    def __init__(self, sinks: list[Any], bpm: float = 120.0,
                 on_voice_end: Callable[[Hashable, str], None] | None = None) -> None:
        self.sinks = sinks
        self.bpm = float(bpm)
        self.on_voice_end = on_voice_end
        self.step_count = 0  # global steps since the clock (re)started
        self._voices: dict[Hashable, Voice] = {}
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="seqvae-clock", daemon=True)
        self._thread.start()

    @property
    def step_seconds(self) -> float:
        return 60.0 / (self.bpm * STEPS_PER_QUARTER)

    def playing(self) -> list[Hashable]:
        with self._lock:
            return list(self._voices)

    def set_tempo(self, bpm: float) -> None:
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise ValueError(f"tempo {bpm:g} bpm is outside {MIN_BPM:g}..{MAX_BPM:g}: send a tempo in that range")
        with self._lock:
            self.bpm = float(bpm)

    def play(self, key: Hashable, slot: str, melody: Melody, loop: bool = True, channel: int = 0,
             osc_target: tuple[str, int] | None = None) -> None:
        """Start (or restart) a voice; it joins at the next bar line if the clock is running."""
        with self._lock:
            old = self._voices.pop(key, None)
            if old is not None:
                self._release(old)
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
                self._release(self._voices.pop(key))
            return len(chosen)

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(2.0)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing a note output failed")

    # ---- the clock thread -----------------------------------------------------------------

    def _run(self) -> None:
        deadline = None
        while True:
            with self._lock:
                while not self._voices and not self._closed:
                    deadline = None
                    self._lock.wait()
                if self._closed:
                    return
                now = time.perf_counter()
                if deadline is None:  # the clock starts: bar 1 is now
                    self.step_count = 0
                    deadline = now
                elif now - deadline > LATE_RESYNC_S:
                    log.warning("playback clock stalled %.0f ms; skipping ahead", (now - deadline) * 1000)
                    deadline = now
                wait = deadline - now
                if wait > 0:
                    self._lock.wait(wait)  # woken early by play/stop: loop round and recheck
                    if time.perf_counter() < deadline:
                        continue
                self._tick()
                deadline += self.step_seconds
                self.step_count += 1

    def _tick(self) -> None:
        ended = []
        for voice in list(self._voices.values()):
            if not voice.started:
                if self.step_count % voice.score.steps_per_bar:
                    continue
                voice.started = True
                for sink in self.sinks:
                    sink.program(voice, voice.score.program)
            if self._advance(voice):
                ended.append(voice)
        for voice in ended:
            self._voices.pop(voice.key, None)
            if self.on_voice_end is not None:
                self.on_voice_end(voice.key, voice.slot)

    def _advance(self, voice: Voice) -> bool:
        """Play one step of a voice; True when a one-shot voice has finished."""
        score = voice.score
        if voice.position >= score.n_steps:  # the loop point: the last notes end here
            self._release(voice)
            if not voice.loop:
                return True
            voice.position = 0
        if voice.pending is not None and voice.position % score.steps_per_bar == 0:
            self._release(voice)
            voice.score = score = voice.pending
            voice.pending = None
            voice.position %= score.n_steps
        for pitch in score.offsets.get(voice.position, ()):
            if pitch in voice.sounding:
                voice.sounding.discard(pitch)
                for sink in self.sinks:
                    sink.note_off(voice, pitch)
        step_s = self.step_seconds
        for pitch, velocity, duration in score.onsets.get(voice.position, ()):
            if pitch in voice.sounding:
                for sink in self.sinks:
                    sink.note_off(voice, pitch)
            voice.sounding.add(pitch)
            for sink in self.sinks:
                sink.note_on(voice, pitch, velocity, duration * step_s)
        voice.position += 1
        return False

    def _release(self, voice: Voice) -> None:
        for pitch in sorted(voice.sounding):
            for sink in self.sinks:
                try:
                    sink.note_off(voice, pitch)
                except Exception:
                    log.exception("note off failed")
        voice.sounding.clear()


def open_midi_output(name: str) -> Any:
    """A mido output named `name`: an existing port of that name, else a new virtual port.

    Tries mido's configured backend (MIDO_BACKEND), then rtmidi's ALSA and JACK APIs, and says
    what each attempt answered when none works.
    """
    import os

    import mido

    attempts = []
    if os.environ.get("MIDO_BACKEND"):
        attempts.append(os.environ["MIDO_BACKEND"])
    attempts += ["mido.backends.rtmidi/LINUX_ALSA", "mido.backends.rtmidi/UNIX_JACK",
                 "mido.backends.rtmidi/MACOSX_CORE", "mido.backends.rtmidi/WINDOWS_MM"]
    failures = []
    for spec in attempts:
        try:
            backend = mido.Backend(spec, load=True)
            names = backend.get_output_names()
            if name in names:
                return backend.open_output(name)
            return backend.open_output(name, virtual=True)
        except ImportError as exc:
            failures.append(f"{spec}: {exc}")
            if "rtmidi" in str(exc):
                break  # no python-rtmidi: every other attempt would say the same
        except Exception as exc:  # rtmidi raises its own error types per API
            if "not compiled in" not in str(exc):  # another platform's API: not worth reporting
                failures.append(f"{spec.rsplit('/', 1)[-1]}: {exc}")
    raise ValueError(
        f"could not open MIDI output {name!r} ({'; '.join(failures)}). Live MIDI needs python-rtmidi "
        "(pip install python-rtmidi) and a MIDI system: ALSA, or a running JACK server (jackd -d dummy)"
    )
