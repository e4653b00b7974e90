"""The C step loops of lstm_kernel.c and transformer_kernel.c: compiled on first use, cached, and optional.

The shared library is built once per machine with the system C compiler (`cc -O3 -march=native`), both kernels
into one file, into ~/.cache/seqvae/kernels (or $SEQVAE_CACHE) and reused; the file name carries a hash of the
sources, flags and CPU so a changed kernel or another machine gets its own build. Without a compiler
(or with SEQVAE_NATIVE=0) everything still works through the numpy plan in numpy_plan.py, only slower.

Plans hold the weights packed for the kernel. Each call allocates its own workspace, so concurrent
calls on one plan are safe.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqvae.models.decoder import Generation, step_classes

MAX_LAYERS = 4
LANES = 16
MAX_CHUNKS = 8  # gate column chunks per layer: up to this many threads share one layer's work
SOURCES = tuple(Path(__file__).with_name(name) for name in ("lstm_kernel.c", "transformer_kernel.c"))
HEADER = Path(__file__).with_name("kernel_common.h")
_FLAG_SETS = (["-O3", "-march=native"], ["-O3"])
_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_tried = False


class _LSTMWeights(ctypes.Structure):
    _fields_ = [
        ("num_classes", ctypes.c_int), ("padded_classes", ctypes.c_int), ("cond_size", ctypes.c_int),
        ("layers", ctypes.c_int), ("init_size", ctypes.c_int), ("sizes", ctypes.c_int * MAX_LAYERS),
        ("chunks", ctypes.c_int * MAX_LAYERS), ("bf16", ctypes.c_int), ("table", ctypes.c_void_p),
        ("features", ctypes.c_void_p), ("w_cond", ctypes.c_void_p), ("w_init", ctypes.c_void_p),
        ("b_init", ctypes.c_void_p), ("w_ih", ctypes.c_void_p * MAX_LAYERS),
        ("w_hh", ctypes.c_void_p * MAX_LAYERS), ("bias", ctypes.c_void_p * MAX_LAYERS),
        ("w_out", ctypes.c_void_p), ("b_out", ctypes.c_void_p), ("dot_ih", ctypes.c_void_p * MAX_LAYERS),
        ("dot_hh", ctypes.c_void_p * MAX_LAYERS), ("dot_out", ctypes.c_void_p),
    ]


class _BiLSTMWeights(ctypes.Structure):
    _fields_ = [
        ("num_classes", ctypes.c_int), ("hidden", ctypes.c_int), ("bf16", ctypes.c_int), ("table", ctypes.c_void_p * 2),
        ("features", ctypes.c_void_p * 2), ("w_hh", ctypes.c_void_p * 2),
    ]


def _cache_dir() -> Path:
    return Path(os.environ.get("SEQVAE_CACHE") or Path.home() / ".cache" / "seqvae") / "kernels"


def _cpu_signature() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compile(compiler: str) -> Path | None:
    source = b"\0".join(path.read_bytes() for path in (*SOURCES, HEADER))
    directory = _cache_dir()
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(b"\0".join([source, " ".join(flags).encode(), compiler.encode(),
                                          platform.machine().encode(), _cpu_signature().encode()])).hexdigest()[:16]
        target = directory / f"seqvae_kernels-{key}.so"
        if target.is_file():
            return target
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
        os.close(fd)
        command = [compiler, *flags, "-std=gnu11", "-fPIC", "-shared", "-pthread", "-Wno-psabi", *map(str, SOURCES),
                   "-o", tmp, "-lm"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode == 0:
            os.replace(tmp, target)  # atomic: concurrent builders all end with one complete file
            return target
        os.unlink(tmp)
        errors.append(result.stderr.strip()[-500:])
    warnings.warn("seqvae: building the C decoding kernel failed; using the slower numpy path\n" + "\n".join(errors),
                  RuntimeWarning, stacklevel=3)
    return None


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, or None when it cannot be had (no compiler, SEQVAE_NATIVE=0)."""
    global _library, _tried
    if os.environ.get("SEQVAE_NATIVE", "1") == "0":
        return None
    with _lock:
        if _tried:
            return _library
        _tried = True
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if not compiler or not all(path.is_file() for path in (*SOURCES, HEADER)):
            return None
        try:
            path = _compile(compiler)
            if path is None:
                return None
            lib = ctypes.CDLL(str(path))
        except OSError as exc:  # unwritable cache, missing toolchain pieces, a broken .so
            warnings.warn(f"seqvae: cannot build or load the C decoding kernel ({exc}); using the numpy path "
                          "(set SEQVAE_CACHE to a writable folder to enable it)", RuntimeWarning, stacklevel=2)
            return None
        vp, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
        lib.lstm_generate.argtypes = [vp, i32, i32, vp, vp, f32, vp, vp, vp, vp, vp, vp, vp, vp, i64, i32, i32]
        lib.lstm_generate.restype = i32
        lib.lstm_generate_workspace.argtypes = [vp, i32]
        lib.lstm_generate_workspace.restype = i64
        lib.bilstm_final_states.argtypes = [vp, i32, i32, vp, vp, vp, vp, i64, i32]
        lib.bilstm_final_states.restype = i32
        lib.bilstm_workspace.argtypes = [vp, i32]
        lib.bilstm_workspace.restype = i64
        lib.affine.argtypes = [i32, i32, vp, vp, i32, vp, vp, i32]
        lib.affine.restype = None
        lib.transformer_generate.argtypes = [vp, i32, i32, vp, f32, vp, vp, vp, vp, vp, vp, vp, i64, i32, i32]
        lib.transformer_generate.restype = i32
        lib.transformer_generate_workspace.argtypes = [vp, i32, i32, i32]
        lib.transformer_generate_workspace.restype = i64
        lib.transformer_encode.argtypes = [vp, i32, i32, vp, vp, vp, i64, i32]
        lib.transformer_encode.restype = i32
        lib.transformer_encode_rows.argtypes = [i32]
        lib.transformer_encode_rows.restype = i32
        lib.kernel_has_bf16_dot.argtypes = []
        lib.kernel_has_bf16_dot.restype = i32
        _library = lib
        return lib


_caps = threading.local()


@contextmanager
def thread_cap(threads: int | None) -> Iterator[None]:
    """Kernel calls made by this thread inside the block use at most `threads` threads (None: torch's count).
    Two kernel teams meeting at barriers on fewer cores than they have threads take turns a time slice at a time,
    so a server running two lanes at once keeps each call to its share of the cores."""
    before = getattr(_caps, "cap", None)
    _caps.cap = threads
    try:
        yield
    finally:
        _caps.cap = before


def kernel_threads() -> int:
    """Threads for a kernel call from this thread: torch's count, under the thread's `thread_cap`."""
    threads = max(1, torch.get_num_threads())
    cap = getattr(_caps, "cap", None)
    return threads if cap is None else max(1, min(threads, cap))


def as_float32(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as a float32 numpy array on the CPU (a view where it can be)."""
    return t.detach().to("cpu", torch.float32).numpy()


def _bf16_bits(array: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounded as torch rounds."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def pack_panels(weight_in_out: np.ndarray, bf16: bool = False) -> np.ndarray:
    """[K, N] -> [N/16, K, 16] column panels (N zero-padded to a multiple of 16), the kernel's layout. With `bf16`
    (only for weights that are exactly bfloat16 values) the bit patterns (uint16) of panel pairs are interleaved,
    [N/32, K, 32] with panel 2q's column i at 2i and panel 2q+1's at 2i+1 (a zero panel pads an odd count)."""
    k, n = weight_in_out.shape
    padded = -(-n // LANES) * LANES
    if bf16:
        padded = -(-n // (2 * LANES)) * 2 * LANES
    full = np.zeros((k, padded), np.float32)
    full[:, :n] = weight_in_out
    panels = np.ascontiguousarray(full.reshape(k, padded // LANES, LANES).transpose(1, 0, 2))
    if not bf16:
        return panels
    # [pair, K, column, which panel of the pair]
    pairs = _bf16_bits(panels).reshape(padded // (2 * LANES), 2, k, LANES).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(pairs).reshape(padded // (2 * LANES), k, 2 * LANES)


def pack_pairs(weight_in_out: np.ndarray) -> np.ndarray:
    """[K, N] -> bfloat16 bits [N/16, K/2, 16, 2] for the kernel's dot-product path: per column, the weights of
    rows k and k+1 side by side (K and N zero-padded to a multiple of 2 and 16)."""
    k, n = weight_in_out.shape
    full = np.zeros((k + k % 2, -(-n // LANES) * LANES), np.float32)
    full[:k, :n] = weight_in_out
    pairs = _bf16_bits(full).reshape(full.shape[0] // 2, 2, full.shape[1] // LANES, LANES).transpose(2, 0, 3, 1)
    return np.ascontiguousarray(pairs)


def bfloat16_exact(module: torch.nn.Module) -> bool:
    """True when every weight matrix is exactly representable in bfloat16 (e.g. saved with bfloat16 storage):
    the kernel may then stream half the bytes without changing a single result."""
    for name, p in module.named_parameters():
        if name.endswith("bias") or p.dim() < 2:
            continue
        if not torch.equal(p.detach(), p.detach().to(torch.bfloat16).to(p.dtype)):
            return False
    return True


def gate_chunks(hidden: int) -> int:
    """How many thread-sized chunks a layer's gate columns are packed in: each chunk's unit count must be a
    multiple of 16 (whole panels), and one chunk when the layer is too small to split."""
    chunks = MAX_CHUNKS
    while chunks > 1 and hidden % (LANES * chunks):
        chunks //= 2
    return chunks


def chunk_order(hidden: int, chunks: int) -> np.ndarray:
    """Column permutation from PyTorch's [i, f, g, o] x H gate order to the kernel's chunked order: per chunk of
    U = H / chunks units, [i, f, g, o] x U."""
    units = hidden // chunks
    return np.concatenate([q * hidden + k * units + np.arange(units) for k in range(chunks) for q in range(4)])


def pointer(array: np.ndarray | None) -> int | None:
    """The address the kernel reads an array at (None for NULL)."""
    return None if array is None else array.ctypes.data


@dataclass
class TokenArrays:
    """A Generation's token rules for window steps offset..offset + steps, as the arrays the kernels' TokenRules
    read (None for NULL), and the tokens and log-probabilities they write."""

    uniforms: np.ndarray | None
    forced: np.ndarray | None
    mask: np.ndarray | None
    allowed: np.ndarray | None
    out: np.ndarray
    log_probs: np.ndarray | None

    @classmethod
    def of(cls, generation: Generation, batch: int, steps: int, offset: int = 0) -> TokenArrays:
        window = slice(offset, offset + steps)
        uniforms = forced = mask = allowed = None
        if generation.uniforms is not None and generation.temperature > 0:
            uniforms = np.ascontiguousarray(generation.uniforms.numpy()[window], dtype=np.float32)
        if generation.forced is not None:
            forced = np.ascontiguousarray(generation.forced.detach().cpu().numpy()[:, window], dtype=np.int64)
            mask = np.ascontiguousarray(generation.mask.detach().cpu().numpy()[:, window], dtype=np.uint8)
        if generation.allowed is not None:
            allowed = np.ascontiguousarray(generation.allowed.cpu().numpy(), np.uint8)
        log_probs = None if generation.log_probs is None else np.empty((batch, steps), np.float32)
        return cls(uniforms, forced, mask, allowed, np.empty((batch, steps), np.int64), log_probs)

    def pointers(self) -> tuple[int | None, ...]:
        """uniforms, forced, mask, allowed, out, logp: the kernels' argument order."""
        return tuple(map(pointer, (self.uniforms, self.forced, self.mask, self.allowed, self.out, self.log_probs)))

    def finish(self, generation: Generation, offset: int = 0) -> torch.Tensor:
        """The tokens [B, steps]; the log-probabilities go into the generation's window."""
        if self.log_probs is not None:
            generation.log_probs[:, offset:offset + self.out.shape[1]] = torch.from_numpy(self.log_probs)
        return torch.from_numpy(self.out)


class PackedAffine:
    """x @ W + b through the kernel's `affine`, for a [K, N] weight packed once (float32, or bfloat16 panels)."""

    def __init__(self, lib: ctypes.CDLL, weight_in_out: np.ndarray, bias: np.ndarray | None = None,
                 bf16: bool = False) -> None:
        self.lib, self.bf16 = lib, bf16
        self.inputs, self.outputs = weight_in_out.shape
        self.panels = pack_panels(weight_in_out, bf16)
        self.bias = np.zeros(-(-self.outputs // LANES) * LANES, np.float32)
        if bias is not None:
            self.bias[: self.outputs] = bias

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """[B, N] for x [B, K]."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty((len(x), len(self.bias)), np.float32)
        self.lib.affine(len(x), self.inputs, pointer(x), pointer(self.panels), len(self.bias), pointer(self.bias),
                        pointer(out), int(self.bf16))
        return out[:, : self.outputs]


class NativeLSTMPlan:
    """A ConditionedLSTM packed for lstm_generate: a `decoder.StepPlan`. Step feature columns (a chord one-hot)
    become a float32 row table, added per step like the previous token's row, so bfloat16 panels still apply."""

    def __init__(self, core, lib: ctypes.CDLL) -> None:
        self.lib = lib
        c, d, sizes = core.num_classes, core.cond_size, core.sizes
        self.feature_size = core.feature_size
        bf16 = bfloat16_exact(core)
        chunks = [gate_chunks(size) for size in sizes]
        order = [chunk_order(size, n) for size, n in zip(sizes, chunks, strict=True)]
        first = core.layers[0]
        w_ih = as_float32(first.weight_ih_l0)[order[0]]
        bias = (as_float32(first.bias_ih_l0) + as_float32(first.bias_hh_l0))[order[0]]
        table = np.zeros((c + 1, 4 * sizes[0]), np.float32)
        table[:c] = w_ih[:, :c].T
        self.keep = {"table": np.ascontiguousarray(table + bias)}
        self.keep["w_cond"] = pack_panels(w_ih[:, c:c + d].T, bf16)
        self.keep["features"] = np.ascontiguousarray(w_ih[:, c + d:].T)  # [F, 4 H0]
        init_w = as_float32(core.init_state.weight).T
        init_size = -(-init_w.shape[1] // LANES) * LANES
        self.keep["w_init"] = pack_panels(init_w, bf16)
        b_init = np.zeros(init_size, np.float32)
        b_init[: init_w.shape[1]] = as_float32(core.init_state.bias)
        self.keep["b_init"] = b_init
        padded = -(-c // LANES) * LANES
        self.keep["w_out"] = pack_panels(as_float32(core.output.weight).T, bf16)
        b_out = np.full(padded, -1e30, np.float32)
        b_out[:c] = as_float32(core.output.bias)
        self.keep["b_out"] = b_out
        w = _LSTMWeights()
        w.num_classes, w.padded_classes, w.cond_size = c, padded, d
        w.layers, w.init_size, w.bf16 = len(sizes), init_size, int(bf16)
        self._matrices = {"out": as_float32(core.output.weight).T}  # [K, N] per-step matrices, for the dot path
        for i, size in enumerate(sizes):
            w.sizes[i], w.chunks[i] = size, chunks[i]
            layer = core.layers[i]
            self._matrices[f"hh{i}"] = as_float32(layer.weight_hh_l0)[order[i]].T
            self.keep[f"w_hh{i}"] = pack_panels(self._matrices[f"hh{i}"], bf16)
            w.w_hh[i] = pointer(self.keep[f"w_hh{i}"])
            if i:
                self._matrices[f"ih{i}"] = as_float32(layer.weight_ih_l0)[order[i]].T
                self.keep[f"w_ih{i}"] = pack_panels(self._matrices[f"ih{i}"], bf16)
                self.keep[f"bias{i}"] = (as_float32(layer.bias_ih_l0) + as_float32(layer.bias_hh_l0))[order[i]]
                w.w_ih[i], w.bias[i] = pointer(self.keep[f"w_ih{i}"]), pointer(self.keep[f"bias{i}"])
        for name in ("table", "w_cond", "w_init", "b_init", "w_out", "b_out"):
            setattr(w, name, pointer(self.keep[name]))
        if self.feature_size:
            w.features = pointer(self.keep["features"])
        self.weights = w
        self.num_classes = c

    @staticmethod
    def supports(core) -> bool:
        return len(core.sizes) <= MAX_LAYERS and all(size % 4 == 0 for size in core.sizes)

    @property
    def has_bf16_dot(self) -> bool:
        """Whether this CPU and build can run the per-step matrices in bfloat16 arithmetic (AVX512-BF16)."""
        return bool(self.lib.kernel_has_bf16_dot())

    def _pack_dot(self) -> None:
        """Pack the per-step matrices for the dot-product path, once, on first use."""
        if self.weights.dot_out:
            return
        for name, matrix in self._matrices.items():
            self.keep[f"dot_{name}"] = pack_pairs(matrix)
        for i in range(self.weights.layers):
            self.weights.dot_hh[i] = pointer(self.keep[f"dot_hh{i}"])
            if i:
                self.weights.dot_ih[i] = pointer(self.keep[f"dot_ih{i}"])
        self.weights.dot_out = pointer(self.keep["dot_out"])

    def generate(self, cond: torch.Tensor, generation: Generation, *, steps: int, prev: torch.Tensor | None = None,
                 offset: int = 0) -> torch.Tensor:
        """As decoder.StepPlan; `generation.bfloat16` runs the per-step matrices in bfloat16 arithmetic (see
        has_bf16_dot)."""
        bf16, temperature = generation.bfloat16, generation.temperature
        if bf16:
            if not self.has_bf16_dot:
                raise ValueError("bfloat16 arithmetic needs a CPU with AVX512-BF16; decode in float32 instead")
            if not self.weights.dot_out:
                with _lock:
                    self._pack_dot()
        cond_np = np.ascontiguousarray(as_float32(cond))
        batch = cond_np.shape[0]
        classes = generation.feature_classes(self.feature_size, batch, offset, steps)
        prev_np = (np.full(batch, self.num_classes, np.int64) if prev is None
                   else np.ascontiguousarray(prev.detach().cpu().numpy(), dtype=np.int64))
        tokens = TokenArrays.of(generation, batch, steps, offset)
        ref = ctypes.byref(self.weights)
        size = self.lib.lstm_generate_workspace(ref, batch)
        work = np.empty(size, np.float32)
        threads = kernel_threads()  # the kernel caps it at what the layers' chunks allow
        uniforms, forced, mask, allowed, out, logp = tokens.pointers()
        code = self.lib.lstm_generate(ref, batch, steps, pointer(cond_np), pointer(prev_np), float(temperature),
                                      uniforms, forced, mask, allowed, pointer(classes), out, logp, pointer(work),
                                      size, threads, int(bf16))
        if code:
            raise RuntimeError(f"C decoding kernel failed (code {code})")
        return tokens.finish(generation, offset)


class NativeEncoderPlan:
    """A one-layer BidirectionalLSTMEncoder packed for bilstm_final_states, heads included; step feature columns
    (a chord one-hot after the events') become a row table per direction."""

    def __init__(self, encoder, lib: ctypes.CDLL) -> None:
        self.lib = lib
        layer = encoder.layers[0]
        hidden = layer.hidden_size
        self.bf16 = bfloat16_exact(encoder)
        self.keep: dict[str, np.ndarray] = {}
        w = _BiLSTMWeights()
        c = encoder.num_classes
        self.feature_size = encoder.feature_size
        w.num_classes, w.hidden, w.bf16 = c, hidden, int(self.bf16)
        for d, suffix in enumerate(("", "_reverse")):
            w_ih = as_float32(getattr(layer, f"weight_ih_l0{suffix}"))
            bias = as_float32(getattr(layer, f"bias_ih_l0{suffix}")) + as_float32(getattr(layer, f"bias_hh_l0{suffix}"))
            self.keep[f"table{d}"] = np.ascontiguousarray(w_ih[:, :c].T + bias)
            if self.feature_size:
                self.keep[f"features{d}"] = np.ascontiguousarray(w_ih[:, c:].T)
                w.features[d] = pointer(self.keep[f"features{d}"])
            self.keep[f"w_hh{d}"] = pack_panels(as_float32(getattr(layer, f"weight_hh_l0{suffix}")).T, self.bf16)
            w.table[d], w.w_hh[d] = pointer(self.keep[f"table{d}"]), pointer(self.keep[f"w_hh{d}"])
        heads = np.concatenate([as_float32(encoder.mu.weight), as_float32(encoder.sigma.weight)], axis=0).T  # [2H, 2Z]
        self.z_size = encoder.mu.out_features
        head_bias = np.concatenate([as_float32(encoder.mu.bias), as_float32(encoder.sigma.bias)])
        self.heads = PackedAffine(lib, heads, head_bias, self.bf16)
        self.weights = w
        self.hidden = hidden

    @staticmethod
    def supports(encoder) -> bool:
        return len(encoder.layers) == 1 and encoder.layers[0].hidden_size % 4 == 0

    def encode(self, x: torch.Tensor, features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) for events [B, T] and, for an encoder with step features, their one-hot [B, T, F]."""
        x_np = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.int64)
        batch, steps = x_np.shape
        classes = step_classes(features, self.feature_size, batch, 0, steps)
        ref = ctypes.byref(self.weights)
        size = self.lib.bilstm_workspace(ref, batch)
        work = np.empty(size, np.float32)
        states = np.empty((batch, 2 * self.hidden), np.float32)
        threads = min(2, kernel_threads())
        if self.lib.bilstm_final_states(ref, batch, steps, pointer(x_np), pointer(classes), pointer(states),
                                        pointer(work), size,
                                        threads):
            raise RuntimeError("C encoding kernel failed")
        heads = self.heads(states)
        mu = torch.from_numpy(heads[:, : self.z_size].copy())
        sigma = torch.nn.functional.softplus(torch.from_numpy(heads[:, self.z_size: 2 * self.z_size].copy())) + 1e-5
        return mu, sigma
