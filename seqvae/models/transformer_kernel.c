/* Free-running generation for seqvae's transformer decoder (transformer.py), in one C loop per call, and the
 * same blocks run as its encoder (every position of a window in one pass, attending both ways).
 *
 * Why: one decode step of the 4-layer d=256 decoder is a dozen small matrix products plus layer norms and an
 * attention per head; eager PyTorch pays dispatch overhead on each of some hundred operations per step, far
 * more than the arithmetic. Here the whole loop runs in C with a key/value cache: each step embeds the previous
 * token, runs every block on that one position against the cached keys and values, and chooses its token with
 * the LSTM kernel's rules (TokenRules). Where every row's next steps are forced, their inputs are known, so one
 * pass runs those positions together and streams the weights once for all of them (a forced span is scored
 * about as fast as teacher forcing). Matrices are panel-packed as in lstm_kernel.c (bfloat16 panels for
 * bfloat16-exact weights). On request (`dot`) generation runs its matrices in bfloat16 arithmetic instead, as the
 * LSTM's does: activations rounded to bfloat16 and AVX512-BF16 dot products summed in float32 (attention, norms and
 * the cache stay float32). With threads > 1 each matrix's column panels are split between the threads, so even
 * one row decodes in parallel; results do not depend on the thread count. Built by seqvae/models/native.py.
 */
#include "kernel_common.h"

#define MAX_BLOCKS 8
#define MAX_PASS_ROWS 256 /* rows (batch rows x positions) one pass may take when forced steps let it run ahead */

typedef struct {
    int num_classes, padded_classes, d_model, n_heads, blocks, ff_size, max_steps, bf16;
    const float *embed;    /* [C + 1][d]: token embedding, row C = START */
    const float *position; /* [max_steps][d] */
    const float *ln1_w[MAX_BLOCKS], *ln1_b[MAX_BLOCKS], *ln2_w[MAX_BLOCKS], *ln2_b[MAX_BLOCKS];
    const void *w_qkv[MAX_BLOCKS];  /* panels [3 d / 16][d][16]: columns q, k, v, each heads x d_head */
    const float *b_qkv[MAX_BLOCKS]; /* [3 d] */
    const void *w_proj[MAX_BLOCKS]; /* panels [d / 16][d][16] */
    const float *b_proj[MAX_BLOCKS];
    const void *w_ff1[MAX_BLOCKS];  /* panels [ff / 16][d][16] */
    const float *b_ff1[MAX_BLOCKS];
    const void *w_ff2[MAX_BLOCKS];  /* panels [d / 16][ff][16] */
    const float *b_ff2[MAX_BLOCKS];
    const float *norm_w, *norm_b;   /* the final layer norm */
    const void *w_out;              /* panels [Cp / 16][d][16] */
    const float *b_out;             /* [Cp], padding columns hold -1e30 so they never win */
    /* The same matrices as bfloat16 row pairs [N / 16][K / 2][16][2] for gemm_dot; NULL until packed. */
    const void *dot_qkv[MAX_BLOCKS], *dot_proj[MAX_BLOCKS], *dot_ff1[MAX_BLOCKS], *dot_ff2[MAX_BLOCKS], *dot_out;
} TransformerWeights;

static int team_size(int threads) { return threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads; }

/* How many positions one pass may run per batch row. */
static int max_span(int batch, int steps) {
    int span = MAX_PASS_ROWS / batch;
    return span < 1 ? 1 : span > steps ? steps : span;
}

/* Shared, per pass row: qkv, attention output, projection, feed-forward hidden and output, logits; and the
 * key/value cache [blocks][2][B][heads][steps][d_head]. Per member: its copy of the residual stream and of a
 * normed one, attention scores, and a matrix input rounded to bfloat16 for the dot-product path. */
static int64_t shared_floats(const TransformerWeights *w, int batch, int steps) {
    int64_t d = w->d_model, rows = (int64_t)batch * max_span(batch, steps);
    return rows * (3 * d + d + d + w->ff_size + d + w->padded_classes) + (int64_t)w->blocks * 2 * batch * steps * d;
}

static int64_t member_floats(const TransformerWeights *w, int batch, int steps) {
    int64_t rows = (int64_t)batch * max_span(batch, steps), widest = w->ff_size > w->d_model ? w->ff_size : w->d_model;
    return rows * 2 * w->d_model + steps + (rows * widest + 1) / 2;
}

/* The positions the pass at step t runs: t, and after it each next step while every row's previous step is
 * forced (its input is known), up to max_span. */
static int pass_span(const TokenRules *r, int batch, int t, int limit) {
    int span = 1;
    while (span < limit && t + span < r->steps && r->mask) {
        for (int b = 0; b < batch; b++)
            if (!r->mask[(size_t)b * r->steps + t + span - 1]) return span;
        span++;
    }
    return span;
}

int64_t transformer_generate_workspace(const TransformerWeights *w, int batch, int steps, int threads) {
    return shared_floats(w, batch, steps) + team_size(threads) * member_floats(w, batch, steps);
}

typedef struct {
    const TransformerWeights *w;
    int batch, steps;
    const float *z_terms; /* [blocks][B][d]: each block's projection of z, added to its input; NULL: none */
    const int64_t *tokens; /* encoding: the window's events [B][steps] (NULL when generating) */
    float *states;         /* encoding: the final layer norm's output [B][steps][d] */
    TokenRules rules;
    float *work;
    int dot; /* bfloat16 arithmetic for the matrices (generation only) */
    Team team;
} TransformerJob;

typedef struct {
    TransformerJob *job;
    int rank;
} TransformerMember;

/* y = layer_norm(x) * weight + bias over one row of n, as torch's LayerNorm (eps 1e-5). */
static void layer_norm(int n, const float *x, const float *weight, const float *bias, float *y) {
    float mean = 0.0f, var = 0.0f;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= (float)n;
    for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    float inv = 1.0f / sqrtf(var / (float)n + 1e-5f);
    for (int i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * weight[i] + bias[i];
}

/* erf per lane: Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7). */
static inline vn verf(vn x) {
    vn a = selectn(x < 0.0f, -x, x);
    vn t = 1.0f / (1.0f + 0.3275911f * a);
    vn p = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
    vn y = 1.0f - p * vexp(-a * a);
    return selectn(x < 0.0f, -y, y);
}

/* Exact GELU in place, as nn.GELU(): x / 2 * (1 + erf(x / sqrt 2)); n a multiple of 16. */
static void gelu(int n, float *x) {
    for (int j = 0; j < n; j += NL) {
        vn v = loadn(x + j);
        storen(x + j, 0.5f * v * (1.0f + verf(v * 0.70710678118654752f)));
    }
}

/* out[:, own panels] = bias + x @ W for rows 0 .. B. */
static void affine_panels(int B, int K, const float *x, const void *wp, const float *bias, int p0, int p1,
                          float *out, int N, int bf16) {
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * N + p0 * LANES, bias + p0 * LANES, sizeof(float) * (p1 - p0) * LANES);
    gemm_range(B, K, x, K, wp, p0, p1, out, N, bf16);
}

/* affine_panels in the job's arithmetic: with `dot`, x is rounded into xb (bfloat16 pairs) and multiplied by the
 * row-pair packed wd; a member without panels of this matrix skips the rounding too. */
static void job_affine(const TransformerJob *job, int B, int K, const float *x, uint16_t *xb, const void *wp,
                       const void *wd, const float *bias, int p0, int p1, float *out, int N) {
    if (!job->dot) {
        affine_panels(B, K, x, wp, bias, p0, p1, out, N, job->w->bf16);
        return;
    }
    if (p1 <= p0) return;
    for (size_t i = 0; i < (size_t)B * K; i++) xb[i] = to_bf16(x[i]);
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * N + p0 * LANES, bias + p0 * LANES, sizeof(float) * (p1 - p0) * LANES);
    gemm_dot(B, K / 2, (const uint32_t *)xb, K / 2, wd, p0, p1, out, N);
}

/* sum a[i] b[i], in native-width partial sums. */
static float dot(int n, const float *a, const float *b) {
    vn acc = (vn){0};
    int i = 0;
    for (; i + NL <= n; i += NL) acc += loadn(a + i) * loadn(b + i);
    float lanes[NL], total = 0.0f;
    storen(lanes, acc);
    for (int j = 0; j < NL; j++) total += lanes[j];
    for (; i < n; i++) total += a[i] * b[i];
    return total;
}

/* One (row, head)'s attention at step t: its query against keys 0 .. t, scaled dot products, softmax, the
 * weighted sum of values into out [d_head]. */
static void attend(int dh, int t, const float *q, const float *keys, const float *values, float *scores, float *out) {
    float scale = 1.0f / sqrtf((float)dh), top = -INFINITY;
    for (int j = 0; j <= t; j++) {
        scores[j] = dot(dh, q, keys + (size_t)j * dh) * scale;
        if (scores[j] > top) top = scores[j];
    }
    float total = 0.0f;
    for (int j = 0; j <= t; j++) total += scores[j] = expf(scores[j] - top);
    for (int i = 0; i < dh; i++) out[i] = 0.0f;
    for (int j = 0; j <= t; j++) {
        const float *v = values + (size_t)j * dh;
        float p = scores[j] / total;
        for (int i = 0; i < dh; i++) out[i] += p * v[i];
    }
}

/* One member's part: its column panels of every matrix, its (row, head) pairs of the attention, its rows of the
 * output layer. A pass runs `span` positions of every batch row, as rows b * span + i at position t + i. Five
 * barriers per block (six when a pass runs ahead: keys and values are written before any row reads them) and
 * one per pass hand the shared buffers over. */
static void *transformer_member(void *arg) {
    const TransformerMember *me = arg;
    TransformerJob *job = me->job;
    if (!join_team(&job->team, me->rank)) return NULL;
    const TransformerWeights *w = job->w;
    const int B = job->batch, T = job->steps, d = w->d_model, H = w->n_heads, dh = d / H, F = w->ff_size;
    const int C = w->num_classes, Cp = w->padded_classes, rank = me->rank, team = job->team.size;
    Barrier *barrier = &job->team.barrier;
    const int R = B * max_span(B, T); /* the most rows a pass takes */
    float *qkv = job->work, *attn = qkv + (size_t)R * 3 * d, *proj = attn + (size_t)R * d;
    float *hidden = proj + (size_t)R * d, *ffo = hidden + (size_t)R * F, *logits = ffo + (size_t)R * d;
    float *cache = logits + (size_t)R * Cp;
    float *x = job->work + shared_floats(w, B, T) + (size_t)rank * member_floats(w, B, T);
    float *normed = x + (size_t)R * d, *scores = normed + (size_t)R * d;
    uint16_t *rounded = (uint16_t *)(scores + T);
    int q0, q1, d0, d1, f0, f1;
    share(3 * d / LANES, rank, team, &q0, &q1);
    share(d / LANES, rank, team, &d0, &d1);
    share(F / LANES, rank, team, &f0, &f1);
    const TokenRules *rules = &job->rules;
    const int encoding = job->tokens != NULL;
    for (int t = 0, span; t < T; t += span) {
        span = encoding ? T : pass_span(rules, B, t, max_span(B, T));
        const int rows = B * span;
        int a0, a1, r0, r1;
        share(rows * H, rank, team, &a0, &a1);
        share(rows, rank, team, &r0, &r1);
        for (int row = 0; row < rows; row++) {
            int b = row / span, s = t + row % span;
            int64_t prev = encoding ? job->tokens[(size_t)b * T + s] : s == 0 ? C
                           : row % span ? rules->forced[(size_t)b * T + s - 1] : rules->out[(size_t)b * T + s - 1];
            for (int i = 0; i < d; i++) x[(size_t)row * d + i] = w->embed[prev * d + i] + w->position[(size_t)s * d + i];
        }
        for (int l = 0; l < w->blocks; l++) {
            const float *zt = job->z_terms ? job->z_terms + (size_t)l * B * d : NULL;
            for (int row = 0; row < rows; row++) {
                float *xr = x + (size_t)row * d;
                if (job->z_terms)
                    for (int i = 0; i < d; i++) xr[i] += zt[(size_t)(row / span) * d + i];
                layer_norm(d, xr, w->ln1_w[l], w->ln1_b[l], normed + (size_t)row * d);
            }
            job_affine(job, rows, d, normed, rounded, w->w_qkv[l], w->dot_qkv[l], w->b_qkv[l], q0, q1, qkv, 3 * d);
            barrier_wait(barrier);
            for (int stage = span > 1 ? 0 : 1; stage < 2; stage++) { /* 0: store keys and values; 1: attend */
                for (int pair = a0; pair < a1; pair++) {
                    int row = pair / H, h = pair % H, b = row / span, s = t + row % span;
                    float *keys = cache + ((((size_t)l * 2 * B + b) * H + h) * T) * dh;
                    float *values = keys + (size_t)B * H * T * dh;
                    const float *q = qkv + (size_t)row * 3 * d;
                    if (stage == 0 || span == 1) {
                        memcpy(keys + (size_t)s * dh, q + d + h * dh, sizeof(float) * dh);
                        memcpy(values + (size_t)s * dh, q + 2 * d + h * dh, sizeof(float) * dh);
                    }
                    if (stage == 1) /* causal when generating: keys 0 .. s; all of them when encoding */
                        attend(dh, encoding ? T - 1 : s, q + h * dh, keys, values, scores, attn + (size_t)row * d + h * dh);
                }
                barrier_wait(barrier);
            }
            job_affine(job, rows, d, attn, rounded, w->w_proj[l], w->dot_proj[l], w->b_proj[l], d0, d1, proj, d);
            barrier_wait(barrier);
            for (int row = 0; row < rows; row++) {
                float *xr = x + (size_t)row * d;
                for (int i = 0; i < d; i++) xr[i] += proj[(size_t)row * d + i];
                layer_norm(d, xr, w->ln2_w[l], w->ln2_b[l], normed + (size_t)row * d);
            }
            job_affine(job, rows, d, normed, rounded, w->w_ff1[l], w->dot_ff1[l], w->b_ff1[l], f0, f1, hidden, F);
            for (int row = 0; row < rows; row++) gelu((f1 - f0) * LANES, hidden + (size_t)row * F + f0 * LANES);
            barrier_wait(barrier);
            job_affine(job, rows, F, hidden, rounded, w->w_ff2[l], w->dot_ff2[l], w->b_ff2[l], d0, d1, ffo, d);
            barrier_wait(barrier);
            for (size_t i = 0; i < (size_t)rows * d; i++) x[i] += ffo[i];
        }
        float *final = encoding ? job->states : normed;
        for (int row = r0; row < r1; row++)
            layer_norm(d, x + (size_t)row * d, w->norm_w, w->norm_b, final + (size_t)row * d);
        if (encoding) break;
        if (r1 > r0)
            job_affine(job, r1 - r0, d, normed + (size_t)r0 * d, rounded, w->w_out, w->dot_out, w->b_out, 0,
                       Cp / LANES, logits + (size_t)r0 * Cp, Cp);
        for (int row = r0; row < r1; row++) emit_token(rules, logits + (size_t)row * Cp, C, row / span, t + row % span);
        barrier_wait(barrier);
    }
    return NULL;
}

/* Whether the kernel takes these shapes and this workspace. */
static int takes(const TransformerWeights *w, int batch, int steps, int64_t work_size, int threads) {
    return work_size >= transformer_generate_workspace(w, batch, steps, threads) && steps <= w->max_steps &&
           w->blocks >= 1 && w->blocks <= MAX_BLOCKS && w->d_model % LANES == 0 && w->ff_size % LANES == 0 &&
           w->d_model % w->n_heads == 0;
}

static void run_job(TransformerJob *job, int threads) {
    TransformerMember members[MAX_THREADS];
    int team = team_size(threads);
    for (int i = 0; i < team; i++) members[i] = (TransformerMember){job, i};
    run_team(&job->team, team, transformer_member, members, sizeof members[0]);
}

/* Generate `steps` (<= max_steps) tokens for each of `batch` rows from START, each block's input shifted by its
 * row's z term (z_terms [blocks][batch][d]); tokens are chosen as TokenRules says (uniforms [steps][batch]).
 * With `dot` the matrices run in bfloat16 arithmetic (gemm_dot). Returns -1 for a workspace too small or a shape
 * the kernel does not take, -3 for `dot` where it is unavailable or its weights are not packed. */
int transformer_generate(const TransformerWeights *w, int batch, int steps, const float *z_terms, float temperature,
                         const float *uniforms, const int64_t *forced, const uint8_t *mask, const uint8_t *allowed,
                         int64_t *out, float *logp, float *work, int64_t work_size, int threads, int dot) {
    if (!takes(w, batch, steps, work_size, threads)) return -1;
    if (dot && (!HAVE_DOT || !w->dot_out)) return -3;
    TransformerJob job = {w, batch, steps, z_terms, NULL, NULL, {steps, batch, uniforms, forced, mask, allowed,
                                                                 temperature, out, logp}, work, dot};
    run_job(&job, threads);
    return 0;
}

/* The final layer norm's output [batch][steps][d] for event windows tokens [batch][steps], every position attending
 * to all: the encoder, its embedding table without a START row. The window is one pass, so batch * steps is at most
 * MAX_PASS_ROWS (the caller splits bigger batches). Returns -1 for a workspace too small or a shape it does not take. */
int transformer_encode(const TransformerWeights *w, int batch, int steps, const int64_t *tokens, float *states,
                       float *work, int64_t work_size, int threads) {
    if (!takes(w, batch, steps, work_size, threads) || batch * steps > MAX_PASS_ROWS) return -1;
    TransformerJob job = {w, batch, steps, NULL, tokens, states, {steps, batch, NULL, NULL, NULL, NULL, 0.0f, NULL,
                                                                  NULL}, work, 0};
    run_job(&job, threads);
    return 0;
}

/* The most windows one transformer_encode call takes. */
int transformer_encode_rows(int steps) { return steps > MAX_PASS_ROWS ? 0 : MAX_PASS_ROWS / steps; }
