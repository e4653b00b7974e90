"""Infill by search: regenerate a span of bars in two small batched decodes, keeping the other bars as they sound.

Fitting z to the kept bars by gradient descent (the method this replaces) took ~60 teacher-forced backward
passes and held the model for over half a second. A search does as well in two rounds of one encode and
one decode of a few rows each, the decode forcing the kept steps and scoring them in the same pass
(`decode_scored`):

1. Explore: latents between the posterior of the melody with its gap blanked to a rest and draws from the
   model's latent prior (`PRIOR_BLEND` of the way), decoded with the kept steps forced. The posterior mean
   alone will not do: it encodes "this bar is silent", and its draws decode an empty gap 96% of the time.
2. Refine: the `FILLERS` results (with a note starting in the gap) whose kept steps the model finds likeliest are
   encoded whole, so each posterior explains the kept bars and a real gap; latents around those means are
   decoded again, and the one with the likeliest kept steps wins.

Both rounds rank with a key prior: what a musician expects of a regenerated bar is that it stays in the key
of the bars around it. Each new note outside the major or minor key that best fits the kept notes (the
first in evaluate.features.KEY_MASKS on a tie, as bench_infill.py picks a key) costs `KEY_WEIGHT` nats of
kept-step likelihood. Without it the search's bars were less often in key than the optimiser's (see
docs/benchmarks.md); letting a tie of best-fitting keys take the one the gap fits best measured worse
than this one key. A user's own key (`Engine.constrained`) already masks the decode, and may be one no
major or minor key holds (harmonic minor): then the prior is off.

Every model call goes through the engine's per-call lock, in pieces a server's short requests can run
between. A kept bar must sound as it did, not only be spelt the same: in this codec a held note is
NO_EVENT steps, so a note held into the first kept bar would otherwise continue whatever the new gap ends
on. `keep_sound` re-articulates it (or ends the gap's note) at the gap's end. A note held from the bar
before the gap into the gap needs nothing: the kept bar sounds the same whatever follows, the blanked
melody ends it at the gap, and the new gap may hold it on or not.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from seqvae.codec import NO_EVENT, NOTE_OFF, EventCodec
from seqvae.codec.events import FIRST_NOTE_ON
from seqvae.engine.latent import variations
from seqvae.evaluate.features import KEY_MASKS

EXPLORE = 12  # latents decoded in round 1; these sizes weigh quality against time (benchmarks/bench_infill.py)
REFINE = 8  # latents decoded in round 2
FILLERS = 2  # explored gaps refined in round 2
PRIOR_BLEND = 0.8  # round 1 latents: slerp from the blanked melody's posterior mean towards prior draws
POSTERIOR_SCALE = 1.0  # round 2 latents around each filler: mu + POSTERIOR_SCALE * sigma * eps
KEY_WEIGHT = 8.0  # nats of kept-step likelihood one new note outside the kept bars' key costs (bench_infill.py)


class InfillModel(Protocol):
    """What the search needs from the engine."""

    steps: int
    codec: EventCodec
    key: object | None  # a user's key, already masking every decode: the key prior stays off

    def encode_events(self, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def decode_scored(self, z: np.ndarray, temperature: float = 0.0, seed: int | None = None,
                      forced: np.ndarray | None = None, mask: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]: ...

    def draw_prior(self, n: int, rng: np.random.Generator) -> np.ndarray: ...


def keep_sound(original: np.ndarray, new: np.ndarray, start: int, end: int, codec: EventCodec) -> np.ndarray:
    """`new`'s steps start..end-1 with `original`'s everywhere else, spelt so the kept steps sound as in the
    original: where the original holds a note (or a silence) into step `end` and the new gap ends on another
    pitch (or on a note), step `end` gets a note-on of the original pitch (or a note-off)."""
    out = np.array(original, dtype=np.int64)
    out[start:end] = new[start:end]
    if end < len(out) and original[end] == NO_EVENT:
        want = int(codec.sounding_pitches(original)[end])
        have = int(codec.sounding_pitches(out[:end])[-1])
        if want != have:
            out[end] = NOTE_OFF if want < 0 else codec.pitch_to_class(want)
    return codec.canonical(out)


def blank_gap(events: np.ndarray, start: int, end: int, codec: EventCodec) -> np.ndarray:
    """The melody with steps start..end-1 a rest and the kept bars sounding as before: what the search encodes."""
    rest = np.full(len(events), NO_EVENT, dtype=np.int64)
    rest[start] = NOTE_OFF
    return keep_sound(events, rest, start, end, codec)


def kept_key(events: np.ndarray, keep: np.ndarray, codec: EventCodec) -> np.ndarray | None:
    """The KEY_MASKS row [12] holding the most of the kept steps' notes (the first such); None without a kept note."""
    notes = events[keep & (events >= FIRST_NOTE_ON)]
    if len(notes) == 0:
        return None
    counts = np.bincount((notes - FIRST_NOTE_ON + codec.min_pitch) % 12, minlength=12)
    return KEY_MASKS[int(np.argmax(KEY_MASKS @ counts))]


def out_of_key(tokens: np.ndarray, start: int, end: int, key: np.ndarray, codec: EventCodec) -> np.ndarray:
    """Per row of tokens [n, steps], the gap's notes outside `key` (a KEY_MASKS row)."""
    gap = tokens[:, start:end]
    return ((gap >= FIRST_NOTE_ON) & ~key[(gap - FIRST_NOTE_ON + codec.min_pitch) % 12]).sum(axis=1)


def around(mu: np.ndarray, sigma: np.ndarray, counts: list[int], rng: np.random.Generator) -> np.ndarray:
    """For each posterior (mu, sigma) row, its mean and then counts[i] - 1 draws from it scaled by
    POSTERIOR_SCALE: [sum(counts), Z]."""
    rows = []
    for m, s, count in zip(mu, sigma, counts, strict=True):
        rows.append(m[None])
        rows.append(m + POSTERIOR_SCALE * s * rng.standard_normal((count - 1, len(m)), dtype=np.float32))
    return np.concatenate(rows).astype(np.float32)


def infill_events(model: InfillModel, events: np.ndarray, start: int, end: int, temperature: float,
                  seed: int | None, explore: int = EXPLORE, refine: int = REFINE) -> np.ndarray:
    """Event row [steps]: `events` with steps start..end-1 regenerated (greedy at temperature 0, else sampled;
    repeatable for a seed) and the rest sounding as before (`keep_sound`). `explore` and `refine` are the
    latents tried in each round."""
    if not 0 <= start < end <= model.steps or (start == 0 and end == model.steps):
        raise ValueError(f"gap steps {start}..{end - 1} must lie inside the {model.steps}-step window and leave "
                         "some steps kept")
    for name, count in (("explore", explore), ("refine", refine)):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"{name}={count!r}: send a whole number of latents to try, 1 or more")
    rng = np.random.default_rng(seed)
    codec = model.codec
    blank = blank_gap(events, start, end, codec)
    keep = np.ones(model.steps, dtype=bool)
    keep[start:end] = False
    key = None if model.key is not None else kept_key(events, keep, codec)
    mu, _ = model.encode_events(blank[None])
    explored = variations(mu[0], int(explore), PRIOR_BLEND, rng, model.draw_prior)
    tokens, score = _decode_ranked(model, explored, blank, keep, key, (start, end), temperature, rng)
    silent = ~(tokens[:, start:end] >= FIRST_NOTE_ON).any(axis=1)  # a silent gap would only encode the blank again
    fillers = min(FILLERS, int(explore), int(refine))
    best = np.lexsort((-score, silent))[:fillers]
    filled = np.stack([keep_sound(events, tokens[i], start, end, codec) for i in best])
    mu, sigma = model.encode_events(filled)
    counts = [len(part) for part in np.array_split(np.arange(int(refine)), fillers)]
    tokens, score = _decode_ranked(model, around(mu, sigma, counts, rng), blank, keep, key, (start, end),
                                   temperature, rng)
    return keep_sound(events, tokens[int(np.argmax(score))], start, end, codec)


def _decode_ranked(model: InfillModel, z: np.ndarray, blank: np.ndarray, keep: np.ndarray, key: np.ndarray | None,
                   gap: tuple[int, int], temperature: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tokens [n, steps] decoded from z [n, Z] with `blank`'s kept steps forced, and each row's score
    (float64 [n]): the kept steps' total log-likelihood, less KEY_WEIGHT per new note outside `key`."""
    forced = np.repeat(blank[None], len(z), axis=0)
    mask = np.repeat(keep[None], len(z), axis=0)
    seed = int(rng.integers(0, 2**63)) if temperature > 0 else None
    tokens, log_probs = model.decode_scored(z, temperature, seed, forced, mask)
    score = np.where(keep, log_probs.astype(np.float64), 0.0).sum(axis=1)
    if key is not None:
        score -= KEY_WEIGHT * out_of_key(tokens, *gap, key, model.codec)
    return tokens, score
