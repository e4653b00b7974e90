/* Free-running LSTM generation and bidirectional LSTM encoding for seqvae, in one C loop per call.
 *
 * Why: a 2x256 LSTM decoding 32 steps is ~64 small matrix-vector products; in Python every one of
 * them pays interpreter and dispatch overhead larger than the arithmetic. Here the whole loop runs
 * in C: weights are packed in 16-float column panels so a register-blocked micro-kernel streams
 * each weight once per step for up to four batch rows, the previous token's one-hot matmul is a row
 * copy from a table (biases folded in), so is a step feature's (a chord class: one weight row added),
 * and the conditioning's gate contribution is computed once.
 *
 * Portable C11 with GCC/Clang vector extensions: compiled with -march=native it uses AVX-512 (or
 * AVX2, NEON) without intrinsics. Built and cached by seqvae/models/native.py.
 */
#define _GNU_SOURCE /* sched_getcpu, pthread_attr_setaffinity_np */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define MAX_LAYERS 4
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

/* 1 when this build has the bfloat16 dot-product path (the CPU has AVX512-BF16). */
int kernel_has_bf16_dot(void) { return HAVE_DOT; }

/* Gates (i, f, g, o pre-activations, [4 H]) -> new c and h, in place. */
static void cell_update(int H, const float *gates, float *c, float *h) {
    int j = 0;
    for (; j + NL <= H; j += NL) {
        vn i = vsigmoid(loadn(gates + j)), f = vsigmoid(loadn(gates + H + j));
        vn g = vtanh(loadn(gates + 2 * H + j)), o = vsigmoid(loadn(gates + 3 * H + j));
        vn cn = f * loadn(c + j) + i * g;
        storen(c + j, cn);
        storen(h + j, o * vtanh(cn));
    }
    for (; j < H; j++) {
        float i = 1.0f / (1.0f + expf(-gates[j])), f = 1.0f / (1.0f + expf(-gates[H + j]));
        float g = tanhf(gates[2 * H + j]), o = 1.0f / (1.0f + expf(-gates[3 * H + j]));
        c[j] = f * c[j] + i * g;
        h[j] = o * tanhf(c[j]);
    }
}

/* Gate columns of every layer are packed in `chunks[l]` contiguous chunks of U = H / chunks units, each laid out
 * [i, f, g, o] x U (U a multiple of 16), so that a thread owning whole chunks computes its gates, updates its
 * units' cells and writes its slice of h without touching another thread's columns. With one chunk this is
 * PyTorch's own [i, f, g, o] x H order. */
typedef struct {
    int num_classes, padded_classes, cond_size, layers, init_size;
    int sizes[MAX_LAYERS];
    int chunks[MAX_LAYERS];        /* gate column chunks per layer (see above) */
    int bf16;                      /* panels hold bfloat16 (else float32) */
    const float *table;            /* [(C + 1), 4 H0]: layer-0 one-hot weight rows + both biases; row C = START */
    const float *features;         /* [F, 4 H0]: layer-0 weight rows of the step feature classes, or NULL */
    const void *w_cond;            /* panels [4 H0 / 16][cond][16]: layer-0 weights of the conditioning input */
    const void *w_init;            /* panels [init / 16][cond][16]: initial state dense (init = 2 sum H, padded) */
    const float *b_init;           /* [init] */
    const void *w_ih[MAX_LAYERS];  /* panels [4 H / 16][H below][16], layers >= 1 */
    const void *w_hh[MAX_LAYERS];  /* panels [4 H / 16][H][16] */
    const float *bias[MAX_LAYERS]; /* [4 H], layers >= 1 (layer 0's live in the table) */
    const void *w_out;             /* panels [Cp / 16][H top][16] */
    const float *b_out;            /* [Cp], padding columns hold -1e30 so they never win */
    const uint16_t *dot_ih[MAX_LAYERS], *dot_hh[MAX_LAYERS], *dot_out; /* the same for gemm_dot, when packed */
} LSTMWeights;

static int64_t workspace_per_row(const LSTMWeights *w) {
    int64_t total = 4 * w->sizes[0] + w->init_size + w->padded_classes;
    for (int l = 0; l < w->layers; l++) total += 8 * w->sizes[l]; /* h twice, c, 4 gates, h twice as bf16 */
    return total;
}

int64_t lstm_generate_workspace(const LSTMWeights *w, int batch) { return (int64_t)batch * workspace_per_row(w); }

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

typedef struct {
    const LSTMWeights *w;
    int batch, steps, ldu, team;
    const float *cond, *uniforms;
    const int64_t *prev0, *forced;
    const uint8_t *mask;
    const uint8_t *allowed; /* [C]: classes a free step may choose, or NULL for all */
    const int64_t *classes; /* [batch][steps]: each step's feature class (a chord), or NULL without features */
    float temperature;
    int dot; /* bfloat16 dot products for the per-step matrices */
    int64_t *out;
    float *logp; /* [batch][steps]: each emitted token's log-probability (temperature 1), or NULL */
    float *work;
    Barrier *barrier;
    atomic_int go; /* members wait for it: the team size is final only once every thread has started */
} GenerateJob;

typedef struct {
    GenerateJob *job;
    int rank;
} Member;

/* [lo, hi) of n items for member `rank` of `team`, as even as possible. */
static void share(int n, int rank, int team, int *lo, int *hi) {
    *lo = (int)((int64_t)n * rank / team);
    *hi = (int)((int64_t)n * (rank + 1) / team);
}

/* One member's part of a generation: its chunks of every layer's gate columns, its share of the initial-state
 * columns, and its rows of the output layer. Three barriers per step hand h and the chosen tokens over. */
static void *generate_member(void *arg) {
    const Member *me = arg;
    GenerateJob *job = me->job;
    while (me->rank && !atomic_load_explicit(&job->go, memory_order_acquire)) sched_yield();
    if (me->rank >= job->team) return NULL;
    const LSTMWeights *w = job->w;
    const int B = job->batch, L = w->layers, C = w->num_classes, Cp = w->padded_classes, D = w->cond_size;
    const int G0 = 4 * w->sizes[0], steps = job->steps, rank = me->rank, team = job->team;
    float *cond_gates = job->work;
    float *init = cond_gates + (size_t)B * G0;
    float *logits = init + (size_t)B * w->init_size;
    float *h[MAX_LAYERS][2], *c[MAX_LAYERS], *g[MAX_LAYERS];
    uint16_t *hb[MAX_LAYERS][2]; /* h rounded to bfloat16, for the dot-product path */
    float *cursor = logits + (size_t)B * Cp;
    int c_lo[MAX_LAYERS], c_hi[MAX_LAYERS];
    const int dot = job->dot;
    for (int l = 0; l < L; l++) {
        int H = w->sizes[l];
        h[l][0] = cursor; h[l][1] = h[l][0] + (size_t)B * H; c[l] = h[l][1] + (size_t)B * H;
        g[l] = c[l] + (size_t)B * H;
        hb[l][0] = (uint16_t *)(g[l] + (size_t)B * 4 * H); hb[l][1] = hb[l][0] + (size_t)B * H;
        cursor = g[l] + (size_t)B * 5 * H;
        share(w->chunks[l], rank, team, &c_lo[l], &c_hi[l]);
    }
    /* start: this member's conditioning gate columns, and its share of the initial-state columns */
    {
        int U = w->sizes[0] / w->chunks[0], p0 = c_lo[0] * 4 * U / LANES, p1 = c_hi[0] * 4 * U / LANES;
        for (int b = 0; b < B; b++) memset(cond_gates + (size_t)b * G0 + p0 * LANES, 0, sizeof(float) * (p1 - p0) * LANES);
        gemm_range(B, D, job->cond, D, w->w_cond, p0, p1, cond_gates, G0, w->bf16);
        int ip0, ip1;
        share(w->init_size / LANES, rank, team, &ip0, &ip1);
        for (int b = 0; b < B; b++)
            memcpy(init + (size_t)b * w->init_size + ip0 * LANES, w->b_init + ip0 * LANES, sizeof(float) * (ip1 - ip0) * LANES);
        gemm_range(B, D, job->cond, D, w->w_init, ip0, ip1, init, w->init_size, w->bf16);
        for (int b = 0; b < B; b++) {
            const float *row = init + (size_t)b * w->init_size;
            for (int col = ip0 * LANES, offset = 0, l = 0; l < L && col < ip1 * LANES; l++) {
                int H = w->sizes[l];
                for (; col < ip1 * LANES && col < offset + 2 * H; col++) {
                    int j = col - offset;
                    float value = tanhf(row[col]);
                    if (j < H) {
                        h[l][0][(size_t)b * H + j] = value;
                        hb[l][0][(size_t)b * H + j] = to_bf16(value);
                    } else {
                        c[l][(size_t)b * H + j - H] = value;
                    }
                }
                offset += 2 * H;
            }
        }
    }
    int r_lo, r_hi;
    share(B, rank, team, &r_lo, &r_hi);
    barrier_wait(job->barrier);
    for (int t = 0; t < steps; t++) {
        int now = t & 1, next = now ^ 1; /* h[l][now] holds the previous step's h, h[l][next] gets the new */
        for (int l = 0; l < L; l++) {
            int H = w->sizes[l], G = 4 * H, U = H / w->chunks[l];
            int p0 = c_lo[l] * 4 * U / LANES, p1 = c_hi[l] * 4 * U / LANES, col0 = p0 * LANES, width = (p1 - p0) * LANES;
            for (int b = 0; b < B; b++) {
                float *gate = g[l] + (size_t)b * G + col0;
                if (l == 0) {
                    int64_t prev = t == 0 ? job->prev0[b] : job->out[(size_t)b * steps + t - 1];
                    const float *row = w->table + (size_t)prev * G0 + col0, *cg = cond_gates + (size_t)b * G0 + col0;
                    if (job->classes) {
                        const float *fr = w->features + (size_t)job->classes[(size_t)b * steps + t] * G0 + col0;
                        for (int j = 0; j < width; j += NL)
                            storen(gate + j, loadn(row + j) + loadn(cg + j) + loadn(fr + j));
                    } else {
                        for (int j = 0; j < width; j += NL) storen(gate + j, loadn(row + j) + loadn(cg + j));
                    }
                } else {
                    memcpy(gate, w->bias[l] + col0, sizeof(float) * width);
                }
            }
            int below = l > 0 ? w->sizes[l - 1] : 0;
            if (dot) {
                if (l > 0)
                    gemm_dot(B, below / 2, (const uint32_t *)hb[l - 1][next], below / 2, w->dot_ih[l], p0, p1, g[l], G);
                gemm_dot(B, H / 2, (const uint32_t *)hb[l][now], H / 2, w->dot_hh[l], p0, p1, g[l], G);
            } else {
                if (l > 0) gemm_range(B, below, h[l - 1][next], below, w->w_ih[l], p0, p1, g[l], G, w->bf16);
                gemm_range(B, H, h[l][now], H, w->w_hh[l], p0, p1, g[l], G, w->bf16);
            }
            for (int b = 0; b < B; b++) {
                float *hrow = h[l][next] + (size_t)b * H;
                for (int k = c_lo[l]; k < c_hi[l]; k++) {
                    cell_update(U, g[l] + (size_t)b * G + 4 * k * U, c[l] + (size_t)b * H + k * U, hrow + k * U);
                    if (dot)
                        for (int j = k * U; j < (k + 1) * U; j++) hb[l][next][(size_t)b * H + j] = to_bf16(hrow[j]);
                }
            }
            barrier_wait(job->barrier);
        }
        int top = w->sizes[L - 1];
        if (r_hi > r_lo) {
            for (int b = r_lo; b < r_hi; b++) memcpy(logits + (size_t)b * Cp, w->b_out, sizeof(float) * Cp);
            if (dot)
                gemm_dot(r_hi - r_lo, top / 2, (const uint32_t *)(hb[L - 1][next] + (size_t)r_lo * top), top / 2,
                         w->dot_out, 0, Cp / LANES, logits + (size_t)r_lo * Cp, Cp);
            else
                gemm_range(r_hi - r_lo, top, h[L - 1][next] + (size_t)r_lo * top, top, w->w_out, 0, Cp / LANES,
                           logits + (size_t)r_lo * Cp, Cp, w->bf16);
        }
        for (int b = r_lo; b < r_hi; b++) {
            int64_t token;
            float *row = logits + (size_t)b * Cp, chosen = 0.0f, lse = 0.0f;
            int forced = job->mask && job->mask[(size_t)b * steps + t];
            if (job->allowed && !forced) /* a free step chooses, and is scored, among the allowed classes only */
                for (int i = 0; i < C; i++)
                    if (!job->allowed[i]) row[i] = -INFINITY;
            if (job->logp) lse = log_sum_exp(row, C);
            if (forced) {
                token = job->forced[(size_t)b * steps + t];
                chosen = row[token];
            } else {
                float u = job->uniforms ? job->uniforms[(size_t)t * job->ldu + b] : 0.0f;
                if (job->logp && job->temperature > 0.0f) { /* choose overwrites the logits when it samples */
                    float scratch[C];
                    memcpy(scratch, row, sizeof(float) * C);
                    token = choose(scratch, C, job->temperature, u);
                } else {
                    token = choose(row, C, job->temperature, u);
                }
                chosen = row[token];
            }
            job->out[(size_t)b * steps + t] = token;
            if (job->logp) job->logp[(size_t)b * steps + t] = chosen - lse;
        }
        barrier_wait(job->barrier);
    }
    return NULL;
}

#define MAX_THREADS 16

/* Generate `steps` tokens for each of `batch` conditioning rows. The initial state is
 * tanh(dense(cond)) laid out [h0, c0, h1, c1, ...]; prev0 is the token before the first step
 * (C = START). uniforms [steps][batch] drive sampling when temperature > 0; where mask[b][t] is
 * set, forced[b][t] is emitted and fed back instead of the model's choice; elsewhere only classes with
 * allowed[c] set (allowed NULL: all) can be chosen, the others' logits being -inf. With `logp` (or NULL) each
 * emitted token's log-probability under the model (temperature 1) is written [batch][steps], which scores
 * forced steps in the same pass that decodes the free ones. `classes` [batch][steps] (or NULL) is each step's
 * feature class, whose row of w->features joins the first layer's gates. With threads > 1 the
 * gate columns are split between threads (each thread's share of the weights stays in its core's
 * cache), so even one row decodes in parallel; results do not depend on the thread count. With `dot`
 * the per-step matrices run in bfloat16 arithmetic (gemm_dot); returns -3 where that is unavailable. */
int lstm_generate(const LSTMWeights *w, int batch, int steps, const float *cond, const int64_t *prev0,
                  float temperature, const float *uniforms, const int64_t *forced, const uint8_t *mask,
                  const uint8_t *allowed, const int64_t *classes, int64_t *out, float *logp, float *work,
                  int64_t work_size, int threads, int dot) {
    if (work_size < lstm_generate_workspace(w, batch) || w->layers < 1 || w->layers > MAX_LAYERS) return -1;
    if (classes && !w->features) return -4;
    if (dot && (!HAVE_DOT || !w->dot_out)) return -3;
    int team = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    for (int l = 0; l < w->layers; l++) {
        if (w->chunks[l] < 1 || w->sizes[l] % w->chunks[l] || (w->chunks[l] > 1 && (w->sizes[l] / w->chunks[l]) % LANES))
            return -2;
        if (team > w->chunks[l]) team = w->chunks[l];
    }
    Barrier barrier = {0, 0, team};
    GenerateJob job = {w, batch, steps, batch, team, cond, uniforms, prev0, forced, mask, allowed, classes,
                       temperature, dot, out, logp, work, &barrier, 0};
    Member members[MAX_THREADS];
    pthread_t handles[MAX_THREADS];
    for (int i = 0; i < team; i++) members[i] = (Member){&job, i};
    /* Keep the helpers off the caller's core. Left to itself, the scheduler may start a new thread on the
     * caller's core while the other one idles (it does after the process slept for a millisecond), and two
     * threads meeting at barriers on one core take turns a time slice at a time: 20x slower. */
    pthread_attr_t attr, *use_attr = NULL;
#if defined(__linux__)
    cpu_set_t others;
    int here = sched_getcpu();
    if (team > 1 && here >= 0 && sched_getaffinity(0, sizeof others, &others) == 0 && CPU_ISSET(here, &others)) {
        CPU_CLR(here, &others);
        if (CPU_COUNT(&others) > 0 && pthread_attr_init(&attr) == 0) {
            if (pthread_attr_setaffinity_np(&attr, sizeof others, &others) == 0) use_attr = &attr;
            else pthread_attr_destroy(&attr);
        }
    }
#endif
    int started = 1;
    for (; started < team; started++)
        if (pthread_create(&handles[started], use_attr, generate_member, &members[started]) != 0) break;
    if (use_attr) pthread_attr_destroy(use_attr);
    job.team = barrier.parties = started; /* fewer threads than asked (none left): a smaller team, same result */
    atomic_store_explicit(&job.go, 1, memory_order_release);
    generate_member(&members[0]);
    for (int i = 1; i < started; i++) pthread_join(handles[i], NULL);
    return 0;
}

typedef struct {
    int num_classes, hidden, bf16;
    const float *table[2]; /* [C, 4 H]: input one-hot weight rows + both biases; forward, backward */
    const float *features[2]; /* [F, 4 H]: weight rows of the step feature classes (a chord), or NULL */
    const void *w_hh[2];   /* panels [4 H / 16][H][16], bfloat16 when bf16 is set */
} BiLSTMWeights;

typedef struct {
    const BiLSTMWeights *w;
    int direction, batch, steps;
    const int64_t *x, *classes; /* [batch][steps] events, and feature classes or NULL */
    float *out, *work;
} DirectionJob;

static void *run_direction(void *arg) {
    DirectionJob *job = arg;
    const BiLSTMWeights *w = job->w;
    int H = w->hidden, G = 4 * H, B = job->batch, T = job->steps, d = job->direction;
    float *h = job->work, *c = h + (size_t)B * H, *g = c + (size_t)B * H;
    memset(h, 0, sizeof(float) * 2 * B * H);
    for (int s = 0; s < T; s++) {
        int t = d == 0 ? s : T - 1 - s;
        for (int b = 0; b < B; b++) {
            float *gate = g + (size_t)b * G;
            memcpy(gate, w->table[d] + (size_t)job->x[(size_t)b * T + t] * G, sizeof(float) * G);
            if (job->classes) {
                const float *fr = w->features[d] + (size_t)job->classes[(size_t)b * T + t] * G;
                for (int j = 0; j < G; j++) gate[j] += fr[j];
            }
        }
        gemm_acc(B, H, h, H, w->w_hh[d], G, g, G, w->bf16);
        for (int b = 0; b < B; b++) cell_update(H, g + (size_t)b * G, c + (size_t)b * H, h + (size_t)b * H);
    }
    for (int b = 0; b < B; b++) memcpy(job->out + (size_t)b * 2 * H + d * H, h + (size_t)b * H, sizeof(float) * H);
    return NULL;
}

/* out[b, :] = bias + x[b, :] @ W for panel-packed W [N / 16][K][16] (N a multiple of 16), float32 or bfloat16. */
void affine(int batch, int K, const float *x, const void *wp, int N, const float *bias, float *out, int bf16) {
    for (int b = 0; b < batch; b++) memcpy(out + (size_t)b * N, bias, sizeof(float) * N);
    gemm_acc(batch, K, x, K, wp, N, out, N, bf16);
}

int64_t bilstm_workspace(const BiLSTMWeights *w, int batch) { return (int64_t)2 * batch * 6 * w->hidden; }

/* Final hidden states of both directions, [batch][2 H] (forward then backward); `classes` [batch][steps] (or
 * NULL) adds each step's feature row to the input. With threads > 1 the backward direction runs on a second
 * thread. */
int bilstm_final_states(const BiLSTMWeights *w, int batch, int steps, const int64_t *x, const int64_t *classes,
                        float *out, float *work, int64_t work_size, int threads) {
    if (work_size < bilstm_workspace(w, batch)) return -1;
    if (classes && (!w->features[0] || !w->features[1])) return -4;
    DirectionJob jobs[2];
    for (int d = 0; d < 2; d++) {
        jobs[d] = (DirectionJob){w, d, batch, steps, x, classes, out, work + (size_t)d * batch * 6 * w->hidden};
    }
    pthread_t thread;
    int spawned = threads > 1 && pthread_create(&thread, NULL, run_direction, &jobs[1]) == 0;
    run_direction(&jobs[0]);
    if (spawned) pthread_join(thread, NULL);
    else run_direction(&jobs[1]);
    return 0;
}
