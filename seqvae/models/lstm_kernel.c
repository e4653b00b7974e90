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
#include "kernel_common.h"

#define MAX_LAYERS 4

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

typedef struct {
    const LSTMWeights *w;
    int batch, steps;
    const float *cond;
    const int64_t *prev0;
    const int64_t *classes; /* [batch][steps]: each step's feature class (a chord), or NULL without features */
    TokenRules rules;
    int dot; /* bfloat16 dot products for the per-step matrices */
    float *work;
    Team team;
} GenerateJob;

typedef struct {
    GenerateJob *job;
    int rank;
} Member;


/* One member's part of a generation: its chunks of every layer's gate columns, its share of the initial-state
 * columns, and its rows of the output layer. Three barriers per step hand h and the chosen tokens over. */
static void *generate_member(void *arg) {
    const Member *me = arg;
    GenerateJob *job = me->job;
    if (!join_team(&job->team, me->rank)) return NULL;
    const LSTMWeights *w = job->w;
    const int B = job->batch, L = w->layers, C = w->num_classes, Cp = w->padded_classes, D = w->cond_size;
    const int G0 = 4 * w->sizes[0], steps = job->steps, rank = me->rank, team = job->team.size;
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
    barrier_wait(&job->team.barrier);
    for (int t = 0; t < steps; t++) {
        int now = t & 1, next = now ^ 1; /* h[l][now] holds the previous step's h, h[l][next] gets the new */
        for (int l = 0; l < L; l++) {
            int H = w->sizes[l], G = 4 * H, U = H / w->chunks[l];
            int p0 = c_lo[l] * 4 * U / LANES, p1 = c_hi[l] * 4 * U / LANES, col0 = p0 * LANES, width = (p1 - p0) * LANES;
            for (int b = 0; b < B; b++) {
                float *gate = g[l] + (size_t)b * G + col0;
                if (l == 0) {
                    int64_t prev = t == 0 ? job->prev0[b] : job->rules.out[(size_t)b * steps + t - 1];
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
            barrier_wait(&job->team.barrier);
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
        for (int b = r_lo; b < r_hi; b++) emit_token(&job->rules, logits + (size_t)b * Cp, C, b, t);
        barrier_wait(&job->team.barrier);
    }
    return NULL;
}

/* Generate `steps` tokens for each of `batch` conditioning rows. The initial state is
 * tanh(dense(cond)) laid out [h0, c0, h1, c1, ...]; prev0 is the token before the first step
 * (C = START). Tokens are chosen as TokenRules says (uniforms [steps][batch]). `classes` [batch][steps] (or
 * NULL) is each step's feature class, whose row of w->features joins the first layer's gates. With threads > 1 the
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
    GenerateJob job = {w, batch, steps, cond, prev0, classes,
                       {steps, batch, uniforms, forced, mask, allowed, temperature, out, logp}, dot, work};
    Member members[MAX_THREADS];
    for (int i = 0; i < team; i++) members[i] = (Member){&job, i};
    run_team(&job.team, team, generate_member, members, sizeof members[0]);
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
