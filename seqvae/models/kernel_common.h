/* What seqvae's C step loops share (lstm_kernel.c, transformer_kernel.c): native-width vectors, the panel-packed
 * matrix products (float32 and bfloat16 panels, AVX512-BF16 dot products), token choice, and a thread team.
 *
 * Everything is static: each kernel file compiles its own copy, and native.py builds them into one library. */
#ifndef SEQVAE_KERNEL_COMMON_H
#define SEQVAE_KERNEL_COMMON_H
#define _GNU_SOURCE /* sched_getcpu, pthread_attr_setaffinity_np */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define LANES 16
/* Arithmetic runs at the target's native vector width (a 16-lane weight panel is NSUB native vectors). GCC
 * lowers a wider generic vector through the stack (broadcasts built with scalar stores, then store-forwarding
 * stalls): 16-float vectors made the AVX2 build four times slower than the numpy fallback. */
#if defined(__AVX512F__)
#define NATIVE_BYTES 64
#elif defined(__AVX__)
#define NATIVE_BYTES 32
#else
#define NATIVE_BYTES 16
#endif
#define NL (NATIVE_BYTES / 4)
#define NSUB (LANES / NL)
typedef float vn __attribute__((vector_size(NATIVE_BYTES)));
typedef uint32_t vnu __attribute__((vector_size(NATIVE_BYTES)));
typedef int32_t vni __attribute__((vector_size(NATIVE_BYTES)));

static inline vn splat(float x) { return (vn){0} + x; }
static inline vn selectn(vni mask, vn a, vn b) { return (vn)(((vni)a & mask) | ((vni)b & ~mask)); }

/* exp per lane (Cephes polynomial, ~1 ulp on the clamped range). */
static inline vn vexp(vn x) {
    x = selectn(x < splat(88.0f), x, splat(88.0f));
    x = selectn(x > splat(-87.0f), x, splat(-87.0f));
    vn y = x * 1.44269504088896341f + 0.5f;
    vni n = __builtin_convertvector(y, vni);
    vn fn = __builtin_convertvector(n, vn);
    vni too_big = fn > y;           /* truncation rounded a negative value up: step down */
    n += too_big;                    /* true lanes are -1 */
    fn = __builtin_convertvector(n, vn);
    vn r = x - fn * 0.693359375f - fn * -2.12194440e-4f;
    vn p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vni bits = (n + 127) << 23;
    return p * (vn)bits;
}

static inline vn vsigmoid(vn x) { return 1.0f / (1.0f + vexp(-x)); }
static inline vn vtanh(vn x) { return 2.0f / (1.0f + vexp(-2.0f * x)) - 1.0f; }

/* Weight panels are float32, or bfloat16 when every weight is exactly a bfloat16 value (a model saved
 * with bfloat16 storage): then half the bytes stream from memory and the widening to float32 in
 * registers is exact, so results equal the float32 path on the same weights.
 *
 * float32 panels are [N / 16][K][16]. bfloat16 panels come in interleaved pairs, [N / 32][K][32] with
 * panel 2q's column i at 2i and panel 2q+1's at 2i + 1: one 64-byte load then gives both panels as float32
 * with a shift (even) and a mask (odd), two cheap ALU operations instead of two widening shuffles. */
static inline vn loadn(const float *p) { vn v; memcpy(&v, p, sizeof v); return v; }
static inline void storen(float *p, vn v) { memcpy(p, &v, sizeof v); }

/* Sub-vector j of panel p at row k. */
static inline vn wsub_f32(const void *base, int K, int p, int k, int j) {
    return loadn((const float *)base + ((size_t)p * K + k) * LANES + j * NL);
}
/* Sub-vector j of panels p and p + 1 (p even); for bfloat16 one load gives both. */
static inline void wsub2_f32(const void *base, int K, int p, int k, int j, vn *a, vn *b) {
    *a = wsub_f32(base, K, p, k, j); *b = wsub_f32(base, K, p + 1, k, j);
}
static inline void wsub2_bf16(const void *base, int K, int p, int k, int j, vn *a, vn *b) {
    vnu v;
    memcpy(&v, (const uint16_t *)base + ((size_t)(p >> 1) * K + k) * 2 * LANES + (size_t)j * 2 * NL, sizeof v);
    *a = (vn)(v << 16); *b = (vn)(v & 0xFFFF0000u);
}
static inline vn wsub_bf16(const void *base, int K, int p, int k, int j) {
    vn even, odd;
    wsub2_bf16(base, K, p, k, j, &even, &odd);
    return p & 1 ? odd : even;
}

/* Register blocking. A panel row is one zmm register with AVX-512 (32 of them) but two ymm with AVX2 or four
 * NEON registers (16 or 32 of those): blocks sized for 32 zmm would spill to the stack everywhere else. So the block
 * shape follows the register file. */
#if defined(__AVX512F__)
#define BLOCK_R 4    /* rows per block */
#define BLOCK_NP 4   /* panels per block */
#define LONE_ROWS 2  /* batches this small take the long blocks */
#define LONE_NP 8    /* panels per long block (>= BLOCK_NP) */
#else
#define BLOCK_R 2
#define BLOCK_NP 2
#define LONE_ROWS 1
#define LONE_NP 4
#endif

/* The driver of every matrix product here: out[:, panels p0 .. p1) += x @ W over those panels, in blocks of up
 * to BLOCK_R rows x BLOCK_NP panels (a group's weights stay in L1/L2 across all rows), or, for up to
 * LONE_ROWS rows, LONE_NP panels: more independent accumulators, so a lone row is not held up by the latency
 * of its FMA chains.
 * BLOCK(R, NP, K, x, ldx, wp, p, out, ldo) does R rows against panels p .. p + NP - 1 (p even when NP > 1); it
 * sums each column over k in the same order whatever R and NP are, so results do not depend on the blocking. */
#define BLOCK_ROWS(BLOCK, R, NP, b) BLOCK(R, NP, K, x + (size_t)(b) * ldx, ldx, wp, p, out + (size_t)(b) * ldo, ldo)
#define DEFINE_DRIVER(NAME, XT, BLOCK)                                                                          \
    static void NAME(int B, int K, const XT *x, int ldx, const void *wp, int p0, int p1, float *out, int ldo) { \
        int p = p0;                                                                                             \
        if (B <= LONE_ROWS && p + LONE_NP <= p1) {                                                             \
            if (p & 1) {                                                                                        \
                for (int b = 0; b < B; b++) BLOCK_ROWS(BLOCK, 1, 1, b);                                         \
                p++;                                                                                            \
            }                                                                                                   \
            for (; p + LONE_NP <= p1; p += LONE_NP) {                                                           \
                if (B == 2) BLOCK_ROWS(BLOCK, 2, LONE_NP, 0);                                                   \
                else BLOCK_ROWS(BLOCK, 1, LONE_NP, 0);                                                          \
            }                                                                                                   \
        }                                                                                                       \
        while (p < p1) {                                                                                        \
            int wide = p + BLOCK_NP <= p1 && !(p & 1), b = 0;                                                   \
            for (; b + BLOCK_R <= B; b += BLOCK_R) {                                                            \
                if (wide) BLOCK_ROWS(BLOCK, BLOCK_R, BLOCK_NP, b);                                              \
                else BLOCK_ROWS(BLOCK, BLOCK_R, 1, b);                                                          \
            }                                                                                                   \
            for (; b < B; b++) {                                                                                \
                if (wide) BLOCK_ROWS(BLOCK, 1, BLOCK_NP, b);                                                    \
                else BLOCK_ROWS(BLOCK, 1, 1, b);                                                                \
            }                                                                                                   \
            p += wide ? BLOCK_NP : 1;                                                                           \
        }                                                                                                       \
    }

/* float32 arithmetic on float32 or bfloat16 panels. */
#define DEFINE_FLOAT_BLOCK(SUFFIX)                                                                              \
    static inline __attribute__((always_inline)) void block_##SUFFIX(                                          \
        int R, int NP, int K, const float *x, int ldx, const void *wp, int p, float *out, int ldo) {           \
        vn acc[BLOCK_R][LONE_NP][NSUB];                                                                         \
        for (int r = 0; r < R; r++)                                                                             \
            for (int q = 0; q < NP; q++)                                                                        \
                for (int j = 0; j < NSUB; j++) acc[r][q][j] = (vn){0};                                          \
        for (int k = 0; k < K; k++) {                                                                           \
            vn w[LONE_NP][NSUB];                                                                                \
            for (int j = 0; j < NSUB; j++) {                                                                    \
                if (NP == 1) w[0][j] = wsub_##SUFFIX(wp, K, p, k, j);                                           \
                else                                                                                            \
                    for (int q = 0; q < NP; q += 2) wsub2_##SUFFIX(wp, K, p + q, k, j, &w[q][j], &w[q + 1][j]); \
            }                                                                                                   \
            for (int r = 0; r < R; r++) {                                                                       \
                vn s = (vn){0} + x[(size_t)r * ldx + k];                                                        \
                for (int q = 0; q < NP; q++)                                                                    \
                    for (int j = 0; j < NSUB; j++) acc[r][q][j] += s * w[q][j];                                 \
            }                                                                                                   \
        }                                                                                                       \
        for (int r = 0; r < R; r++)                                                                             \
            for (int q = 0; q < NP; q++)                                                                        \
                for (int j = 0; j < NSUB; j++) {                                                                \
                    float *o = out + (size_t)r * ldo + (p + q) * LANES + j * NL;                                \
                    storen(o, loadn(o) + acc[r][q][j]);                                                         \
                }                                                                                               \
    }                                                                                                           \
    DEFINE_DRIVER(gemm_##SUFFIX, float, block_##SUFFIX)

DEFINE_FLOAT_BLOCK(f32)
DEFINE_FLOAT_BLOCK(bf16)

/* out[:, columns of panels p0 .. p1) += x @ W over those panels. */
static void gemm_range(int B, int K, const float *x, int ldx, const void *wp, int p0, int p1, float *out, int ldo,
                       int bf16) {
    if (bf16) gemm_bf16(B, K, x, ldx, wp, p0, p1, out, ldo);
    else gemm_f32(B, K, x, ldx, wp, p0, p1, out, ldo);
}

static void gemm_acc(int B, int K, const float *x, int ldx, const void *wp, int N, float *out, int ldo, int bf16) {
    gemm_range(B, K, x, ldx, wp, 0, N / LANES, out, ldo, bf16);
}

/* bfloat16 arithmetic (AVX512-BF16 dot products): activations rounded to bfloat16, products of pairs summed
 * into float32 accumulators at twice the float32 FMA rate. The precision mixed-precision training ran at;
 * used only when a caller asks for it (lstm_generate's `dot`). Weights are packed [N / 16][K / 2][16][2]: per
 * panel column, the two weights of a pair of rows k, k+1 side by side, matching a broadcast pair (x_k, x_k+1). */
static inline uint16_t to_bf16(float f) { /* round to nearest even, as torch converts */
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

#if defined(__AVX512BF16__)
#include <immintrin.h>
#define HAVE_DOT 1
/* K here counts row pairs; x holds bfloat16 pairs (one uint32 per pair). */
static inline __attribute__((always_inline)) void dot_block(int R, int NP, int K, const uint32_t *x, int ldx,
                                                            const void *wp, int p, float *out, int ldo) {
    const uint16_t *w16 = wp;
    __m512 acc[4][8];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NP; q++) acc[r][q] = _mm512_setzero_ps();
    for (int kp = 0; kp < K; kp++) {
        __m512bh wv[8];
        for (int q = 0; q < NP; q++)
            wv[q] = (__m512bh)_mm512_loadu_si512((const void *)(w16 + ((size_t)(p + q) * K + kp) * 2 * LANES));
        for (int r = 0; r < R; r++) {
            __m512bh xv = (__m512bh)_mm512_set1_epi32((int)x[(size_t)r * ldx + kp]);
            for (int q = 0; q < NP; q++) acc[r][q] = _mm512_dpbf16_ps(acc[r][q], xv, wv[q]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < NP; q++) {
            float *o = out + (size_t)r * ldo + (p + q) * LANES;
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), acc[r][q]));
        }
}

/* out[:, panels p0 .. p1) += x @ W, x as bfloat16 pairs [B][Kp] (row stride ldx pairs). */
DEFINE_DRIVER(gemm_dot, uint32_t, dot_block)
#else
#define HAVE_DOT 0
static void gemm_dot(int B, int Kp, const uint32_t *x, int ldx, const void *wp, int p0, int p1, float *out, int ldo) {
    (void)B; (void)Kp; (void)x; (void)ldx; (void)wp; (void)p0; (void)p1; (void)out; (void)ldo;
}
#endif

/* Greedy argmax, or the first class whose running softmax mass reaches u (the reference's inverse CDF).
 * Overwrites `logits` with the unnormalised probabilities. */
static int choose(float *logits, int C, float temperature, float u) {
    int best = 0;
    if (temperature <= 0.0f) {
        for (int i = 1; i < C; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    float inv = 1.0f / temperature, top = logits[0] * inv;
    for (int i = 1; i < C; i++)
        if (logits[i] * inv > top) top = logits[i] * inv;
    double total = 0.0;
    for (int i = 0; i < C; i++) total += logits[i] = expf(logits[i] * inv - top);
    double target = (double)u * total, running = 0.0;
    for (int i = 0; i < C; i++) {
        running += logits[i];
        if (running >= target) return i;
    }
    return C - 1;
}

static float log_sum_exp(const float *logits, int C) {
    float top = logits[0];
    for (int i = 1; i < C; i++)
        if (logits[i] > top) top = logits[i];
    double total = 0.0;
    for (int i = 0; i < C; i++) total += expf(logits[i] - top);
    return top + (float)log(total);
}

/* A sense-counting barrier for the threads of one call. Spinning keeps a step's hand-off near a cache-line
 * transfer; after a while it yields, so an oversubscribed machine degrades gently instead of burning slices. */
typedef struct {
    atomic_int arrived, phase;
    int parties;
} Barrier;

static void barrier_wait(Barrier *b) {
    if (b->parties < 2) return;
    int phase = atomic_load_explicit(&b->phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == b->parties - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&b->phase, phase + 1, memory_order_release);
        return;
    }
    for (int spins = 0; atomic_load_explicit(&b->phase, memory_order_acquire) == phase; spins++) {
        if (spins < 4000) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield();
        }
    }
}

/* [lo, hi) of n items for member `rank` of `team`, as even as possible. */
static void share(int n, int rank, int team, int *lo, int *hi) {
    *lo = (int)((int64_t)n * rank / team);
    *hi = (int)((int64_t)n * (rank + 1) / team);
}

/* How a decode chooses its tokens, the same for every kernel: uniforms [steps][ldu] drive sampling when
 * temperature > 0; where mask[b][t] is set, forced[b][t] is emitted (and fed back) instead of the model's choice;
 * elsewhere only classes with allowed[c] set (allowed NULL: all) can be chosen, the others' logits being -inf.
 * With `logp` each emitted token's log-probability under the model (temperature 1) is written [batch][steps], so
 * forced steps are scored in the pass that decodes the free ones. */
typedef struct {
    int steps, ldu;
    const float *uniforms;
    const int64_t *forced;
    const uint8_t *mask;
    const uint8_t *allowed;
    float temperature;
    int64_t *out;  /* [batch][steps] */
    float *logp;   /* [batch][steps], or NULL */
} TokenRules;

/* Chooses row b's token at step t from its C logits (which it may overwrite) and records it. */
static int64_t emit_token(const TokenRules *r, float *row, int C, int b, int t) {
    int64_t token;
    float chosen, lse = 0.0f;
    int forced = r->mask && r->mask[(size_t)b * r->steps + t];
    if (r->allowed && !forced) /* a free step chooses, and is scored, among the allowed classes only */
        for (int i = 0; i < C; i++)
            if (!r->allowed[i]) row[i] = -INFINITY;
    if (r->logp) lse = log_sum_exp(row, C);
    if (forced) {
        token = r->forced[(size_t)b * r->steps + t];
        chosen = row[token];
    } else {
        float u = r->uniforms ? r->uniforms[(size_t)t * r->ldu + b] : 0.0f;
        if (r->logp && r->temperature > 0.0f) { /* choose overwrites the logits when it samples */
            float scratch[C];
            memcpy(scratch, row, sizeof(float) * C);
            token = choose(scratch, C, r->temperature, u);
        } else {
            token = choose(row, C, r->temperature, u);
        }
        chosen = row[token];
    }
    r->out[(size_t)b * r->steps + t] = token;
    if (r->logp) r->logp[(size_t)b * r->steps + t] = chosen - lse;
    return token;
}

#define MAX_THREADS 16

/* The threads of one call. Members wait for `go` before reading `size`: the team is final only once every
 * thread has started. */
typedef struct {
    int size;
    Barrier barrier;
    atomic_int go;
} Team;

/* Runs member(members + i * member_size) for i < `wanted` (capped at MAX_THREADS), rank 0 on the calling thread.
 * Keeps the helpers off the caller's core: left to itself, the scheduler may start a new thread on the caller's
 * core while the other one idles (it does after the process slept for a millisecond), and two threads meeting at
 * barriers on one core take turns a time slice at a time: 20x slower. Fewer threads than asked (none left) make a
 * smaller team; the kernels' results do not depend on its size. */
static void run_team(Team *team, int wanted, void *(*member)(void *), void *members, size_t member_size) {
    wanted = wanted < 1 ? 1 : wanted > MAX_THREADS ? MAX_THREADS : wanted;
    team->size = team->barrier.parties = wanted;
    atomic_store(&team->barrier.arrived, 0);
    atomic_store(&team->barrier.phase, 0);
    atomic_store(&team->go, 0);
    pthread_t handles[MAX_THREADS];
    pthread_attr_t attr, *use_attr = NULL;
#if defined(__linux__)
    cpu_set_t others;
    int here = sched_getcpu();
    if (wanted > 1 && here >= 0 && sched_getaffinity(0, sizeof others, &others) == 0 && CPU_ISSET(here, &others)) {
        CPU_CLR(here, &others);
        if (CPU_COUNT(&others) > 0 && pthread_attr_init(&attr) == 0) {
            if (pthread_attr_setaffinity_np(&attr, sizeof others, &others) == 0) use_attr = &attr;
            else pthread_attr_destroy(&attr);
        }
    }
#endif
    char *base = members;
    int started = 1;
    for (; started < wanted; started++)
        if (pthread_create(&handles[started], use_attr, member, base + started * member_size) != 0) break;
    if (use_attr) pthread_attr_destroy(use_attr);
    team->size = team->barrier.parties = started;
    atomic_store_explicit(&team->go, 1, memory_order_release);
    member(base);
    for (int i = 1; i < started; i++) pthread_join(handles[i], NULL);
}

/* A helper waits here until the team is final; false when it is not part of it. */
static int join_team(Team *team, int rank) {
    while (rank && !atomic_load_explicit(&team->go, memory_order_acquire)) sched_yield();
    return rank < team->size;
}
#endif
