"""Meters on the 16th-note grid, and the window families a model can be trained on.

A model has one fixed window length in steps; a meter belongs to a family when a whole number
of its bars fills that window exactly (so every window starts on a bar line).
"""

from __future__ import annotations

from dataclasses import dataclass

STEPS_PER_QUARTER = 4

# Family name -> the window lengths (in steps) models of that family use.
FAMILY_WINDOWS: dict[str, tuple[int, ...]] = {"duple": (32, 256), "triple": (24, 192)}
# Numerators whose bars group in twos (duple) or threes (triple, simple or compound).
_FAMILY_NUMERATORS = {"duple": (1, 2, 4, 8), "triple": (3, 6, 12)}


@dataclass(frozen=True, order=True)
class Meter:
    numerator: int = 4
    denominator: int = 4

    def __post_init__(self) -> None:
        if self.numerator < 1 or self.denominator not in (1, 2, 4, 8, 16):
            raise ValueError(
                f"time signature {self.numerator}/{self.denominator} is not usable: "
                "send a positive numerator over 1, 2, 4, 8 or 16"
            )

    @property
    def steps_per_bar(self) -> int:
        """16th-note steps in one bar, e.g. 4/4 -> 16, 6/8 -> 12, 2/4 -> 8."""
        return self.numerator * 16 // self.denominator

    @property
    def family(self) -> str | None:
        """'duple', 'triple', or None for meters neither family holds (5/4, 9/8 ...)."""
        for name, numerators in _FAMILY_NUMERATORS.items():
            if self.numerator in numerators and self.fits(FAMILY_WINDOWS[name][0]):
                return name
        return None

    def fits(self, window_steps: int) -> bool:
        """True when a whole number of bars fills `window_steps`."""
        return self.steps_per_bar > 0 and 16 * self.numerator % self.denominator == 0 and (
            window_steps % self.steps_per_bar == 0
        )

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"

    @classmethod
    def parse(cls, text: str) -> Meter:
        """'6/8' -> Meter(6, 8); a clear error for anything else."""
        try:
            num, den = (int(part) for part in str(text).split("/"))
        except ValueError:
            raise ValueError(f"meter {text!r} is not a time signature: send e.g. '4/4' or '6/8'") from None
        return cls(num, den)


def family_for_window(window_steps: int) -> str:
    """The meter family a window length belongs to (32/256 -> duple, 24/192 -> triple)."""
    for name, windows in FAMILY_WINDOWS.items():
        if window_steps in windows:
            return name
    known = sorted(w for ws in FAMILY_WINDOWS.values() for w in ws)
    raise ValueError(f"window of {window_steps} steps is not supported: use one of {known}")
