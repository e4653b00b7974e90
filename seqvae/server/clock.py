"""Where the beat is: the clock the Player reads, from one of three sources.

Every source answers the same questions on `time.perf_counter()` time: the tempo, the beat
(quarter notes since the clock's origin) at a time, the time of a beat, the phase in the bar,
whether the transport lets voices sound, and how many Link peers share it.

- `internal`: the server's own steady clock (`/seqvae/tempo` sets it). It always runs; when
  playback starts from silence its next bar line is moved to now, so the first voice starts at once.
- `link`: an Ableton Link session (the optional `LinkPython-extern` package). The tempo is the
  session's, `/seqvae/tempo` changes it for every peer, the bar is Link's quantum. With start/stop
  sync, once a peer has started or stopped the session, voices sound only while it plays.
- `midi[:PORT]`: MIDI clock (24 ticks per quarter) on an input port. The tempo is a least-squares
  fit over the last two beats of ticks, so a jittery tick moves it little; between ticks the beat
  runs on that fit (for at most a 16th past the last tick). Ticks far off the fit are left out
  of it (a stall) until a 16th of them in a row say the tempo jumped or the device paused, or
  the first tick after Start or Continue is off: then the fit starts afresh on them. A tick lost
  on the way is counted from its gap. Start, Stop, Continue and Song Position Pointer move
  the transport; voices sound only between Start (or Continue) and Stop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seqvae.server.midi_ports import open_rtmidi_input

log = logging.getLogger("seqvae.server")

SOURCES = ("internal", "link", "midi")
DEFAULT_MIDI_CLOCK_PORT = "seqvae-clock"
TICKS_PER_BEAT = 24  # MIDI clock
POLL_S = 0.001  # how often the MIDI clock port is read; the ticks' times come from the port, not from this
LINK_INSTALL_HINT = 'pip install "seqvae[link]" (the LinkPython-extern package; GPL, like Link)'


@dataclass(frozen=True)
class ClockReading:
    """One look at a clock, as /seqvae/clock replies it."""

    source: str
    tempo: float
    beat: float
    phase: float
    peers: int
    playing: bool


class Clock:
    """The interface the Player reads. Times are `time.perf_counter()` seconds, beats are quarter notes."""

    source = "internal"

    def __init__(self, bar_beats: float = 4.0) -> None:
        self.bar_beats = float(bar_beats)  # the bar (Link's quantum) in quarter notes
        self.on_change: Callable[[], None] | None = None  # the Player's wake-up: tempo or transport moved

    @property
    def name(self) -> str:
        """The source as `--clock` spells it, for /seqvae/status."""
        return self.source

    def tempo(self) -> float:
        raise NotImplementedError

    def beat_at(self, t: float) -> float:
        raise NotImplementedError

    def time_at(self, beat: float) -> float | None:
        """When `beat` sounds; None when the clock can't say yet (stopped, or ticks have not come that far)."""
        raise NotImplementedError

    def phase_at(self, t: float) -> float:
        return self.beat_at(t) % self.bar_beats

    def playing(self) -> bool:
        return True

    def peers(self) -> int:
        return 0

    def set_tempo(self, bpm: float) -> None:
        raise NotImplementedError

    def begin(self, t: float) -> None:
        """Playback starts from silence at `t`; a shared clock does not move for that."""

    def realtime_thread(self) -> None:
        """The calling thread is the one that reads this clock in real time (the Player's)."""

    def read(self, t: float) -> ClockReading:
        return ClockReading(self.name, float(self.tempo()), float(self.beat_at(t)), float(self.phase_at(t)),
                            int(self.peers()), bool(self.playing()))

    def close(self) -> None:
        """Let go of the port or the session."""

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


class InternalClock(Clock):
    """A steady clock of our own: beat = origin beat + elapsed seconds * bpm / 60."""

    def __init__(self, bpm: float = 120.0, bar_beats: float = 4.0) -> None:
        super().__init__(bar_beats)
        self._anchor = (time.perf_counter(), 0.0, float(bpm))  # (time, beat at that time, bpm): swapped whole

    def tempo(self) -> float:
        return self._anchor[2]

    def beat_at(self, t: float) -> float:
        t0, beat0, bpm = self._anchor
        return beat0 + (t - t0) * bpm / 60.0

    def time_at(self, beat: float) -> float:
        t0, beat0, bpm = self._anchor
        return t0 + (beat - beat0) * 60.0 / bpm

    def set_tempo(self, bpm: float) -> None:
        now = time.perf_counter()
        self._anchor = (now, self.beat_at(now), float(bpm))  # the beat carries on from where it is
        self._changed()

    def begin(self, t: float) -> None:
        next_bar = math.ceil(self.beat_at(t) / self.bar_beats - 1e-9) * self.bar_beats
        self._anchor = (t, next_bar, self._anchor[2])


class LinkClock(Clock):
    """An Ableton Link session; the bar is the quantum."""

    source = "link"

    def __init__(self, bpm: float = 120.0, bar_beats: float = 4.0) -> None:
        super().__init__(bar_beats)
        link = import_link()
        self._sync_seen = False  # a peer has started or stopped the session: its transport rules from then on
        self._realtime: int | None = None  # the thread that reads the clock in real time (see _state)
        self._link = link.Link(float(bpm))
        self._clock = self._link.clock()
        self._link.setTempoCallback(lambda _bpm: self._changed())
        self._link.setNumPeersCallback(lambda _peers: self._changed())
        self._link.setStartStopCallback(self._started_or_stopped)
        self._link.startStopSyncEnabled = True
        self._link.enabled = True

    def _started_or_stopped(self, _playing: bool) -> None:
        self._sync_seen = True
        self._changed()

    def _offset(self) -> float:
        """Link's clock minus perf_counter, in seconds: the tightest of three readings (they may drift apart)."""
        best = (math.inf, 0.0)
        for _ in range(3):
            before = time.perf_counter()
            micros = self._clock.micros()
            after = time.perf_counter()
            if after - before < best[0]:
                best = (after - before, micros * 1e-6 - (before + after) / 2)
        return best[1]

    def _micros(self, t: float) -> int:
        return round((t + self._offset()) * 1e6)

    def realtime_thread(self) -> None:
        self._realtime = threading.get_ident()

    def _state(self) -> Any:
        """The session state. Link's app-thread capture takes a lock its network thread holds while it works, and
        a clock thread that waited there came late (onsets 5-7 ms off under load); the audio-thread capture is
        lock-free but for one thread only: the clock thread's."""
        if threading.get_ident() == self._realtime:
            return self._link.captureSessionState()
        return self._link.captureAppSessionState()

    def tempo(self) -> float:
        return self._state().tempo()

    def beat_at(self, t: float) -> float:
        return self._state().beatAtTime(self._micros(t), self.bar_beats)

    def phase_at(self, t: float) -> float:
        return self._state().phaseAtTime(self._micros(t), self.bar_beats)

    def time_at(self, beat: float) -> float | None:
        state = self._state()
        if self._sync_seen and not state.isPlaying():
            return None
        return state.timeAtBeat(beat, self.bar_beats) * 1e-6 - self._offset()

    def playing(self) -> bool:
        return not self._sync_seen or self._state().isPlaying()

    def peers(self) -> int:
        return self._link.numPeers()

    def set_tempo(self, bpm: float) -> None:
        state = self._link.captureAppSessionState()
        state.setTempo(float(bpm), self._micros(time.perf_counter()))
        self._link.commitAppSessionState(state)
        self._changed()

    def close(self) -> None:
        self._link.enabled = False


class MidiClock(Clock):
    """MIDI clock on an input port (an existing port of that name, else a virtual one)."""

    source = "midi"
    WINDOW_TICKS = 2 * TICKS_PER_BEAT  # the tempo fit's window
    AHEAD_TICKS = TICKS_PER_BEAT // 4  # the beat runs on at most a 16th past the last tick
    STEADY_TICKS = TICKS_PER_BEAT // 4  # a lost tick is told from a tempo change after a 16th of steady ticks
    JUMP_S = 0.03  # a tick further off the fit than this and a tick interval is off it (a stall, a jump, a pause)
    OFF_TICKS = TICKS_PER_BEAT // 4  # this many off in a row are a jump or a pause: the fit restarts on them

    def __init__(self, port_name: str = DEFAULT_MIDI_CLOCK_PORT, bpm: float = 120.0, bar_beats: float = 4.0,
                 open_port: bool = True, delay_s: float = 0.0) -> None:
        super().__init__(bar_beats)
        self.delay_s = float(delay_s)  # how late ticks arrive (a MIDI system's hand-over): taken off their times
        self.port_name = port_name
        self._lock = threading.Lock()
        self._ticks: deque[tuple[int, float]] = deque(maxlen=self.WINDOW_TICKS)  # (tick number, arrival time)
        self._off: list[tuple[int, float]] = []  # the ticks in a row that came off the fit (see JUMP_S)
        self._last = -1  # the number of the last tick received
        self._fit = (0.0, 60.0 / (float(bpm) * TICKS_PER_BEAT))  # tick n arrives at a + b * n: (a, b)
        self._playing = False
        self._run = (0, 0.0)  # (tick number, its beat) where this run of the transport began
        self._position = 0.0  # the beat while stopped: where the next tick will be
        self._resume_beat: float | None = None  # after Start / Continue / a song position: the next tick's beat
        self._resume_at = 0.0  # when that Start or Continue came
        self._times = DeltaTimes()
        self._stop = threading.Event()
        self._port = open_rtmidi_input(port_name, timing=True) if open_port else None
        self._reader = None
        if self._port is not None:
            self._reader = threading.Thread(target=self._poll, name="seqvae-midi-clock", daemon=True)
            self._reader.start()

    @property
    def name(self) -> str:
        return f"midi:{self.port_name}"

    def _poll(self) -> None:
        """Read the port's queue every POLL_S. A callback would run on JACK's process thread, and while it
        waited there for the GIL JACK went on without it: a period's MIDI was lost (ticks, under load)."""
        import mido

        while not self._stop.is_set():
            event = self._port.get_message()
            while event is not None:
                data, delta = event
                at = self._times.stamp(delta, time.perf_counter())
                try:
                    message = mido.Message.from_bytes(data)
                except ValueError:  # a broken message: nothing to follow
                    message = None
                if message is not None:
                    self.receive(message, at)
                event = self._port.get_message()
            self._stop.wait(POLL_S)

    def receive(self, message: Any, at: float | None = None) -> None:
        """One MIDI message (mido) that arrived at perf_counter time `at` (now when None)."""
        at = (time.perf_counter() if at is None else at) - self.delay_s
        kind = message.type
        with self._lock:
            if kind == "clock":
                changed = self._tick(at)
            elif kind in ("start", "continue"):
                self._position = 0.0 if kind == "start" else self._position
                self._resume_beat = self._position
                self._resume_at = at
                self._playing = False  # until the first tick after it
                changed = True
            elif kind == "stop":
                if self._playing:
                    self._position = self._beat_of(self._last + 1)
                self._playing = False
                self._resume_beat = None
                changed = True
            elif kind == "songpos":  # counted in 16ths
                self._position = message.pos / 4.0
                if self._playing or self._resume_beat is not None:
                    self._resume_beat = self._position
                changed = True
            else:
                changed = False
        if changed:
            self._changed()

    def _tick(self, at: float) -> bool:
        self._last += 1
        a, b = self._fit
        lost = self._lost_one(at, b)
        if lost:
            self._last += 1  # its time passed all the same: count it, or the beat runs a tick late from here
            log.warning("MIDI clock: a tick was lost on the way; counted")
        if self._ticks and abs(at - (a + b * self._last)) > max(b, self.JUMP_S):
            self._off.append((self._last, at))  # a stall, or a jump: left out of the fit until it is clear which
            if len(self._off) >= self.OFF_TICKS or self._resume_beat is not None:  # (a device restarting its clock)
                log.warning("MIDI clock: %d ticks in a row off the fit (a jump or a pause); the fit starts afresh",
                            len(self._off))
                self._ticks.clear()
                self._ticks.extend(self._off)
                self._off.clear()
                self._fit = _line_fit(self._ticks, self._fit[1])
        else:
            if self._off:
                log.warning("MIDI clock: %d ticks off the fit (a stall) left out of it", len(self._off))
                self._off.clear()
            self._ticks.append((self._last, at))
            self._fit = _line_fit(self._ticks, self._fit[1])
        if self._resume_beat is None:
            return False
        # The tick after Start (or Continue) is the resume beat; when that one was lost, it was the one before this.
        first = self._last - 1 if lost and self._resume_at < at - 0.5 * b else self._last
        self._run = (first, self._resume_beat)
        self._resume_beat = None
        self._playing = True
        return True

    def _lost_one(self, at: float, b: float) -> bool:
        """True when this tick came two intervals after the last one while the ticks before it came steadily one
        interval apart: one tick was lost on the way (JACK drops a period's MIDI on an xrun). A tempo halved
        exactly at that moment would read the same, once: that would put the beat a tick (1/24 beat) early."""
        recent = list(self._ticks)[-(self.STEADY_TICKS + 1):]
        if len(recent) <= self.STEADY_TICKS or recent[-1][0] != self._last - 1:
            return False
        intervals = [t1 - t0 for (_, t0), (_, t1) in zip(recent, recent[1:], strict=False)]
        steady = all(0.75 * b <= i <= 1.25 * b for i in intervals)
        return steady and 1.75 * b <= at - recent[-1][1] <= 2.25 * b

    def _beat_of(self, tick: float) -> float:
        run_tick, run_beat = self._run
        return run_beat + (tick - run_tick) / TICKS_PER_BEAT

    def tempo(self) -> float:
        return 60.0 / (self._fit[1] * TICKS_PER_BEAT)

    def beat_at(self, t: float) -> float:
        with self._lock:
            if not self._playing:
                return self._position
            a, b = self._fit
            return self._beat_of(min((t - a) / b, self._last + self.AHEAD_TICKS))

    def time_at(self, beat: float) -> float | None:
        with self._lock:
            if not self._playing:
                return None
            run_tick, run_beat = self._run
            tick = run_tick + (beat - run_beat) * TICKS_PER_BEAT
            if tick > self._last + self.AHEAD_TICKS:
                return None
            a, b = self._fit
            return a + b * tick

    def playing(self) -> bool:
        return self._playing

    def set_tempo(self, bpm: float) -> None:
        raise ValueError(f"the tempo follows the MIDI clock on {self.port_name!r}: change it on the device that "
                         "sends the clock")

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(1.0)
        if self._port is not None:
            self._port.close_port()


class DeltaTimes:
    """When MIDI messages arrived, from the MIDI system's own delta times rather than from when they were
    read (a reader waits for the GIL, and for a core on a busy machine). The deltas add up to a steady timeline;
    it is pinned to perf_counter time by the message read soonest after it arrived among the last WINDOW (a read
    can only be late, never early), so a missed delta misplaces the timeline for at most that many messages."""

    WINDOW = 2 * TICKS_PER_BEAT

    def __init__(self) -> None:
        self._elapsed: float | None = None  # seconds on the deltas' timeline since the first message
        self._offsets: deque[float] = deque(maxlen=self.WINDOW)  # callback time minus timeline time, per message

    def stamp(self, delta: float, called_at: float) -> float:
        """The arrival time of a message that came `delta` seconds after the previous one and was read at
        `called_at`."""
        self._elapsed = 0.0 if self._elapsed is None else self._elapsed + max(delta, 0.0)
        self._offsets.append(called_at - self._elapsed)
        return self._elapsed + min(self._offsets)


MIN_FIT_TICKS = TICKS_PER_BEAT // 4  # fewer ticks than a 16th (after a restart) keep the slope they had
# Tick intervals of 20..400 bpm: a fit outside them (ticks bunched by a stalled MIDI system) keeps its slope.
SLOWEST_TICK_S, FASTEST_TICK_S = 60.0 / (20 * TICKS_PER_BEAT), 60.0 / (400 * TICKS_PER_BEAT)


def _line_fit(points: deque[tuple[int, float]], slope: float) -> tuple[float, float]:
    """Least-squares line time = a + b * tick through the points. Fewer than MIN_FIT_TICKS points, or a slope
    no playable tempo has, keep the slope they are given and fit only the offset."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    if n >= MIN_FIT_TICKS:
        sxx = sum((x - mean_x) ** 2 for x, _ in points)
        fitted = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
        if FASTEST_TICK_S <= fitted <= SLOWEST_TICK_S:
            slope = fitted
    return mean_y - slope * mean_x, slope


def import_link() -> Any:
    try:
        import link
    except ImportError:
        raise ValueError(f"--clock link needs Ableton Link for Python: {LINK_INSTALL_HINT}") from None
    return link


def parse_clock(spec: str) -> tuple[str, str | None]:
    """'internal' | 'link' | 'midi' | 'midi:PORT' -> (source, MIDI port name or None); a clear error otherwise."""
    source, colon, port = str(spec).partition(":")
    if source not in SOURCES or (colon and (source != "midi" or not port)):
        raise ValueError(f"unknown clock source {spec!r}: send internal, link, midi or midi:PORT "
                         f"(e.g. midi:{DEFAULT_MIDI_CLOCK_PORT})")
    if source == "link":
        import_link()
    return source, (port or DEFAULT_MIDI_CLOCK_PORT) if source == "midi" else None


def make_clock(spec: str, bpm: float = 120.0, bar_beats: float = 4.0, delay_s: float = 0.0) -> Clock:
    """The clock `--clock spec` names, started (a Link session joined, a MIDI port opened); `delay_s` is the
    MIDI clock's `--clock-delay`."""
    source, port = parse_clock(spec)
    if source == "link":
        return LinkClock(bpm, bar_beats)
    if source == "midi":
        return MidiClock(port or DEFAULT_MIDI_CLOCK_PORT, bpm, bar_beats, delay_s=delay_s)
    return InternalClock(bpm, bar_beats)
