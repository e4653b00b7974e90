#!/usr/bin/env bash
# The GPU figures in one prepared run, under 8 minutes on a lent H100/H200 (docs/benchmarks.md, "GPU").
#
#     bash benchmarks/gpu_check.sh            # from the repository root; figures also go to $OUT/gpu_check.txt
#
# Every step has its own hard limit (timeout), and a step that fails or runs out says so and the next goes on.
# The steps: the GPU (nvidia-smi); torch importable (else `pip install -e .`); decode latency and throughput
# (2-bar sample(1), batches of 1k/8k/64k, the shipped 16bar model); the OSC morph round trip of
# `seqvae serve --device cuda`; training examples/s at batch 512 (mel_2bar_small, mel_2bar_transformer) on the
# folk build if the tree has one, else a synthetic corpus built offline; DDP over NCCL where there are 2 GPUs;
# then, in the time left, a mel_2bar_transformer run (the registry's recipe, batch 512) whose resumable checkpoint
# lands in $TRANSFORMER_RUN (default $OUT/transformer_run); a second call on the same machine resumes it there.
#
#     DEVICE=cpu QUICK=1 BUDGET_S=240 bash benchmarks/gpu_check.sh   # the script's plumbing, small, on any machine
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
BUDGET_S="${BUDGET_S:-470}"  # the whole script, the final training run included
DEVICE="${DEVICE:-cuda}"
if [ -n "${QUICK:-}" ]; then  # small sizes: checks the steps run, measures nothing worth keeping
    DECODE=(--repeats 20 --batches 64,256 --bars16-batches 8)
    OSC=(--osc-requests 50 --osc-seconds 2)
    BATCH=32
    TRAIN=(--train-steps 5 --train-warmup 2)
else
    DECODE=()
    OSC=(--osc-requests 500 --osc-seconds 5)
    BATCH=512
    TRAIN=(--train-steps 200)
fi
mkdir -p "$OUT"
REPORT="$OUT/gpu_check.txt"
: > "$REPORT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

say() { echo "$*" | tee -a "$REPORT"; }

step() {  # step LIMIT_S TITLE COMMAND...: run COMMAND under a hard limit, its output into the report
    local limit="$1" title="$2" rc
    shift 2
    say ""
    say "== $title (limit ${limit}s, at ${SECONDS}s)"
    timeout -k 15 "$limit" "$@" 2>&1 | tee -a "$REPORT"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 124 ] && [ -n "${TIMED:-}" ]; then
        say "-- $title: stopped at its ${limit}s, as planned"
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        say "!! $title: ran past ${limit}s and was stopped"
    elif [ "$rc" -ne 0 ]; then
        say "!! $title: failed (exit $rc)"
    fi
    return 0
}

say "seqvae gpu_check: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
step 20 "GPU" nvidia-smi
if ! python3 -c 'import torch, safetensors, numpy' 2>/dev/null; then
    step 240 "install (torch missing)" python3 -m pip install -q -e .
fi
step 30 "torch" python3 -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "GPU:",
    torch.cuda.is_available() and torch.cuda.get_device_name(0))'
CORPUS=datasets/built/folk32  # the folk build of the README, where this tree has one; else synthetic
if [ -f "$CORPUS/meta.json" ]; then
    say ""
    say "== corpus: the folk build in $CORPUS"
else
    CORPUS="$WORK/corpus"
    step 30 "corpus (synthetic, offline)" python3 -c "
from seqvae.data.synthetic import write_synthetic_corpus
c = write_synthetic_corpus('$CORPUS', 16384, 512, 64, steps=32, seed=0)
print('synthetic 2-bar corpus:', c.directory)"
fi

step 150 "decode: latency and throughput" python3 benchmarks/bench_gpu.py --device "$DEVICE" --parts decode \
    ${DECODE[@]+"${DECODE[@]}"}
step 100 "OSC round trip: seqvae serve --device $DEVICE" python3 benchmarks/bench_gpu.py --device "$DEVICE" \
    --parts osc "${OSC[@]}"
step 150 "training examples/s" python3 benchmarks/bench_gpu.py --device "$DEVICE" --parts train \
    --data "$CORPUS" --train-batch "$BATCH" "${TRAIN[@]}"
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "$DEVICE" = cuda ] && [ "${GPUS:-0}" -ge 2 ]; then
    step 120 "DDP over NCCL: torchrun, 2 GPUs, 50 steps" torchrun --standalone --nproc_per_node 2 \
        -m seqvae.cli.main train --config mel_2bar_small --data "$CORPUS" --out "$WORK/ddp" --device cuda \
        --batch-size 512 --steps 50 --no-progress
else
    say ""
    say "== DDP over NCCL: skipped (${GPUS:-0} GPU(s) here; torchrun needs two to use NCCL)"
fi

LEFT=$((BUDGET_S - SECONDS - 20))
RUN="${TRANSFORMER_RUN:-$OUT/transformer_run}"
RESUME=()
[ -f "$RUN/checkpoint.safetensors" ] && RESUME=(--resume)
if [ "$LEFT" -ge 30 ]; then
    # SIGTERM at the limit makes the trainer stop at the next step and write its checkpoint.
    TIMED=1 step "$LEFT" "mel_2bar_transformer training run (the time left)" python3 -m seqvae.cli.main train \
        --config mel_2bar_transformer --data "$CORPUS" --out "$RUN" --device "$DEVICE" --batch-size "$BATCH" \
        ${RESUME[@]+"${RESUME[@]}"} --checkpoint-every 500 --eval-every 1000 --log-every 100 --no-progress
    say "checkpoint: $RUN (go on: seqvae train --resume --out $RUN --data CORPUS; a synthetic CORPUS is rebuilt"
    say "  exactly by write_synthetic_corpus(CORPUS, 16384, 512, 64, steps=32, seed=0))"
    [ -f "$RUN/metrics.csv" ] && tail -n 3 "$RUN/metrics.csv" | tee -a "$REPORT"
else
    say "no time left for the transformer training run (${LEFT}s)"
fi
say ""
say "gpu_check done in ${SECONDS}s; report: $REPORT"
