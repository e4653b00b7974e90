"""Argument checking for OSC requests: every bad value becomes a RequestError a musician can act on.

Pd and Max send every number as a float, liblo and sclang send ints where asked, so numbers are
accepted in either type; a float where a whole number is wanted must be whole. Slot names are
strings, but a number is taken as its name too (a Pd symbol that looks like a number arrives as a
float).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_SLOT_NAME = 64


class RequestError(ValueError):
    """A request the server refuses; the text is sent back in /seqvae/error."""


REQUIRED = object()


def describe(value: Any) -> str:
    """How a received value is named in an error: its value and its OSC type."""
    if isinstance(value, bool):
        return f"{'T' if value else 'F'} (a boolean)"
    if value is None:
        return "N (nil)"
    if isinstance(value, int):
        return f"{value} (int)"
    if isinstance(value, float):
        return f"{value:g} (float)"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"{shown!r} (string)"
    if isinstance(value, bytes):
        return f"a {len(value)}-byte blob"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class Param:
    """One positional argument of an address: its name, kind, bounds and default."""

    name: str
    kind: str  # 'slot' | 'int' | 'float' | 'text' | 'any' (a number or a string, passed as is)
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    help: str = ""

    @property
    def optional(self) -> bool:
        return self.default is not REQUIRED

    def signature(self) -> str:
        return f"[{self.name}]" if self.optional else self.name

    def convert(self, value: Any) -> Any:
        if self.kind == "slot":
            return as_slot(value, self.name)
        if self.kind == "text":
            return as_text(value, self.name)
        if self.kind == "int":
            return as_int(value, self.name, self.low, self.high)
        if self.kind == "float":
            return as_float(value, self.name, self.low, self.high)
        if self.kind == "any":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise RequestError(f"{self.name} must be a number or a string, got {describe(value)}")
            if isinstance(value, float) and not math.isfinite(value):
                raise RequestError(f"{self.name} must be a finite number or a string, got {describe(value)}")
            if isinstance(value, int) and not -(2**31) <= value < 2**31:
                raise RequestError(f"{self.name} must fit a 32-bit int, got {value}")
            if isinstance(value, str) and len(value) > 1024:
                raise RequestError(f"{self.name} must be at most 1024 characters long")
            return value
        raise AssertionError(f"unknown parameter kind {self.kind}")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {_num(low)} to {_num(high)}"
    if low is not None:
        return f" of at least {_num(low)}"
    if high is not None:
        return f" of at most {_num(high)}"
    return ""


def as_float(value: Any, name: str, low: float | None = None, high: float | None = None) -> float:
    want = f"{name} must be a number{_range_text(low, high)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{want}, got {describe(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise RequestError(f"{want}, got {describe(value)}")
    if (low is not None and number < low) or (high is not None and number > high):
        raise RequestError(f"{want}, got {number:g}")
    return number


def as_int(value: Any, name: str, low: float | None = None, high: float | None = None) -> int:
    want = f"{name} must be a whole number{_range_text(low, high)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{want}, got {describe(value)}")
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value - round(value)) > 1e-6:
            raise RequestError(f"{want}, got {describe(value)}")
        value = int(round(value))
    if (low is not None and value < low) or (high is not None and value > high):
        raise RequestError(f"{want}, got {value}")
    return int(value)


def as_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{name} must be a string, got {describe(value)}")
    if not value or "\x00" in value or len(value) > 1024:
        raise RequestError(f"{name} must be a non-empty string of at most 1024 characters")
    return value


def as_slot(value: Any, name: str = "slot") -> str:
    """A slot name: a short string without spaces or control characters; whole numbers become names."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
            raise RequestError(f"{name} must be a slot name such as 'a', got {describe(value)}")
        value = str(int(value))
    if not isinstance(value, str):
        raise RequestError(f"{name} must be a slot name such as 'a', got {describe(value)}")
    if not value or len(value) > MAX_SLOT_NAME:
        raise RequestError(f"{name} must be a slot name of 1 to {MAX_SLOT_NAME} characters, got {describe(value)}")
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise RequestError(f"{name} {value!r} has spaces or control characters: use a name like 'a' or 'lead'")
    return value


def bind(address: str, params: tuple[Param, ...], args: tuple) -> list[Any]:
    """Positional OSC arguments -> converted values, defaults filled; RequestError on any mismatch."""
    n_required = sum(1 for p in params if not p.optional)
    usage = f"{address} {' '.join(p.signature() for p in params)}".rstrip()
    if len(args) < n_required:
        missing = params[len(args)].name
        raise RequestError(f"missing {missing}: send {usage}")
    if len(args) > len(params):
        raise RequestError(f"{len(args)} arguments is too many: send {usage}")
    values = []
    for i, param in enumerate(params):
        values.append(param.convert(args[i]) if i < len(args) else param.default)
    return values
