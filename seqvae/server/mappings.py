"""Knobs: MIDI controllers and other tools' OSC addresses mapped to seqvae requests.

A mapping is a request with one argument written `$` (or `$LOW:HIGH`): each new input value is
scaled into that argument's range and the request runs for the client that made the mapping,
replying nowhere; its effect is the slot it fills (a playing voice swaps at the bar line). A
mapping with no `$` is a trigger: it runs when the input rises past the middle of its range (a
button). Mappings to one request (same address, same slot names) share their numbers, so two
CCs, one on `x` and one on `y`, make an XY pad: each sets its own argument and the other keeps
its last value. While a knob's request is running, further moves only replace the value that
runs next: a fast sweep costs a decode per reply, not a queue of stale ones.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from seqvae.server.params import RequestError, as_float, as_int, bind, describe

log = logging.getLogger("seqvae.server")

CC_MAX = 127
# Addresses a knob can't use: the mapping addresses themselves (a loop), notes given inline, and
# requests whose only effect is the reply a knob never gets.
NOT_FROM_KNOBS = {
    "/seqvae/map_cc": "a mapping cannot make mappings",
    "/seqvae/unmap_cc": "a mapping cannot remove mappings",
    "/seqvae/map_osc": "a mapping cannot make mappings",
    "/seqvae/unmap_osc": "a mapping cannot remove mappings",
    "/seqvae/encode": "its notes come inline; record a phrase with /seqvae/record instead",
    "/seqvae/ping": "its only effect is the reply, and a knob's request replies nowhere",
    "/seqvae/status": "its only effect is the reply, and a knob's request replies nowhere",
    "/seqvae/clock": "its only effect is the reply, and a knob's request replies nowhere",
    "/seqvae/novelty": "its only effect is the reply, and a knob's request replies nowhere",
}


@dataclass(frozen=True)
class Placeholder:
    """Where the input value goes in a request: argument `index`, scaled into low..high."""

    index: int
    low: float
    high: float
    whole: bool

    def value(self, unit: float) -> float | int:
        scaled = self.low + (self.high - self.low) * min(max(unit, 0.0), 1.0)
        return round(scaled) if self.whole else scaled


@dataclass(frozen=True)
class Request:
    """A seqvae request with at most one `$`."""

    owner: Any  # the Client whose slots it uses
    address: str
    args: tuple
    placeholder: Placeholder | None

    @property
    def group(self) -> tuple:
        """Requests that share their numbers: same owner, address and non-number arguments."""
        words = tuple(a if isinstance(a, str) else None for i, a in enumerate(self.args)
                      if self.placeholder is None or i != self.placeholder.index)
        return (self.owner.key, self.address, words)

    def describe(self) -> list:
        shown = list(self.args)
        if self.placeholder is not None:
            shown[self.placeholder.index] = f"${self.placeholder.low:g}:{self.placeholder.high:g}"
        return [self.address, *shown]


def parse_request(routes: dict[str, Any], owner: Any, words: tuple) -> Request:
    """A request from a mapping's words (`/seqvae/morph a b $ knob`), checked as if it were sent now."""
    if not words or not isinstance(words[0], str):
        raise RequestError("a mapping needs a seqvae request after it, e.g. /seqvae/morph a b $ knob")
    address, args = words[0], tuple(words[1:])
    route = routes.get(address)
    if route is None:
        raise RequestError(f"a mapping's request must be a seqvae address; {address!r} is none: send one of "
                           f"{', '.join(a for a in routes if a not in NOT_FROM_KNOBS)}")
    if address in NOT_FROM_KNOBS:
        raise RequestError(f"{address} can't be run from a knob: {NOT_FROM_KNOBS[address]}")
    marks = [i for i, a in enumerate(args) if isinstance(a, str) and a.startswith("$")]
    if len(marks) > 1:
        raise RequestError(f"a mapping has one $ (the knob's value); {address} got {len(marks)}")
    placeholder = None
    if marks:
        index = marks[0]
        if index >= len(route.params) or route.params[index].kind not in ("float", "int"):
            numbers = [p.name for p in route.params if p.kind in ("float", "int")]
            raise RequestError(f"$ must stand for a number argument of {address} "
                               f"({', '.join(numbers) or 'it has none'}), not argument {index + 1}")
        placeholder = _placeholder(route.params[index], index, args[index], address)
    request = Request(owner, address, args, placeholder)
    bind(address, route.params, request_args(request, 0.5))  # a bad argument is said now, not at each move
    return request


def _placeholder(param: Any, index: int, mark: str, address: str) -> Placeholder:
    low, high = param.low, param.high
    if mark != "$":
        parts = mark[1:].split(":")
        try:
            low, high = (float(part) for part in parts)
        except ValueError:
            raise RequestError(f"{mark!r}: write $ or $LOW:HIGH (e.g. $-2:2) for {address}'s {param.name}") from None
        for value in (low, high):
            if (param.low is not None and value < param.low) or (param.high is not None and value > param.high):
                raise RequestError(f"{mark!r}: {address}'s {param.name} takes {param.low:g} to {param.high:g}")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        raise RequestError(f"{address}'s {param.name} has no fixed range: give one as $LOW:HIGH")
    return Placeholder(index, float(low), float(high), param.kind == "int")


def request_args(request: Request, unit: float, shared: dict[int, Any] | None = None) -> tuple:
    """The request's arguments for an input at `unit` (0..1) of its range; numbers other mappings set stay."""
    args = list(request.args)
    for index, value in (shared or {}).items():
        args[index] = value
    if request.placeholder is not None:
        args[request.placeholder.index] = request.placeholder.value(unit)
    return tuple(args)


@dataclass
class InputRange:
    """The range of an OSC input: given, or learned (0..1 until values outside it arrive, then widened)."""

    low: float = 0.0
    high: float = 1.0
    learn: bool = True

    def unit(self, value: float) -> float:
        if self.learn:
            self.low, self.high = min(self.low, value), max(self.high, value)
        span = self.high - self.low
        return 0.0 if span <= 0 else (value - self.low) / span


@dataclass
class OscMapping:
    request: Request
    arg_index: int
    range: InputRange
    last: float = 0.0  # the input's last value, 0..1 of its range (a trigger fires on the way up)


@dataclass
class _Group:
    """What mappings to one request share: numbers set so far, whether one runs, the value that runs next."""

    numbers: dict[int, Any] = field(default_factory=dict)
    running: bool = False
    next_args: tuple | None = None


class Knobs:
    """Every mapping the server has, and the coalescing of their requests.

    `run(owner, address, args, done)` sends a request through the owner's request order; `done`
    gets its reply messages instead of the owner.
    """

    def __init__(self, routes: dict[str, Any],
                 run: Callable[[Any, str, tuple, Callable[[list], None]], None]) -> None:
        self.routes = routes
        self.run = run
        self.cc: dict[tuple[int, int], dict[Hashable, Request]] = {}  # (channel, cc) -> owner key -> request
        self.cc_values: dict[tuple[int, int], int] = {}
        self.osc: dict[str, dict[Hashable, OscMapping]] = {}  # address -> owner key -> mapping
        self.groups: dict[tuple, _Group] = {}
        self.fired = 0  # requests started by mappings

    # ---- making and removing mappings ----------------------------------------------------------

    def map_cc(self, owner: Any, channel: int, cc: int, words: tuple) -> Request:
        channel, cc = as_int(channel, "channel", 1, 16), as_int(cc, "cc", 0, CC_MAX)
        request = parse_request(self.routes, owner, words)
        self.cc.setdefault((channel, cc), {})[owner.key] = request
        return request

    def unmap_cc(self, owner: Any, channel: int, cc: int) -> None:
        mine = self.cc.get((channel, cc), {})
        if owner.key not in mine:
            raise RequestError(f"you have no mapping on channel {channel} CC {cc} (yours: "
                               f"{self._listed(owner, self.cc, lambda k: f'{k[0]}/{k[1]}')})")
        del mine[owner.key]
        if not mine:
            del self.cc[(channel, cc)]

    def map_osc(self, owner: Any, address: str, words: tuple) -> OscMapping:
        if not isinstance(address, str) or not address.startswith("/") or len(address) < 2:
            raise RequestError(f"{describe(address)} is not an OSC address: send one such as /1/fader1")
        if address == "/seqvae" or address.startswith("/seqvae/"):
            raise RequestError(f"{address} would shadow seqvae's own addresses: map another tool's address, "
                               "such as /1/fader1")
        numbers = []
        while words and not (isinstance(words[0], str) and words[0].startswith("/")):
            numbers.append(words[0])
            words = words[1:]
        if len(numbers) == 0:
            arg_index, given = 0, None
        elif len(numbers) == 1:
            arg_index, given = as_int(numbers[0], "arg_index", 0, 255), None
        elif len(numbers) == 3:
            arg_index = as_int(numbers[0], "arg_index", 0, 255)
            given = (as_float(numbers[1], "low"), as_float(numbers[2], "high"))
            if given[0] == given[1]:
                raise RequestError(f"low and high are both {given[0]:g}: give a range such as 0 1")
        else:
            raise RequestError(f"between the address and the request send nothing, arg_index, or arg_index low "
                               f"high; got {len(numbers)} values")
        request = parse_request(self.routes, owner, words)
        mapping = OscMapping(request, arg_index,
                             InputRange(*given, learn=False) if given else InputRange())
        self.osc.setdefault(address, {})[owner.key] = mapping
        return mapping

    def unmap_osc(self, owner: Any, address: str) -> None:
        mine = self.osc.get(address, {})
        if owner.key not in mine:
            raise RequestError(f"you have no mapping of {address!r} (yours: {self._listed(owner, self.osc, str)})")
        del mine[owner.key]
        if not mine:
            del self.osc[address]

    def forget(self, owner: Any) -> None:
        """A client went away: its mappings go."""
        for table in (self.cc, self.osc):
            for key in list(table):
                table[key].pop(owner.key, None)
                if not table[key]:
                    del table[key]

    def owners(self) -> set[Hashable]:
        """Keys of the clients with a mapping: the server keeps them while their knobs can turn."""
        return {key for table in (self.cc, self.osc) for by_owner in table.values() for key in by_owner}

    @staticmethod
    def _listed(owner: Any, table: dict, show: Callable[[Any], str]) -> str:
        return ", ".join(show(key) for key, by_owner in table.items() if owner.key in by_owner) or "none"

    # ---- input ---------------------------------------------------------------------------------

    def on_cc(self, channel: int, cc: int, value: int) -> None:
        """A controller moved (on the loop)."""
        before = self.cc_values.get((channel, cc), 0)
        self.cc_values[(channel, cc)] = value
        for request in list(self.cc.get((channel, cc), {}).values()):
            self._move(request, value / CC_MAX, before / CC_MAX)

    def on_osc(self, address: str, args: tuple) -> str | None:
        """A mapped OSC message; the error text when its value can't be read."""
        for mapping in list(self.osc.get(address, {}).values()):
            if mapping.arg_index >= len(args):
                return (f"{address} is mapped to its argument {mapping.arg_index}, but the message has "
                        f"{len(args)} argument(s)")
            value = args[mapping.arg_index]
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"{address}'s argument {mapping.arg_index} is {describe(value)}: a mapping needs a number"
            unit = mapping.range.unit(float(value))
            before, mapping.last = mapping.last, unit
            self._move(mapping.request, unit, before)
        return None

    def is_mapped(self, address: str) -> bool:
        return address in self.osc

    def _move(self, request: Request, unit: float, before: float) -> None:
        if request.placeholder is None and not (before < 0.5 <= unit):
            return  # a trigger runs once per press
        group = self.groups.setdefault(request.group, _Group())
        args = request_args(request, unit, group.numbers)
        if request.placeholder is not None:
            group.numbers[request.placeholder.index] = args[request.placeholder.index]
        if group.running:
            group.next_args = args
            return
        self._start(request, group, args)

    def _start(self, request: Request, group: _Group, args: tuple) -> None:
        group.running = True
        self.fired += 1

        def done(messages: list) -> None:
            for address, reply in messages:
                if address == "/seqvae/error":
                    log.warning("mapped %s failed: %s", request.address, reply[-1])
            pending, group.next_args = group.next_args, None
            if pending is not None:
                self._start(request, group, pending)
            else:
                group.running = False

        self.run(request.owner, request.address, args, done)
