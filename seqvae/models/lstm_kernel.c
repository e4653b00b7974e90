/* Free-running LSTM generation and bidirectional LSTM encoding for seqvae, in one C loop per call.
 *
 * Why: a 2x256 LSTM decoding 32 steps is ~64 small matrix-vector products; in Python every one of
 * them pays interpreter and dispatch overhead larger than the arithmetic. Here the whole loop runs
 * in C: weights are packed in 16-float column panels so a register-blocked micro-kernel streams
 * each weight once per step for up to four batch rows, the previous token's one-hot matmul is a row
 * copy from a table (biases folded in), and the conditioning's gate contribution is computed once.
 *
 * Portable C11 with GCC/Clang vector extensions: compiled with -march=native it uses AVX-512 (or
 * AVX2, NEON) without intrinsics. Built and cached by seqvae/models/native.py.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define MAX_LAYERS 4
#define LANES 16

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

static inline v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }
static inline v16 splat(float x) { return (v16){0} + x; }
static inline v16 select16(v16i mask, v16 a, v16 b) { return (v16)(((v16i)a & mask) | ((v16i)b & ~mask)); }

/* exp on 16 lanes (Cephes polynomial, ~1 ulp on the clamped range). */
static inline v16 vexp(v16 x) {
    x = select16(x < splat(88.0f), x, splat(88.0f));
    x = select16(x > splat(-87.0f), x, splat(-87.0f));
    v16 y = x * 1.44269504088896341f + 0.5f;
    v16i n = __builtin_convertvector(y, v16i);
    v16 fn = __builtin_convertvector(n, v16);
    v16i too_big = fn > y;           /* truncation rounded a negative value up: step down */
    n += too_big;                    /* true lanes are -1 */
    fn = __builtin_convertvector(n, v16);
    v16 r = x - fn * 0.693359375f - fn * -2.12194440e-4f;
    v16 p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    v16i bits = (n + 127) << 23;
    return p * (v16)bits;
}

static inline v16 vsigmoid(v16 x) { return 1.0f / (1.0f + vexp(-x)); }
static inline v16 vtanh(v16 x) { return 2.0f / (1.0f + vexp(-2.0f * x)) - 1.0f; }

/* Weight panels are float32, or bfloat16 when every weight is exactly a bfloat16 value (a model saved
 * with bfloat16 storage): then half the bytes stream from memory and the widening to float32 in
 * registers is exact, so results equal the float32 path on the same weights. */
typedef uint16_t v16h __attribute__((vector_size(32)));
typedef uint32_t v16u __attribute__((vector_size(64)));
static inline v16 loadw_f32(const void *base, size_t i) { return load16((const float *)base + i); }
#if defined(__AVX512F__)
#include <immintrin.h>
static inline v16 loadw_bf16(const void *base, size_t i) { /* one vpmovzxwd ymm -> zmm, one shift */
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i)));
    return (v16)_mm512_slli_epi32(wide, 16);
}
#else
static inline v16 loadw_bf16(const void *base, size_t i) {
    v16h h;
    memcpy(&h, (const uint16_t *)base + i, sizeof h);
    v16u wide = __builtin_convertvector(h, v16u);
    return (v16)(wide << 16);
}
#endif

/* out[b, n] += sum_k x[b, k] * W[k, n] for a block of R rows (R <= 4) and the 4 panels (64 columns) from
 * panel p, or the single panel p when single is set. W is packed as panels [N / 16][K][16]. */
#define DEFINE_GEMM(SUFFIX)                                                                                     \
    static inline __attribute__((always_inline)) void block_rows_##SUFFIX(                                     \
        int R, int K, const float *x, int ldx, const void *wp, int p, int single, float *out, int ldo) {        \
        if (!single) {                                                                                          \
            v16 acc[4][4];                                                                                      \
            for (int r = 0; r < 4; r++)                                                                         \
                for (int q = 0; q < 4; q++) acc[r][q] = (v16){0};                                               \
            size_t s0 = (size_t)(p + 0) * K * LANES, s1 = (size_t)(p + 1) * K * LANES;                          \
            size_t s2 = (size_t)(p + 2) * K * LANES, s3 = (size_t)(p + 3) * K * LANES;                          \
            for (int k = 0; k < K; k++) {                                                                       \
                size_t o = (size_t)k * LANES;                                                                   \
                v16 a = loadw_##SUFFIX(wp, s0 + o), b = loadw_##SUFFIX(wp, s1 + o);                             \
                v16 c = loadw_##SUFFIX(wp, s2 + o), d = loadw_##SUFFIX(wp, s3 + o);                             \
                for (int r = 0; r < R; r++) {                                                                   \
                    float s = x[r * ldx + k];                                                                   \
                    acc[r][0] += s * a; acc[r][1] += s * b; acc[r][2] += s * c; acc[r][3] += s * d;             \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < R; r++)                                                                         \
                for (int q = 0; q < 4; q++) {                                                                   \
                    float *o = out + r * ldo + (p + q) * LANES;                                                 \
                    store16(o, load16(o) + acc[r][q]);                                                          \
                }                                                                                               \
        } else {                                                                                                \
            v16 acc[4] = {{0}, {0}, {0}, {0}};                                                                  \
            size_t s0 = (size_t)p * K * LANES;                                                                  \
            for (int k = 0; k < K; k++) {                                                                       \
                v16 a = loadw_##SUFFIX(wp, s0 + (size_t)k * LANES);                                             \
                for (int r = 0; r < R; r++) acc[r] += x[r * ldx + k] * a;                                       \
            }                                                                                                   \
            for (int r = 0; r < R; r++) {                                                                       \
                float *o = out + r * ldo + p * LANES;                                                           \
                store16(o, load16(o) + acc[r]);                                                                 \
            }                                                                                                   \
        }                                                                                                       \
    }                                                                                                           \
    /* Panel groups outer, row blocks inner: a group's weights stay in L2 across all rows. */                  \
    static void gemm_##SUFFIX(int B, int K, const float *x, int ldx, const void *wp, int N, float *out,        \
                              int ldo) {                                                                        \
        int panels = N / LANES;                                                                                 \
        for (int p = 0; p < panels;) {                                                                          \
            int single = p + 4 > panels, b = 0;                                                                 \
            for (; b + 4 <= B; b += 4) block_rows_##SUFFIX(4, K, x + b * ldx, ldx, wp, p, single, out + b * ldo, ldo); \
            switch (B - b) {                                                                                    \
                case 3: block_rows_##SUFFIX(3, K, x + b * ldx, ldx, wp, p, single, out + b * ldo, ldo); break;  \
                case 2: block_rows_##SUFFIX(2, K, x + b * ldx, ldx, wp, p, single, out + b * ldo, ldo); break;  \
                case 1: block_rows_##SUFFIX(1, K, x + b * ldx, ldx, wp, p, single, out + b * ldo, ldo); break;  \
                default: break;                                                                                 \
            }                                                                                                   \
            p += single ? 1 : 4;                                                                                \
        }                                                                                                       \
    }

DEFINE_GEMM(f32)
DEFINE_GEMM(bf16)

static void gemm_acc(int B, int K, const float *x, int ldx, const void *wp, int N, float *out, int ldo, int bf16) {
    if (bf16) gemm_bf16(B, K, x, ldx, wp, N, out, ldo);
    else gemm_f32(B, K, x, ldx, wp, N, out, ldo);
}

/* Gates (i, f, g, o pre-activations, [4 H]) -> new c and h, in place. */
static void cell_update(int H, const float *gates, float *c, float *h) {
    int j = 0;
    for (; j + LANES <= H; j += LANES) {
        v16 i = vsigmoid(load16(gates + j)), f = vsigmoid(load16(gates + H + j));
        v16 g = vtanh(load16(gates + 2 * H + j)), o = vsigmoid(load16(gates + 3 * H + j));
        v16 cn = f * load16(c + j) + i * g;
        store16(c + j, cn);
        store16(h + j, o * vtanh(cn));
    }
    for (; j < H; j++) {
        float i = 1.0f / (1.0f + expf(-gates[j])), f = 1.0f / (1.0f + expf(-gates[H + j]));
        float g = tanhf(gates[2 * H + j]), o = 1.0f / (1.0f + expf(-gates[3 * H + j]));
        c[j] = f * c[j] + i * g;
        h[j] = o * tanhf(c[j]);
    }
}

typedef struct {
    int num_classes, padded_classes, cond_size, layers, init_size;
    int sizes[MAX_LAYERS];
    int bf16;                      /* panels hold bfloat16 (else float32) */
    const float *table;            /* [(C + 1), 4 H0]: layer-0 one-hot weight rows + both biases; row C = START */
    const void *w_cond;            /* panels [4 H0 / 16][cond][16]: layer-0 weights of the conditioning input */
    const void *w_init;            /* panels [init / 16][cond][16]: initial state dense (init = 2 sum H, padded) */
    const float *b_init;           /* [init] */
    const void *w_ih[MAX_LAYERS];  /* panels [4 H / 16][H below][16], layers >= 1 */
    const void *w_hh[MAX_LAYERS];  /* panels [4 H / 16][H][16] */
    const float *bias[MAX_LAYERS]; /* [4 H], layers >= 1 (layer 0's live in the table) */
    const void *w_out;             /* panels [Cp / 16][H top][16] */
    const float *b_out;            /* [Cp], padding columns hold -1e30 so they never win */
} LSTMWeights;

static int64_t workspace_per_row(const LSTMWeights *w) {
    int64_t total = 4 * w->sizes[0] + w->init_size + w->padded_classes;
    for (int l = 0; l < w->layers; l++) total += 6 * w->sizes[l];
    return total;
}

int64_t lstm_generate_workspace(const LSTMWeights *w, int batch) { return (int64_t)batch * workspace_per_row(w); }

static int choose(const float *logits, int C, float temperature, float u) {
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
    for (int i = 0; i < C; i++) total += expf(logits[i] * inv - top);
    double target = (double)u * total, running = 0.0;
    for (int i = 0; i < C; i++) {
        running += expf(logits[i] * inv - top);
        if (running >= target) return i;
    }
    return C - 1;
}

/* The step loop for a block of rows; uniforms[t * ldu + b] is row b's draw at step t. */
static void generate_rows(const LSTMWeights *w, int batch, int steps, const float *cond, const int64_t *prev0,
                          float temperature, const float *uniforms, int ldu, const int64_t *forced,
                          const uint8_t *mask, int64_t *out, float *work) {
    const int L = w->layers, C = w->num_classes, Cp = w->padded_classes, D = w->cond_size, G0 = 4 * w->sizes[0];
    float *cond_gates = work;
    float *init = cond_gates + (size_t)batch * G0;
    float *logits = init + (size_t)batch * w->init_size;
    float *h[MAX_LAYERS], *c[MAX_LAYERS], *g[MAX_LAYERS];
    float *cursor = logits + (size_t)batch * Cp;
    for (int l = 0; l < L; l++) {
        int H = w->sizes[l];
        h[l] = cursor; c[l] = h[l] + (size_t)batch * H; g[l] = c[l] + (size_t)batch * H;
        cursor = g[l] + (size_t)batch * 4 * H;
    }
    memset(cond_gates, 0, sizeof(float) * batch * G0);
    gemm_acc(batch, D, cond, D, w->w_cond, G0, cond_gates, G0, w->bf16);
    for (int b = 0; b < batch; b++) memcpy(init + (size_t)b * w->init_size, w->b_init, sizeof(float) * w->init_size);
    gemm_acc(batch, D, cond, D, w->w_init, w->init_size, init, w->init_size, w->bf16);
    for (int b = 0; b < batch; b++) {
        const float *row = init + (size_t)b * w->init_size;
        int offset = 0;
        for (int l = 0; l < L; l++) {
            int H = w->sizes[l];
            for (int j = 0; j < H; j++) {
                h[l][(size_t)b * H + j] = tanhf(row[offset + j]);
                c[l][(size_t)b * H + j] = tanhf(row[offset + H + j]);
            }
            offset += 2 * H;
        }
    }
    for (int t = 0; t < steps; t++) {
        /* layer 0: table row of the previous token + conditioning + recurrent */
        for (int b = 0; b < batch; b++) {
            int64_t prev = t == 0 ? prev0[b] : out[(size_t)b * steps + t - 1];
            const float *row = w->table + (size_t)prev * G0, *cg = cond_gates + (size_t)b * G0;
            float *gate = g[0] + (size_t)b * G0;
            for (int j = 0; j < G0; j += LANES) store16(gate + j, load16(row + j) + load16(cg + j));
        }
        gemm_acc(batch, w->sizes[0], h[0], w->sizes[0], w->w_hh[0], G0, g[0], G0, w->bf16);
        for (int b = 0; b < batch; b++)
            cell_update(w->sizes[0], g[0] + (size_t)b * G0, c[0] + (size_t)b * w->sizes[0],
                        h[0] + (size_t)b * w->sizes[0]);
        for (int l = 1; l < L; l++) {
            int H = w->sizes[l], below = w->sizes[l - 1], G = 4 * H;
            for (int b = 0; b < batch; b++) memcpy(g[l] + (size_t)b * G, w->bias[l], sizeof(float) * G);
            gemm_acc(batch, below, h[l - 1], below, w->w_ih[l], G, g[l], G, w->bf16);
            gemm_acc(batch, H, h[l], H, w->w_hh[l], G, g[l], G, w->bf16);
            for (int b = 0; b < batch; b++)
                cell_update(H, g[l] + (size_t)b * G, c[l] + (size_t)b * H, h[l] + (size_t)b * H);
        }
        int top = w->sizes[L - 1];
        for (int b = 0; b < batch; b++) memcpy(logits + (size_t)b * Cp, w->b_out, sizeof(float) * Cp);
        gemm_acc(batch, top, h[L - 1], top, w->w_out, Cp, logits, Cp, w->bf16);
        for (int b = 0; b < batch; b++) {
            int64_t token;
            if (mask && mask[(size_t)b * steps + t]) {
                token = forced[(size_t)b * steps + t];
            } else {
                float u = uniforms ? uniforms[(size_t)t * ldu + b] : 0.0f;
                token = choose(logits + (size_t)b * Cp, C, temperature, u);
            }
            out[(size_t)b * steps + t] = token;
        }
    }
}

typedef struct {
    const LSTMWeights *w;
    int rows, steps, ldu;
    const float *cond, *uniforms;
    const int64_t *prev0, *forced;
    const uint8_t *mask;
    float temperature;
    int64_t *out;
    float *work;
} RowsJob;

static void *run_rows(void *arg) {
    RowsJob *j = arg;
    generate_rows(j->w, j->rows, j->steps, j->cond, j->prev0, j->temperature, j->uniforms, j->ldu, j->forced,
                  j->mask, j->out, j->work);
    return NULL;
}

#define MAX_THREADS 16

/* Generate `steps` tokens for each of `batch` conditioning rows. The initial state is
 * tanh(dense(cond)) laid out [h0, c0, h1, c1, ...]; prev0 is the token before the first step
 * (C = START). uniforms [steps][batch] drive sampling when temperature > 0; where mask[b][t] is
 * set, forced[b][t] is emitted and fed back instead of the model's choice. Rows decode independently,
 * so with threads > 1 the batch is split into blocks that run in parallel without synchronisation. */
int lstm_generate(const LSTMWeights *w, int batch, int steps, const float *cond, const int64_t *prev0,
                  float temperature, const float *uniforms, const int64_t *forced, const uint8_t *mask,
                  int64_t *out, float *work, int64_t work_size, int threads) {
    if (work_size < lstm_generate_workspace(w, batch) || w->layers < 1 || w->layers > MAX_LAYERS) return -1;
    int blocks = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    if (blocks > batch) blocks = batch;
    RowsJob jobs[MAX_THREADS];
    pthread_t handles[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    int64_t per_row = workspace_per_row(w);
    for (int i = 0, first = 0; i < blocks; i++) {
        int rows = (batch - first) / (blocks - i);
        jobs[i] = (RowsJob){w, rows, steps, batch, cond + (size_t)first * w->cond_size,
                            uniforms ? uniforms + first : NULL, prev0 + first,
                            forced ? forced + (size_t)first * steps : NULL, mask ? mask + (size_t)first * steps : NULL,
                            temperature, out + (size_t)first * steps, work + (size_t)first * per_row};
        first += rows;
    }
    for (int i = 1; i < blocks; i++) started[i] = pthread_create(&handles[i], NULL, run_rows, &jobs[i]) == 0;
    run_rows(&jobs[0]);
    for (int i = 1; i < blocks; i++) {
        if (started[i]) pthread_join(handles[i], NULL);
        else run_rows(&jobs[i]);
    }
    return 0;
}

typedef struct {
    int num_classes, hidden, bf16;
    const float *table[2]; /* [C, 4 H]: input one-hot weight rows + both biases; forward, backward */
    const void *w_hh[2];   /* panels [4 H / 16][H][16], bfloat16 when bf16 is set */
} BiLSTMWeights;

typedef struct {
    const BiLSTMWeights *w;
    int direction, batch, steps;
    const int64_t *x;
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
        for (int b = 0; b < B; b++)
            memcpy(g + (size_t)b * G, w->table[d] + (size_t)job->x[(size_t)b * T + t] * G, sizeof(float) * G);
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

/* Final hidden states of both directions, [batch][2 H] (forward then backward). With threads > 1 the
 * backward direction runs on a second thread. */
int bilstm_final_states(const BiLSTMWeights *w, int batch, int steps, const int64_t *x, float *out, float *work,
                        int64_t work_size, int threads) {
    if (work_size < bilstm_workspace(w, batch)) return -1;
    DirectionJob jobs[2];
    for (int d = 0; d < 2; d++) {
        jobs[d] = (DirectionJob){w, d, batch, steps, x, out, work + (size_t)d * batch * 6 * w->hidden};
    }
    pthread_t thread;
    int spawned = threads > 1 && pthread_create(&thread, NULL, run_direction, &jobs[1]) == 0;
    run_direction(&jobs[0]);
    if (spawned) pthread_join(thread, NULL);
    else run_direction(&jobs[1]);
    return 0;
}
