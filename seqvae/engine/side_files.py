"""Fitting a checkpoint's side files from a corpus: the attribute vectors `shift` moves along and the latent
prior `sample` draws from, both written beside the weights.

A chord model encodes each window under its own chords (a corpus built with `--chords`), so its vectors and
prior live in the same latent space the engine encodes into; prior samples are judged under held-out chords.

The kernel prior's bandwidth is chosen by the data-copying test (evaluate/copying.py) against up to 1,000
melodies of another split; the vectors' monotonicity is measured on validation melodies and stored with them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from seqvae.data.corpus import Corpus
from seqvae.engine.engine import SAMPLE_TEMPERATURE, Engine
from seqvae.evaluate.attributes import Monotonicity, compute_attribute_vectors, measure_monotonicity
from seqvae.evaluate.copying import BandwidthChoice, fit_novelty_matched_prior, match_novelty
from seqvae.models.attribute_vectors import AttributeVectors
from seqvae.models.chord_bank import ChordBank
from seqvae.models.latent_prior import LatentPrior

HELD_OUT = 1000  # melodies of another split the prior's bandwidth is matched against
MIN_WINDOWS = 8


@dataclass
class SideFiles:
    """What `fit_side_files` made and measured, for the caller to report."""

    vectors: AttributeVectors
    prior: LatentPrior
    windows: int  # melodies the vectors and the prior were fitted on
    held_split: str  # the split the bandwidth was matched against
    held_windows: int
    bandwidths: list[BandwidthChoice]  # the prior's kernels matched to unseen melodies' novelty, the kept first
    bank_bandwidth: BandwidthChoice | None = None  # a chord model's: its bank's draws under the held-out chords
    monotonicity: dict[str, Monotonicity] = field(default_factory=dict)
    measured_on: int = 0  # validation melodies the monotonicity was measured on
    paths: list[Path] = field(default_factory=list)


def fit_side_files(engine: Engine, corpus: Corpus, split: str = "train", limit: int | None = None, seed: int = 0,
                   max_centers: int | None = None, measure: int = 0,
                   progress: Callable[[int], None] | None = None) -> SideFiles:
    """Fit the attribute vectors and the latent prior on `split` (a random `limit` of its windows), measure the
    vectors on `measure` validation melodies, install both in the engine and save them beside its weights.
    `progress` is called with each batch of windows encoded."""
    if engine.directory is None:
        raise ValueError(f"model '{engine.model_name}' has no checkpoint directory to store its side files in")
    if corpus.steps != engine.steps:
        raise ValueError(f"{corpus.path} holds {corpus.steps}-step windows but the model reads {engine.steps}: "
                         "build the corpus with the model's --steps")
    windows = corpus.split(split)
    if len(windows) < MIN_WINDOWS:
        raise ValueError(f"the {split} split of {corpus.path} has {len(windows)} windows; need at least {MIN_WINDOWS}")
    index = np.arange(len(windows))
    if limit and limit < len(windows):
        index = np.sort(np.random.default_rng(seed).choice(len(windows), limit, replace=False))
    events = np.asarray(windows.events[index], dtype=np.int64)
    chords = corpus.chords_of(split, index, engine.model_name) if engine.chord_classes else None
    mu, _ = engine.encode_events(events, progress=progress, chords=chords)
    meta = {"data": str(corpus.path), "split": split, "windows": int(len(events))}
    vectors = compute_attribute_vectors(mu, events, meta=meta, min_pitch=engine.codec.min_pitch)
    engine.set_attribute_vectors(vectors)

    held_split = "valid" if split != "valid" else "test"
    held = np.asarray(corpus.split(held_split).events[:HELD_OUT], dtype=np.int64)
    held_chords = (corpus.chords_of(held_split, slice(0, len(held)), engine.model_name)
                   if engine.chord_classes else None)

    def decode(z: np.ndarray) -> np.ndarray:
        heard = None if held_chords is None else np.resize(held_chords, (len(z), held_chords.shape[1]))
        return engine.decode_events(z, temperature=SAMPLE_TEMPERATURE, seed=0, chords=heard)

    prior, choices = fit_novelty_matched_prior(mu, events, held, held_split, decode, engine.codec.min_pitch,
                                               max_centers)
    engine.set_latent_prior(prior)
    fitted = SideFiles(vectors, prior, len(events), held_split, len(held), choices)
    fitted.paths.append(prior.save(engine.directory))
    if chords is not None:  # a chord model samples under chords from the windows nearest them (models/chord_bank.py)
        bank = ChordBank.fit(events, chords, seed)
        if prior.centers is not None and len(held):
            fitted.bank_bandwidth = _match_bank_novelty(engine, bank, prior, events, held, held_chords, decode,
                                                        seed)
            bank = replace(bank, bandwidth=fitted.bank_bandwidth.bandwidth)
        engine.chord_bank = bank
        fitted.paths.append(bank.save(engine.directory))
    if measure > 0:
        measured_split = "valid" if len(corpus.split("valid")) else split
        take = np.asarray(corpus.split(measured_split).events[:measure], dtype=np.int64)
        take_chords = (corpus.chords_of(measured_split, slice(0, len(take)), engine.model_name)
                       if engine.chord_classes else None)
        results = measure_monotonicity(engine, vectors, take, engine.codec.min_pitch, chords=take_chords)
        fitted.monotonicity = {r.name: r for r in results}
        fitted.measured_on = len(take)
        vectors.meta["monotonicity"] = {name: asdict(r) for name, r in fitted.monotonicity.items()}
    fitted.paths.append(vectors.save(engine.directory))
    return fitted


def _match_bank_novelty(engine: Engine, bank: ChordBank, prior: LatentPrior, events: np.ndarray, held: np.ndarray,
                        held_chords: np.ndarray, decode: Callable[[np.ndarray], np.ndarray],
                        seed: int) -> BandwidthChoice:
    """The bank's bandwidth by the data-copying test: its draws under the held-out windows' chords, decoded under
    them, as far from the training windows as those melodies are. Narrower fits the chords better but copies.
    The matched windows are encoded once; every bandwidth then draws the same noise around them."""
    rng = np.random.default_rng(seed)
    centres = bank.matched_latents(held_chords, rng, lambda melodies, heard: engine.encode_events(
        melodies, chords=heard)[0], engine.codec.num_classes)
    return match_novelty(lambda h: prior.sample_near(centres, copy.deepcopy(rng), h), decode, events, held)
