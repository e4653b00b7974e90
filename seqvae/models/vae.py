"""SequenceVAE: one encoder, one decoder, the objective. The interface the trainer and the engine share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqvae.codec.events import FIRST_NOTE_ON
from seqvae.models import native, plans
from seqvae.models.decoder import Decoder, Generation
from seqvae.models.lstm import BidirectionalLSTMEncoder, HierarchicalDecoder, HierarchicalLSTMEncoder, LSTMDecoder
from seqvae.models.precision import PRECISIONS
from seqvae.models.registry import ModelConfig
from seqvae.models.sampling import draw_uniforms
from seqvae.models.transformer import TransformerDecoder, TransformerEncoder


@dataclass
class VAEOutput:
    logits: torch.Tensor  # [B, T, C]
    mu: torch.Tensor  # [B, Z]
    sigma: torch.Tensor  # [B, Z]
    z: torch.Tensor  # [B, Z]


@dataclass
class LatentOutput:
    """The latent stage's training pass: the conductor's segment latents beside the segment encoder's posteriors."""

    predicted: torch.Tensor  # [B, S, Zs] conductor output
    target_mu: torch.Tensor  # [B, S, Zs] segment posterior means
    target_sigma: torch.Tensor  # [B, S, Zs]
    mu: torch.Tensor  # [B, Z]
    sigma: torch.Tensor  # [B, Z]


@dataclass
class LossTerms:
    loss: torch.Tensor  # scalar to minimise: mean over the batch of recon + beta * max(KL - free_bits, 0)
    recon: torch.Tensor  # mean over the batch of the summed per-step cross-entropy (nats)
    kl: torch.Tensor  # mean over the batch of KL(q(z|x) || N(0, I)) over the whole z (nats)
    kl_per_dim: torch.Tensor  # [Z], batch mean
    accuracy: torch.Tensor  # share of steps whose argmax is the true event (NaN in the latent stage: no events)


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per dimension KL(N(mu, sigma^2) || N(0, 1)), [B, Z]."""
    return 0.5 * (mu.square() + sigma.square() - 1.0) - torch.log(sigma)


def _loss_terms(recon: torch.Tensor, out: VAEOutput | LatentOutput, beta: float, free_bits: float,
                accuracy: torch.Tensor) -> LossTerms:
    """Per-example recon [B] plus beta * max(KL - free_bits, 0), averaged over the batch."""
    kl_dims = kl_divergence(out.mu.float(), out.sigma.float())
    kl = kl_dims.sum(dim=1)
    loss = (recon + beta * torch.clamp(kl - free_bits, min=0.0)).mean()
    return LossTerms(loss, recon.mean(), kl.mean(), kl_dims.mean(dim=0), accuracy)


def vae_loss(out: VAEOutput, x: torch.Tensor, beta: float, free_bits: float) -> LossTerms:
    logits = out.logits.float()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1), reduction="none").view(x.shape)
    accuracy = (logits.argmax(dim=-1) == x).float().mean()
    return _loss_terms(ce.sum(dim=1), out, beta, free_bits, accuracy)


def latent_loss(out: LatentOutput, beta: float, free_bits: float) -> LossTerms:
    """The latent stage's objective: recon is the negative log-density of each predicted segment latent under
    that segment's posterior (constants dropped). Dividing by the posterior sigma asks for precision in the
    directions the segment decoder reads and little in those it ignores."""
    standard = (out.predicted.float() - out.target_mu.float()) / out.target_sigma.float()
    recon = 0.5 * standard.square().sum(dim=(1, 2))
    return _loss_terms(recon, out, beta, free_bits, torch.tensor(float("nan")))


class SequenceVAE(nn.Module):
    """A melody VAE over event windows of `config.steps` steps.

    encode / decode / logits are inference entry points (they validate input and give clear errors, and pick the
    inference backend through plans.py); forward is the training pass.

    A chord model (`config.chord_classes` > 0, flat LSTM only) reads a chord class per step [B, steps] in all of
    them (`chords=`): its one-hot is concatenated to the encoder's and the decoder's input at every step.
    """

    decoder: Decoder

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c, classes = config, config.num_classes
        if c.architecture == "transformer":
            args = (classes, c.steps, c.z_size, c.d_model, c.n_heads)
            self.encoder = TransformerEncoder(*args, c.encoder_layers, c.ff_size, c.dropout)
            self.decoder = TransformerDecoder(*args, c.decoder_layers, c.ff_size, c.dropout)
        else:
            if c.segment_z_size:
                self.encoder = HierarchicalLSTMEncoder(classes, c.encoder_sizes, c.segment_z_size, c.conductor_sizes,
                                                       c.z_size, c.segments, segment_sigma=c.latent_train_steps > 0)
            else:
                self.encoder = BidirectionalLSTMEncoder(classes, c.encoder_sizes, c.z_size,
                                                        feature_size=c.chord_classes)
            if c.architecture == "hier":
                self.decoder = HierarchicalDecoder(classes, c.z_size, c.conductor_sizes, c.decoder_sizes, c.steps,
                                                   c.segments, c.segment_z_size)
            else:
                self.decoder = LSTMDecoder(classes, c.z_size, c.decoder_sizes, c.steps, c.chord_classes)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ input checks
    def _check_events(self, x: torch.Tensor, what: str = "events") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        if x.dim() != 2 or x.shape[1] != self.config.steps:
            raise ValueError(
                f"{what} must be a [batch, {self.config.steps}] array for model {self.config.name!r}, got shape "
                f"{tuple(x.shape)}"
            )
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise ValueError(f"{what} must hold integer event classes, got dtype {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.config.num_classes):
            raise ValueError(f"{what} hold classes outside 0..{self.config.num_classes - 1} for this model")
        return x.to(device=self.device, dtype=torch.long)

    def _chord_features(self, chords: torch.Tensor | None, rows: int) -> torch.Tensor | None:
        """Chord classes [rows, steps] -> one-hot [rows, steps, chord_classes] inputs (None for a model without
        chords, which must be sent none)."""
        classes = self.config.chord_classes
        if not classes:
            if chords is not None:
                raise ValueError(f"model {self.config.name!r} is not chord-conditioned: send no chords, or use a "
                                 "chord model (e.g. mel_2bar_chords)")
            return None
        if chords is None:
            raise ValueError(f"model {self.config.name!r} is chord-conditioned: send chords, a [batch, "
                             f"{self.config.steps}] array of chord classes 0..{classes - 1} (0 = no chord)")
        if not isinstance(chords, torch.Tensor):
            chords = torch.as_tensor(chords)
        if chords.dim() != 2 or tuple(chords.shape) != (rows, self.config.steps):
            raise ValueError(f"chords must be a [{rows}, {self.config.steps}] array (a chord class per step of each "
                             f"row), got shape {tuple(chords.shape)}")
        if chords.dtype.is_floating_point or chords.dtype == torch.bool:
            raise ValueError(f"chords must hold integer chord classes, got dtype {chords.dtype}")
        chords = chords.to(device=self.device, dtype=torch.long)
        if chords.numel() and (int(chords.min()) < 0 or int(chords.max()) >= classes):
            raise ValueError(f"chords hold classes outside 0..{classes - 1} (0 = no chord)")
        return F.one_hot(chords, classes).to(self.decoder_dtype)

    def _check_fast(self, fast: bool | None) -> bool:
        """Whether to run the fast paths (the step plans: the C kernel or numpy on the CPU, chord models included;
        CUDA graphs on a GPU, which read no chords; the C encoder on the CPU): asked for, else by default where
        one applies."""
        if fast is not None:
            return fast
        return self.device.type == "cpu" or (self.device.type == "cuda" and not self.config.chord_classes)

    def _check_z(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor):
            z = torch.as_tensor(z)
        if z.dim() != 2 or z.shape[1] != self.config.z_size:
            raise ValueError(f"z must be [batch, {self.config.z_size}] for model {self.config.name!r}, got "
                             f"shape {tuple(z.shape)}")
        if not torch.isfinite(z).all():
            raise ValueError("z holds NaN or infinite values")
        return z.to(device=self.device, dtype=self.decoder_dtype)

    def forget_inference_plans(self) -> None:
        """Make the fast paths re-read the weights (call after optimizer steps, before measuring)."""
        plans.forget_plans(self)

    def bf16_decoding_available(self) -> bool:
        """True where decode(precision="bfloat16") runs: a decoder with a C step loop (LSTM or transformer) on the
        CPU, the kernel built for a CPU that has the AVX512-BF16 dot-product instructions."""
        core = self.decoder.step_core
        if self.device.type != "cpu" or core is None:
            return False
        plan = plans.plan_for(core)
        return plan is not None and plan.has_bf16_dot

    def decoding_precision(self, precision: str) -> str:
        """The arithmetic `precision` ("auto", "float32", "bfloat16") decodes in here. "auto" takes bfloat16 where
        the decoder's weights are bfloat16 values (the shipped models: trained with bfloat16 autocast, saved in
        bfloat16) and the CPU kernel has the AVX512-BF16 dot products; a batch of 64 then decodes ~1.6x faster with
        the same greedy accuracy. Anything else decodes in float32, token for token the reference path's results."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if precision == "float32":
            return precision
        available = self.bf16_decoding_available()
        if precision == "bfloat16":
            if not available:
                raise ValueError("bfloat16 decoding needs the C kernel's decoder (LSTM or transformer) on a CPU with "
                                 "AVX512-BF16; use precision='float32'")
            return precision
        return "bfloat16" if available and native.bfloat16_exact(self.decoder) else "float32"

    @property
    def decoder_dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype

    # ------------------------------------------------------------------ inference
    def encode(self, x: torch.Tensor, fast: bool | None = None,
               chords: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior (mu, sigma), each [B, z_size]. `fast` (default) uses the C encoder where it applies (CPU);
        a chord model needs `chords` [B, steps] (chord classes), which the C encoder reads too."""
        x = self._check_events(x)
        features = self._chord_features(chords, x.shape[0])
        with torch.no_grad():
            if self._check_fast(fast):
                plan = plans.encoder_plan_for(self.encoder)
                if plan is not None:
                    return plan.encode(x) if features is None else plan.encode(x, features)
            if features is None:
                return self.encoder(x)
            return self.encoder(x, features)

    def decode(
        self,
        z: torch.Tensor,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        forced: torch.Tensor | None = None,
        forced_mask: torch.Tensor | None = None,
        fast: bool | None = None,
        precision: str = "float32",
        log_probs: torch.Tensor | None = None,
        uniforms: torch.Tensor | None = None,
        allowed: torch.Tensor | None = None,
        chords: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Free-running generation [B, steps]; temperature 0 is greedy; forced tokens are kept (and fed back)
        where forced_mask is True. `fast` (default: on the CPU, and on CUDA for a model without chords) runs the
        decoder through a step plan (on a GPU a recurrent step loop replayed as CUDA graphs; on the CPU the C
        kernel, else numpy, for a recurrent decoder and the C loop for the transformer) and fast=False the torch
        reference loop; precision "bfloat16" runs a recurrent decoder's per-step matrices in bfloat16 arithmetic
        where `bf16_decoding_available()` says so. `log_probs` (float32 [B, steps] on the CPU) receives each
        emitted token's log-probability under the model, forced ones included. `uniforms` (float32 [steps, B] on the
        CPU) are the sampling draws in place of drawing them from `generator`: row b's notes depend only on
        column b, so a caller that draws them once can decode the rows in any pieces and get the same notes.
        `allowed` (bool [num_classes]) masks the classes free steps may choose (a key and range: see
        seqvae.codec.scales); forced steps are kept whatever it says. `chords` [B, steps] (chord classes) are what
        a chord model decodes under, on every path (the step plans add each step's chord row to the first layer's
        gates)."""
        z = self._check_z(z)
        features = self._chord_features(chords, z.shape[0])
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision {precision!r}: decode in 'float32' or 'bfloat16' (decoding_precision "
                             "resolves 'auto')")
        bf16 = precision == "bfloat16"
        if bf16 and not self.bf16_decoding_available():
            raise ValueError("bfloat16 decoding needs a recurrent decoder, the C kernel and a CPU with AVX512-BF16: "
                             "decode in float32 (precision='float32')")
        if temperature < 0 or not torch.isfinite(torch.tensor(float(temperature))):
            raise ValueError(f"temperature {temperature} must be a finite number >= 0 (0 = greedy)")
        if (forced is None) != (forced_mask is None):
            raise ValueError("forced and forced_mask go together: send both or neither")
        if forced is not None:
            forced = self._check_events(forced, "forced tokens")
            forced_mask = torch.as_tensor(forced_mask, device=self.device)
            if forced_mask.shape != forced.shape:
                raise ValueError(
                    f"forced_mask shape {tuple(forced_mask.shape)} must match forced {tuple(forced.shape)}"
                )
            if forced.shape[0] != z.shape[0]:
                raise ValueError(f"forced has {forced.shape[0]} rows but z has {z.shape[0]}")
            forced_mask = forced_mask.bool()
        fast = self._check_fast(fast)
        if bf16 and not fast:
            raise ValueError("bfloat16 decoding is a feature of the fast path: leave fast=None or True")
        core = self.decoder.step_core
        plan = plans.plan_for(core) if fast and core is not None else None
        temperature = float(temperature)
        if uniforms is None:
            uniforms = draw_uniforms(self.config.steps, z.shape[0], temperature, generator)
        elif temperature <= 0:
            uniforms = None  # greedy takes no draws
        elif uniforms.shape != (self.config.steps, z.shape[0]) or uniforms.dtype != torch.float32:
            raise ValueError(f"uniforms must be float32 [{self.config.steps}, {z.shape[0]}], a column per row of z")
        if log_probs is not None and (log_probs.shape != (z.shape[0], self.config.steps)
                                      or log_probs.dtype != torch.float32 or log_probs.device.type != "cpu"):
            raise ValueError(f"log_probs must be a float32 CPU tensor [{z.shape[0]}, {self.config.steps}]")
        if allowed is not None:
            allowed = torch.as_tensor(allowed).cpu()
            if allowed.shape != (self.config.num_classes,) or allowed.dtype != torch.bool:
                raise ValueError(f"allowed must be a bool mask of {self.config.num_classes} classes, got "
                                 f"{allowed.dtype} {tuple(allowed.shape)}")
            if not allowed[FIRST_NOTE_ON:].any():
                raise ValueError("allowed leaves no note-on: allow at least one pitch")
            allowed = allowed.clone()
            allowed[:FIRST_NOTE_ON] = True  # holding and resting (NO_EVENT, NOTE_OFF) stay in every key
            allowed = allowed.to(self.device)
        generation = Generation(temperature, uniforms, forced, forced_mask, bf16, log_probs, allowed, features)
        with torch.inference_mode():  # tokens never need autograd; inference mode skips its bookkeeping
            return self.decoder.generate(z, generation, plan).to(self.device)

    def logits(self, x: torch.Tensor, z: torch.Tensor, chords: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits [B, T, C]: the decoder's prediction of each step given the true previous ones
        (and, for a chord model, `chords` [B, steps])."""
        x = self._check_events(x)
        z = self._check_z(z)  # differentiable: latent optimisation backpropagates into z
        features = self._chord_features(chords, x.shape[0])
        if features is None:
            return self.decoder.teacher_forced(x, z)
        return self.decoder.teacher_forced(x, z, features)

    # ------------------------------------------------------------------ training
    def forward(
        self,
        x: torch.Tensor | None,
        eps: torch.Tensor | None = None,
        sampling_prob: float = 0.0,
        sampling_uniforms: torch.Tensor | None = None,
        segments: tuple[torch.Tensor, torch.Tensor] | None = None,
        chords: torch.Tensor | None = None,
        prior_rows: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> VAEOutput | LatentOutput:
        """Training pass. `eps` [B, Z] is the reparameterisation noise and `sampling_uniforms` [B, T, 2] the
        scheduled-sampling draws; both are passed in so that data-parallel ranks can share one random
        stream and agree with a single process.

        With `segments` (segment posterior mu and sigma, [B, S, Zs]) in place of events `x`, a two-level model
        runs its latent stage: upper encoder and conductor only, no pass over events. A chord model takes the
        batch's `chords` [B, T] (long chord classes) in both encoder and decoder. `prior_rows` (bool [B], draws
        [B, Z]) replaces the chosen rows' z by prior draws for the decoder (z dropout); the KL still sees them."""
        if segments is not None:
            target_mu, target_sigma = segments
            mu, sigma = self.encoder.top.summarize(target_mu)
            z = mu + sigma * (torch.randn_like(mu) if eps is None else eps)
            return LatentOutput(self.decoder.segment_embeddings(z), target_mu, target_sigma, mu, sigma)
        features = self._chord_features(chords, x.shape[0])
        chord_args = () if features is None else (features,)
        mu, sigma = self.encoder(x, *chord_args)
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + sigma * eps
        decoder_z = z if prior_rows is None else torch.where(prior_rows[0][:, None], prior_rows[1].to(z.dtype), z)
        if sampling_prob > 0:
            if sampling_uniforms is None:
                sampling_uniforms = torch.rand(*x.shape, 2, device=x.device)
            logits = self.decoder.scheduled(x, decoder_z, sampling_prob, sampling_uniforms,
                                            self.config.scheduled_sampling, *chord_args)
        else:
            logits = self.decoder.teacher_forced(x, decoder_z, *chord_args)
        return VAEOutput(logits, mu, sigma, z)


def build_model(config: ModelConfig) -> SequenceVAE:
    return SequenceVAE(config)
