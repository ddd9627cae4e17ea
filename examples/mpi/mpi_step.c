/*
 * tokenmath across processes, with MPI as the transport: tokenmath computes fixed-size partials,
 * MPI moves them, tokenmath merges them in a fixed order. Run with any number of ranks:
 *
 *   mpirun -np 4 ./tokenmath_mpi_step
 *
 * 1. Vocabulary parallel (a tensor-parallel LM head, V = 151936, Qwen's vocabulary): each rank
 *    holds the logits of a vocabulary shard. It computes the per-block partials of its shard
 *    (tkm_logits_partial_blocks), MPI_Allgather moves them, every rank merges them in rank order
 *    (tkm_logits_merge_block_partials) and finalises (tkm_logits_finalize), then runs the
 *    backward on its own shard with the merged statistics (tkm_logits_bwd_shard).
 *    - shards cut at multiples of TKM_LOGITS_BLOCK: the statistics and every rank's gradient
 *      slice are checked bitwise against one process on the whole vocabulary;
 *    - shards cut anywhere (one tuple per shard: tkm_logits_partial + tkm_logits_merge_shards):
 *      the statistics are checked against an f64 reference within tokenmath-reference's
 *      sharded_stats_tolerance, and the gradient slices bitwise against the one-process
 *      backward given the same statistics, and against the f64 gradient within grad_tolerance.
 * 2. Data parallel (RL batch split across ranks): GRPO group moments of each rank's responses
 *    (tkm_group_moments), all-gathered and merged in rank order (tkm_group_moments_merge), then
 *    each rank's advantages (tkm_grpo_advantage_from_moments); verl's token-mean loss with the
 *    global token count (tkm_agg_norm.global_tokens, dp_size) from an MPI_Allreduce.
 * 3. The top-entropy-quantile mask (TRL's get_high_entropy_mask, the 80/20 paper) over the
 *    data-parallel batch: the exact cross-rank protocol of tkm_entropy_quantile_* (the valid
 *    count, then at most 4 rounds of a 256-bin histogram summed by MPI_Allreduce, then at most
 *    one float reduced by MPI_MIN); the threshold and every rank's keep mask are checked bitwise
 *    against one process on the whole batch (tkm_top_entropy_threshold / tkm_top_entropy_mask).
 *
 * Prints a table and exits non-zero (on every rank) on any mismatch. Also times the merge
 * (informational; never asserted). See docs/distributed.md for what is bitwise and why.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenmath.h"

enum { V = 151936, ROWS = 8, TIMED_ROWS = 4096, TIMED_REPS = 20 };
enum { B = 50, T = 48 }; /* data parallel: responses, tokens per response */

static int rank, nranks, failures;

static void fail(const char *what, int row, long col, double got, double want, double tol) {
  failures++;
  if (failures <= 20)
    fprintf(stderr, "rank %d: MISMATCH %s row %d col %ld: got %.9g want %.9g (tol %.3g)\n", rank, what, row, col, got,
            want, tol);
}

static void ok_or_die(tkm_status s, const char *call) {
  if (s != TKM_STATUS_OK) {
    fprintf(stderr, "rank %d: %s: %s\n", rank, call, tkm_status_str(s));
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
}
#define CALL(expr) ok_or_die((expr), #expr)

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "rank %d: out of memory\n", rank);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return p;
}

/* ---- deterministic data (the same on every rank) ----------------------------------------- */

static double unit(uint64_t i) { /* splitmix64 -> [0, 1) */
  uint64_t z = i + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0;
}

/* The rows: Gumbel-distributed logits (a realistic heavy tail) with one case per row. */
static const float temps[ROWS] = {1.0f, 1.0f, 0.7f, 1.0f, 1.3f, 0.7f, 1.0f, 2.0f};
static const int32_t targets[ROWS] = {17, 150000, -100, 5, 2048 * 19, 123456, 9, V - 1};
static const uint8_t row_mask[ROWS] = {1, 1, 1, 0, 1, 1, 1, 1};

static float logit(int r, long c) {
  double u = unit((uint64_t)r * 1000003u + (uint64_t)c);
  double x = -log(-log(u + 1e-300)) * 1.5;
  if (r == 1) x += 1e4;                         /* a large common offset */
  if (r == 4 && c % 7 == 3) return -INFINITY;   /* a masked vocabulary stripe */
  if (r == 5 && c == 123456) x += 25.0;         /* one dominant token */
  if (r == 6 && c == V - 1) return NAN;         /* a non-finite row: its outputs are NaN */
  return (float)x;
}

static uint16_t bf16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0; /* NaN */
  u += 0x7FFFu + ((u >> 16) & 1u);                    /* round to nearest even */
  return (uint16_t)(u >> 16);
}

static float bf16_value(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* ---- the f64 reference and its error model (a transcription of tokenmath-reference) ------ */

#define EPS32 (1.0 / 8388608.0)          /* 2^-23 */
#define MIN_NORMAL 1.1754943508222875e-38 /* 2^-126 */

typedef struct {
  double lse, logp, entropy, max_abs_z, m, log_s;
} row_ref;
typedef struct {
  double lse, logp, entropy, max, log_sum;
} stats_tol;

static int reference_row(const float *x, float temp, int32_t target, row_ref *out) {
  double inv = (double)(1.0f / temp), m = -INFINITY, s = 0, h = 0, maz = 0;
  for (long c = 0; c < V; c++) {
    double z = (double)x[c] * inv;
    if (isnan(z) || z == INFINITY) return 0;
    if (z > m) m = z;
    if (isfinite(z) && fabs(z) > maz) maz = fabs(z);
  }
  for (long c = 0; c < V; c++) s += exp((double)x[c] * inv - m);
  out->log_s = log(s);
  for (long c = 0; c < V; c++) {
    double z = (double)x[c] * inv;
    if (isfinite(z)) {
      double lp = (z - m) - out->log_s;
      h -= exp(lp) * lp;
    }
  }
  out->m = m;
  out->lse = m + out->log_s;
  out->entropy = h;
  out->max_abs_z = maz;
  out->logp = target >= 0 ? ((double)x[target] * inv - m) - out->log_s : 0.0;
  return 1;
}

/* reference::rounding_depth, stats_tolerance and sharded_stats_tolerance. */
static stats_tol sharded_tolerance(const row_ref *r, int tempered, int shards) {
  double blocks = ceil((double)V / TKM_LOGITS_BLOCK), lnv = log((double)V);
  double k = ceil(2048.0 / 8) + 8.0 + 4.0 * ceil(log2(blocks)) + 2.0 * log((double)V + 1);
  double z = tempered ? r->max_abs_z : 0.0, e = EPS32;
  double extra = 4.0 * shards * e * (1.0 + r->entropy + lnv);
  stats_tol t;
  t.lse = e * (k + 2 * fabs(r->lse) + 2 * z) + MIN_NORMAL + extra;
  t.logp = e * (k + 2 * fabs(r->logp) + 2 * fabs(r->lse) + 4 * z) + MIN_NORMAL + extra;
  t.entropy = e * (k * (1 + r->entropy + lnv) + 4 * z * (1 + lnv)) + MIN_NORMAL + extra;
  t.max = e * z + MIN_NORMAL;
  t.log_sum = e * (k + 2 * fabs(r->log_s) + 3 * z) + MIN_NORMAL + extra;
  return t;
}

/* reference::grad_tolerance for column value z_j; also returns the f64 gradient in *want. */
static double grad_tolerance(const row_ref *r, const stats_tol *tol, double z, double inv, int tempered, int is_target,
                             double g_lp, double g_h, double g_lse, double *want) {
  double e = EPS32;
  if (z == -INFINITY) {
    *want = is_target ? g_lp * inv : 0.0;
    return 2 * e * fabs(*want) + MIN_NORMAL;
  }
  double d = (z - r->m) - r->log_s, p = exp(d), h = r->entropy;
  double c = g_lse - g_lp, q = c - g_h * (d + h);
  *want = p * q * inv + (is_target ? g_lp * inv : 0.0);
  double zj = tempered ? e * (fabs(z) + fabs(r->m)) : 0.0;
  double dd = e * (fabs(z - r->m) + fabs(d)) + tol->log_sum + zj;
  double dq = e * (fabs(c) + fabs(q)) + fabs(g_h) * (dd + tol->entropy + e * fabs(d + h));
  double t = inv * (p * (fabs(q) * (dd + 2 * e) + dq) + 1e-37 * (1 + fabs(q))) + 2 * e * fabs(*want);
  if (is_target) t += 2 * e * fabs(g_lp) * inv;
  return t + MIN_NORMAL;
}

/* ---- vocabulary parallel -------------------------------------------------------------------- */

static double thread_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
  float lse[ROWS], entropy[ROWS], logp[ROWS], max[ROWS], log_sum[ROWS];
  size_t nonfinite;
} fwd_out;

/* Statistics and gradient of this rank's shard [off, off + cols) of the logits `full`
 * (dtype `dt`, [ROWS, V]); `aligned` selects the per-block partials (off multiple of
 * TKM_LOGITS_BLOCK) or one tuple per shard. Returns the bytes this rank sent per row. */
static size_t vocab_parallel(tkm_dtype dt, const void *full, size_t esz, const long *bounds, int aligned, fwd_out *f,
                             float *dx, double *merge_ns_per_row) {
  long off = bounds[rank], cols = bounds[rank + 1] - bounds[rank];
  /* This rank's shard, copied out as it would live on the rank: [ROWS, cols], dense. */
  char *shard = xmalloc((size_t)ROWS * (size_t)cols * esz);
  for (int r = 0; r < ROWS; r++)
    memcpy(shard + (size_t)r * (size_t)cols * esz, (const char *)full + ((size_t)r * V + (size_t)off) * esz,
           (size_t)cols * esz);

  /* Every rank knows every shard's size: tuples per row of shard k. */
  size_t *nb = xmalloc(sizeof(size_t) * (size_t)nranks), max_nb = 0;
  for (int k = 0; k < nranks; k++) {
    nb[k] = aligned ? tkm_logits_partial_blocks_len((size_t)(bounds[k + 1] - bounds[k])) : 1;
    if (nb[k] > max_nb) max_nb = nb[k];
  }
  /* MPI_Allgather needs one count for every rank: each sends ROWS x max_nb tuples, its own
   * [ROWS, nb[rank]] dense at the front (the rest is padding that is never read). */
  size_t per_rank = (size_t)ROWS * max_nb;
  tkm_row_stats *send = xmalloc(sizeof(tkm_row_stats) * per_rank);
  tkm_row_stats *recv = xmalloc(sizeof(tkm_row_stats) * per_rank * (size_t)nranks);
  memset(send, 0, sizeof(tkm_row_stats) * per_rank);
  if (aligned)
    CALL(tkm_logits_partial_blocks(NULL, dt, shard, ROWS, (size_t)cols, (size_t)cols, (size_t)off, V, targets, row_mask,
                                   1.0f, temps, send));
  else
    CALL(tkm_logits_partial(NULL, dt, shard, ROWS, (size_t)cols, (size_t)cols, (size_t)off, V, targets, row_mask, 1.0f,
                            temps, send));
  int bytes = (int)(sizeof(tkm_row_stats) * per_rank);
  MPI_Allgather(send, bytes, MPI_BYTE, recv, bytes, MPI_BYTE, MPI_COMM_WORLD);

  /* Merge in rank order (= column order), finalise. Every rank gets the same bits. */
  const tkm_row_stats **parts = xmalloc(sizeof(*parts) * (size_t)nranks);
  for (int k = 0; k < nranks; k++) parts[k] = recv + (size_t)k * per_rank;
  tkm_row_stats merged[ROWS];
  if (aligned)
    CALL(tkm_logits_merge_block_partials(parts, nb, (size_t)nranks, ROWS, merged));
  else
    CALL(tkm_logits_merge_shards(parts, (size_t)nranks, ROWS, merged));
  CALL(tkm_logits_finalize(merged, ROWS, targets, row_mask, f->lse, f->entropy, f->logp, f->max, f->log_sum,
                           &f->nonfinite));

  /* The backward of this shard with the merged statistics: d(loss)/d(logits) for
   * loss = sum_rows (-w logp - 0.01 entropy + 1e-4 lse^2) (token-mean NLL, an entropy bonus, a
   * z-loss). */
  float g_lp[ROWS], g_h[ROWS], g_lse[ROWS];
  for (int r = 0; r < ROWS; r++) {
    g_lp[r] = -1.0f / ROWS;
    g_h[r] = -0.01f;
    g_lse[r] = 2e-4f * f->lse[r];
  }
  CALL(tkm_logits_bwd_shard(NULL, dt, shard, ROWS, (size_t)cols, (size_t)cols, (size_t)off, V, targets, row_mask, 1.0f,
                            temps, f->max, f->log_sum, f->entropy, g_lp, g_h, g_lse, TKM_DTYPE_F32, dx, (size_t)cols));

  /* Merge time per row (informational): the gathered tuples of TIMED_ROWS rows (the ROWS rows
   * repeated), merged and finalised; the best of TIMED_REPS runs, in this thread's CPU time (the
   * ranks may share cores). */
  {
    tkm_row_stats *big = xmalloc(sizeof(tkm_row_stats) * (size_t)TIMED_ROWS * max_nb * (size_t)nranks);
    tkm_row_stats *out = xmalloc(sizeof(tkm_row_stats) * TIMED_ROWS);
    float *l = xmalloc(sizeof(float) * TIMED_ROWS * 5);
    uint8_t *keep = xmalloc(TIMED_ROWS);
    for (int r = 0; r < TIMED_ROWS; r++) keep[r] = row_mask[r % ROWS];
    for (int k = 0; k < nranks; k++) {
      for (int r = 0; r < TIMED_ROWS; r++)
        memcpy(big + (size_t)k * TIMED_ROWS * max_nb + (size_t)r * nb[k], parts[k] + (size_t)(r % ROWS) * nb[k],
               sizeof(tkm_row_stats) * nb[k]);
      parts[k] = big + (size_t)k * TIMED_ROWS * max_nb;
    }
    double best = 1e30;
    for (int rep = 0; rep < TIMED_REPS; rep++) {
      double t0 = thread_seconds();
      if (aligned)
        CALL(tkm_logits_merge_block_partials(parts, nb, (size_t)nranks, TIMED_ROWS, out));
      else
        CALL(tkm_logits_merge_shards(parts, (size_t)nranks, TIMED_ROWS, out));
      CALL(tkm_logits_finalize(out, TIMED_ROWS, NULL, keep, l, l + TIMED_ROWS, NULL, l + 2 * TIMED_ROWS,
                               l + 3 * TIMED_ROWS, NULL));
      double dt_s = thread_seconds() - t0;
      if (dt_s < best) best = dt_s;
    }
    *merge_ns_per_row = best * 1e9 / TIMED_ROWS;
    free(big);
    free(out);
    free(l);
    free(keep);
  }
  free(parts);
  free(send);
  free(recv);
  free(nb);
  free(shard);
  return sizeof(tkm_row_stats) * max_nb;
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

typedef struct {
  double stats_ratio, grad_ratio, diff; /* worst |err|/tol vs f64; worst |difference| to one process */
  double merge_ns_aligned, merge_ns_any;
  size_t sent_aligned, sent_any;
} vp_result;

static double ulp_gap(float a, float b) {
  if (isnan(a) || isnan(b)) return (isnan(a) && isnan(b)) ? 0.0 : 1e30;
  int32_t ia, ib;
  memcpy(&ia, &a, 4);
  memcpy(&ib, &b, 4);
  if (ia < 0) ia = INT32_MIN - ia;
  if (ib < 0) ib = INT32_MIN - ib;
  return fabs((double)ia - (double)ib);
}

static void check_vocab_parallel(tkm_dtype dt, vp_result *res) {
  size_t esz = dt == TKM_DTYPE_F32 ? 4 : 2;
  /* The logits as every dtype sees them (f32 values of the bf16 data for the reference). */
  float *xf = xmalloc(sizeof(float) * ROWS * V);
  uint16_t *xb = xmalloc(sizeof(uint16_t) * ROWS * V);
  for (int r = 0; r < ROWS; r++)
    for (long c = 0; c < V; c++) {
      float v = logit(r, c);
      xb[(size_t)r * V + (size_t)c] = bf16_bits(v);
      xf[(size_t)r * V + (size_t)c] = dt == TKM_DTYPE_F32 ? v : bf16_value(bf16_bits(v));
    }
  const void *full = dt == TKM_DTYPE_F32 ? (const void *)xf : (const void *)xb;

  /* One process on the whole vocabulary. */
  fwd_out one;
  tkm_logits_input in;
  tkm_logits_input_init(&in);
  in.dtype = dt;
  in.logits = full;
  in.rows = ROWS;
  in.vocab = V;
  in.row_stride = V;
  in.targets = targets;
  in.row_mask = row_mask;
  in.temperatures = temps;
  CALL(tkm_logits_fwd(NULL, &in, one.lse, one.entropy, one.logp, one.max, one.log_sum, &one.nonfinite));

  long *bounds = xmalloc(sizeof(long) * (size_t)(nranks + 1));
  float *dx = xmalloc(sizeof(float) * ROWS * V); /* this rank's shard gradient */
  float *dx_one = xmalloc(sizeof(float) * ROWS * V);
  for (int aligned = 1; aligned >= 0; aligned--) {
    /* Aligned: the 75 canonical blocks dealt out to the ranks in contiguous runs (uneven for
     * 4 ranks: 18, 19, 19, 19). Any cut: V split evenly, cuts off every block boundary. */
    long nblocks = (V + TKM_LOGITS_BLOCK - 1) / TKM_LOGITS_BLOCK;
    for (int k = 0; k <= nranks; k++) {
      long b = nblocks * k / nranks * TKM_LOGITS_BLOCK;
      bounds[k] = aligned ? (b < V ? b : V) : (long)V * k / nranks;
    }
    fwd_out f;
    double ns;
    size_t sent = vocab_parallel(dt, full, esz, bounds, aligned, &f, dx, &ns);
    long off = bounds[rank], cols = bounds[rank + 1] - bounds[rank];
    /* The one-process backward with these statistics: the same upstreams as vocab_parallel. */
    float g_lp[ROWS], g_h[ROWS], g_lse[ROWS];
    for (int r = 0; r < ROWS; r++) {
      g_lp[r] = -1.0f / ROWS;
      g_h[r] = -0.01f;
      g_lse[r] = 2e-4f * f.lse[r];
    }
    CALL(tkm_logits_bwd(NULL, dt, full, ROWS, V, V, targets, row_mask, 1.0f, temps, f.max, f.log_sum, f.entropy, g_lp,
                        g_h, g_lse, TKM_DTYPE_F32, dx_one, V));
    int grad_slices_equal = 1;
    for (int r = 0; r < ROWS; r++)
      grad_slices_equal &= same_bits(dx + (size_t)r * (size_t)cols, dx_one + (size_t)r * V + off, (size_t)cols);
    if (!grad_slices_equal) fail("gradient slice vs one-process backward (same statistics)", -1, off, 0, 0, 0);

    if (aligned) {
      res->sent_aligned = sent;
      res->merge_ns_aligned = ns;
      /* Bitwise: the merged statistics are the one-process forward's, hence so is the gradient. */
      int same = same_bits(f.lse, one.lse, ROWS) && same_bits(f.entropy, one.entropy, ROWS) &&
                 same_bits(f.logp, one.logp, ROWS) && same_bits(f.max, one.max, ROWS) &&
                 same_bits(f.log_sum, one.log_sum, ROWS) && f.nonfinite == one.nonfinite;
      if (!same) fail("aligned statistics vs one process (bitwise)", -1, -1, 0, 0, 0);
      continue;
    }
    res->sent_any = sent;
    res->merge_ns_any = ns;
    if (f.nonfinite != one.nonfinite)
      fail("non-finite row count", -1, -1, (double)f.nonfinite, (double)one.nonfinite, 0);
    /* Any cut: within the sharded tolerance of the f64 reference, row by row. */
    for (int r = 0; r < ROWS; r++) {
      const float *x = xf + (size_t)r * V;
      row_ref ref;
      for (int k = 0; k < 3; k++) {
        const float a[3] = {f.lse[r], f.entropy[r], f.logp[r]}, b[3] = {one.lse[r], one.entropy[r], one.logp[r]};
        double g = (isnan(a[k]) && isnan(b[k])) ? 0.0 : fabs((double)a[k] - (double)b[k]);
        if (g > res->diff) res->diff = g;
      }
      if (!row_mask[r]) {
        if (f.lse[r] != 0.0f || f.entropy[r] != 0.0f) fail("masked row", r, -1, f.lse[r], 0, 0);
        continue;
      }
      if (!reference_row(x, temps[r], targets[r], &ref)) {
        if (!isnan(f.lse[r]) || !isnan(f.entropy[r])) fail("non-finite row gives NaN", r, -1, f.lse[r], NAN, 0);
        continue;
      }
      int tempered = temps[r] != 1.0f;
      stats_tol tol = sharded_tolerance(&ref, tempered, nranks);
      const double got[5] = {f.lse[r], f.logp[r], f.entropy[r], f.max[r], f.log_sum[r]};
      const double want[5] = {ref.lse, ref.logp, ref.entropy, ref.m, ref.log_s};
      const double tl[5] = {tol.lse, tol.logp, tol.entropy, tol.max, tol.log_sum};
      const char *what[5] = {"lse", "logp", "entropy", "max", "log_sum"};
      for (int k = 0; k < 5; k++) {
        double ratio = fabs(got[k] - want[k]) / tl[k];
        if (ratio > res->stats_ratio) res->stats_ratio = ratio;
        if (!(ratio <= 1.0)) fail(what[k], r, -1, got[k], want[k], tl[k]);
      }
      /* The gradient of this shard against the f64 gradient (of the exact statistics). */
      double inv = (double)(1.0f / temps[r]);
      double glp = targets[r] >= 0 ? g_lp[r] : 0.0;
      for (long j = 0; j < cols; j++) {
        double want_dx, z = (double)x[off + j] * inv;
        double t = grad_tolerance(&ref, &tol, z, inv, tempered, off + j == targets[r], glp, g_h[r], g_lse[r], &want_dx);
        double err = fabs((double)dx[(size_t)r * (size_t)cols + (size_t)j] - want_dx);
        if (err / t > res->grad_ratio) res->grad_ratio = err / t;
        if (!(err <= t)) fail("gradient vs f64", r, off + j, dx[(size_t)r * (size_t)cols + (size_t)j], want_dx, t);
      }
    }
  }
  free(bounds);
  free(dx);
  free(dx_one);
  free(xf);
  free(xb);
}

/* ---- data parallel -------------------------------------------------------------------------- */

typedef struct {
  int groups, split_groups;
  double max_split_ulps, loss_err, loss_tol, weight_ulps;
  unsigned long long tokens;
} dp_result;

static void check_data_parallel(dp_result *res) {
  /* 50 responses to 10 prompts (verl uids, not contiguous), rewards from a verifier (0/1) or a
   * reward model; group 104 has identical rewards (advantage exactly 0); 5 responses each. */
  static float rewards[B], loss[B * T];
  static uint32_t uid[B];
  static uint8_t mask[B * T];
  for (int b = 0; b < B; b++) {
    int g = (b < 25) ? b / 5 : 5 + (b * 3) % 5; /* the first half contiguous, the rest interleaved */
    uid[b] = 100u + (uint32_t)g;
    rewards[b] = g % 2 ? (float)(unit(7000u + (uint64_t)b) < 0.5) : (float)(unit(8000u + (uint64_t)b) * 4.0 - 1.0);
    if (g == 4) rewards[b] = 0.25f;
    int len = 1 + (int)(unit(9000u + (uint64_t)b) * T);
    for (int t = 0; t < T; t++) {
      mask[b * T + t] = (uint8_t)(t < len);
      loss[b * T + t] = (float)(unit(10000u + (uint64_t)(b * T + t)) - 0.5);
    }
  }
  tkm_grpo_options o;
  tkm_grpo_options_init(&o);
  o.flavor = TKM_GRPO_VERL_LOOP;

  /* This rank's responses: a contiguous, uneven slice of the batch. */
  int lo = B * rank / nranks, hi = B * (rank + 1) / nranks, n = hi - lo;

  /* 1. GRPO: per-rank group moments -> all-gather (counts, then the tables) -> merge. */
  uint32_t ids[B];
  tkm_moments mom[B];
  size_t k = 0;
  CALL(tkm_group_moments(rewards + lo, (size_t)n, uid + lo, 0, NULL, ids, mom, B, &k));
  int kk = (int)k, *counts = xmalloc(sizeof(int) * (size_t)nranks), *displs = xmalloc(sizeof(int) * (size_t)nranks);
  MPI_Allgather(&kk, 1, MPI_INT, counts, 1, MPI_INT, MPI_COMM_WORLD);
  int total = 0;
  for (int r = 0; r < nranks; r++) {
    displs[r] = total;
    total += counts[r];
  }
  uint32_t *all_ids = xmalloc(sizeof(uint32_t) * (size_t)total);
  tkm_moments *all_m = xmalloc(sizeof(tkm_moments) * (size_t)total);
  MPI_Allgatherv(ids, kk, MPI_UINT32_T, all_ids, counts, displs, MPI_UINT32_T, MPI_COMM_WORLD);
  MPI_Datatype mt;
  MPI_Type_contiguous(3, MPI_DOUBLE, &mt);
  MPI_Type_commit(&mt);
  MPI_Allgatherv(mom, kk, mt, all_m, counts, displs, mt, MPI_COMM_WORLD);
  MPI_Type_free(&mt);
  uint32_t table_ids[B];
  tkm_moments table[B];
  size_t groups = 0;
  CALL(tkm_group_moments_merge(all_ids, all_m, (size_t)total, table_ids, table, B, &groups));
  float adv[B];
  CALL(tkm_grpo_advantage_from_moments(rewards + lo, (size_t)n, uid + lo, table_ids, table, groups, &o, adv));

  /* One process, (a) the library's merge order: the same per-slice tables merged in slice order,
   * no MPI -> bitwise for every row; (b) the unsplit batch: bitwise for groups on one rank. */
  float whole[B], ordered[B];
  CALL(tkm_grpo_advantage(rewards, B, uid, 0, &o, whole));
  {
    uint32_t s_ids[2 * B], m_ids[B];
    tkm_moments s_m[2 * B], m_m[B];
    size_t e = 0, kg = 0;
    for (int r = 0; r < nranks; r++) {
      int a = B * r / nranks, z = B * (r + 1) / nranks;
      size_t kr = 0;
      CALL(tkm_group_moments(rewards + a, (size_t)(z - a), uid + a, 0, NULL, s_ids + e, s_m + e, B, &kr));
      e += kr;
    }
    CALL(tkm_group_moments_merge(s_ids, s_m, e, m_ids, m_m, B, &kg));
    CALL(tkm_grpo_advantage_from_moments(rewards, B, uid, m_ids, m_m, kg, &o, ordered));
  }
  res->groups = (int)groups;
  res->split_groups = 0;
  for (size_t g = 0; g < groups; g++) {
    int first = -1, last = -1;
    for (int b = 0; b < B; b++)
      if (uid[b] == table_ids[g]) {
        if (first < 0) first = b;
        last = b;
      }
    int r0 = 0, r1 = 0;
    while (B * (r0 + 1) / nranks <= first) r0++;
    while (B * (r1 + 1) / nranks <= last) r1++;
    res->split_groups += r0 != r1;
  }
  for (int i = 0; i < n; i++) {
    int b = lo + i, on_one_rank = 1;
    for (int c = 0; c < B; c++)
      if (uid[c] == uid[b] && (c < lo || c >= hi)) on_one_rank = 0;
    if (memcmp(&adv[i], &ordered[b], 4) != 0)
      fail("advantage vs one process, library merge order", b, -1, adv[i], ordered[b], 0);
    if (on_one_rank) {
      if (memcmp(&adv[i], &whole[b], 4) != 0)
        fail("advantage of an unsplit group vs one process", b, -1, adv[i], whole[b], 0);
    } else {
      /* Split: the merged (n, mean, M2) differ from the sequential pushes by a few f64 roundings
       * per value (relative ~n 2^-52), which reach A = (R - mean) / (std + eps) through the mean
       * and the std; then A is rounded once to f32. */
      size_t g = 0;
      while (table_ids[g] != uid[b]) g++;
      double sd = table[g].n > 1 ? sqrt(table[g].m2 / (table[g].n - 1)) : 1.0;
      double tol = EPS32 / 2 * fabs(whole[b]) +
                   16.0 * table[g].n * 1.1102230246251565e-16 * (fabs(rewards[b]) + fabs(table[g].mean)) / (sd + o.eps);
      double gap = ulp_gap(adv[i], whole[b]);
      if (gap > res->max_split_ulps) res->max_split_ulps = gap;
      if (!(fabs((double)adv[i] - whole[b]) <= tol + EPS32 / 2 * fabs(whole[b])))
        fail("advantage of a split group vs one process", b, -1, adv[i], whole[b], tol);
    }
  }

  /* 2. verl token-mean with the global token count: N_tok by MPI_Allreduce, dp_size = ranks. */
  unsigned long long local = 0, global = 0;
  for (int i = lo * T; i < hi * T; i++) local += mask[i] != 0;
  MPI_Allreduce(&local, &global, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  tkm_agg_norm norm;
  tkm_agg_norm_init(&norm);
  norm.global_tokens = global;
  norm.dp_size = (uint32_t)nranks;
  float l_rank, w_rank[B * T], l_one, w_one[B * T];
  CALL(tkm_agg_loss(NULL, loss + lo * T, mask + lo * T, (size_t)n, T, TKM_AGG_TOKEN_MEAN, &norm, &l_rank));
  CALL(tkm_agg_weights(NULL, mask + lo * T, (size_t)n, T, TKM_AGG_TOKEN_MEAN, &norm, w_rank));
  /* The gradient all-reduce averages over ranks: the loss the optimiser sees is the mean. */
  double l_sum = 0, l_abs = 0;
  float *l_all = xmalloc(sizeof(float) * (size_t)nranks);
  MPI_Allgather(&l_rank, 1, MPI_FLOAT, l_all, 1, MPI_FLOAT, MPI_COMM_WORLD);
  for (int r = 0; r < nranks; r++) {
    l_sum += l_all[r];
    l_abs += fabs(l_all[r]);
  }
  CALL(tkm_agg_loss(NULL, loss, mask, B, T, TKM_AGG_TOKEN_MEAN, NULL, &l_one));
  CALL(tkm_agg_weights(NULL, mask, B, T, TKM_AGG_TOKEN_MEAN, NULL, w_one));
  res->tokens = global;
  /* Each rank's loss is its f64 sum rounded once to f32: the mean of the ranks' losses is within
   * eps32 (sum |L_r| / P + |L|) of the one-process loss. */
  res->loss_err = fabs(l_sum / nranks - l_one);
  res->loss_tol = EPS32 * (l_abs / nranks + fabs(l_one));
  if (!(res->loss_err <= res->loss_tol))
    fail("token-mean loss (mean over ranks) vs one process", -1, -1, l_sum / nranks, l_one, res->loss_tol);
  /* Per-token weights after the average over ranks, w_rank / P, against 1/N_tok: bitwise when
   * P is a power of two (an exact scaling), else within one rounding (1 ulp). */
  int pow2 = (nranks & (nranks - 1)) == 0;
  res->weight_ulps = 0;
  for (int i = 0; i < n * T; i++) {
    float eff = (float)((double)w_rank[i] / nranks);
    double g = ulp_gap(eff, w_one[lo * T + i]);
    if (g > res->weight_ulps) res->weight_ulps = g;
    if (pow2 ? g != 0.0 : g > 1.0)
      fail("token weight / P vs one process", lo + i / T, i % T, eff, w_one[lo * T + i], 0);
  }
  free(l_all);
  free(counts);
  free(displs);
  free(all_ids);
  free(all_m);
}

typedef struct {
  int rounds;
  unsigned long long kept, valid;
  size_t bytes; /* sent per rank by the protocol's all-reduces */
} em_result;

static void check_entropy_mask(em_result *res) {
  /* Entropies of a [B, T] batch with many ties (multiples of 1/8) and ragged valid prefixes. */
  static float ent[B * T];
  static uint8_t mask[B * T], keep[B * T], keep_all[B * T];
  for (int b = 0; b < B; b++) {
    int len = (int)(unit(11000u + (uint64_t)b) * (T + 1));
    for (int t = 0; t < T; t++) {
      mask[b * T + t] = (uint8_t)(t < len);
      ent[b * T + t] = t < len ? floorf((float)(unit(12000u + (uint64_t)(b * T + t)) * 64.0)) / 8.0f : NAN;
    }
  }
  const float rho = 0.2f; /* TRL's top_entropy_quantile: keep the top 20% */
  int lo = B * rank / nranks, hi = B * (rank + 1) / nranks;
  const uint8_t *m = mask + (size_t)lo * T;
  const float *e = ent + (size_t)lo * T;
  size_t rows = (size_t)(hi - lo);

  uint64_t count = 0, total = 0;
  CALL(tkm_valid_count(NULL, m, rows, T, &count));
  MPI_Allreduce(&count, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  res->bytes = sizeof count;
  tkm_entropy_quantile st;
  CALL(tkm_entropy_quantile_init(total, rho, &st));
  uint64_t hist[TKM_RADIX_BINS];
  uint32_t step = 0;
  for (;;) {
    CALL(tkm_entropy_quantile_step(&st, &step));
    if (step == TKM_QUANTILE_STEP_HISTOGRAM) {
      CALL(tkm_entropy_quantile_local_histogram(&st, NULL, m, e, rows, T, hist));
      MPI_Allreduce(MPI_IN_PLACE, hist, TKM_RADIX_BINS, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
      CALL(tkm_entropy_quantile_push_histogram(&st, hist));
      res->rounds++;
      res->bytes += sizeof hist;
    } else if (step == TKM_QUANTILE_STEP_MIN_ABOVE) {
      float local = 0.0f;
      CALL(tkm_entropy_quantile_local_min_above(&st, NULL, m, e, rows, T, &local));
      MPI_Allreduce(MPI_IN_PLACE, &local, 1, MPI_FLOAT, MPI_MIN, MPI_COMM_WORLD);
      CALL(tkm_entropy_quantile_push_min_above(&st, local));
      res->bytes += sizeof local;
    } else {
      break;
    }
  }
  uint32_t has = 0, has_all = 0;
  float theta = 0.0f, theta_all = 0.0f;
  CALL(tkm_entropy_quantile_threshold(&st, &has, &theta));
  uint64_t kept = 0, kept_all = 0;
  CALL(tkm_top_entropy_mask(NULL, m, e, rows, T, has, theta, keep, &kept));

  /* One process on the whole batch. */
  CALL(tkm_top_entropy_threshold(NULL, mask, ent, B, T, rho, &has_all, &theta_all));
  CALL(tkm_top_entropy_mask(NULL, mask, ent, B, T, has_all, theta_all, keep_all, &kept_all));
  if (has != has_all || memcmp(&theta, &theta_all, sizeof theta) != 0)
    fail("entropy quantile threshold across ranks vs one process (bitwise)", -1, -1, theta, theta_all, 0);
  if (memcmp(keep, keep_all + (size_t)lo * T, rows * T) != 0)
    fail("top-entropy keep mask of this rank vs one process (bitwise)", lo, -1, 0, 0, 0);
  unsigned long long kept_sum = kept;
  MPI_Allreduce(MPI_IN_PLACE, &kept_sum, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (kept_sum != kept_all) fail("kept tokens summed over ranks vs one process", -1, -1, (double)kept_sum, (double)kept_all, 0);
  res->kept = kept_sum;
  res->valid = total;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nranks);
  if (nranks > (V + TKM_LOGITS_BLOCK - 1) / TKM_LOGITS_BLOCK || nranks > B) {
    if (rank == 0) fprintf(stderr, "at most %d ranks\n", B);
    MPI_Finalize();
    return 2;
  }

  vp_result vp[2];
  memset(vp, 0, sizeof vp);
  check_vocab_parallel(TKM_DTYPE_F32, &vp[0]);
  check_vocab_parallel(TKM_DTYPE_BF16, &vp[1]);
  dp_result dp;
  memset(&dp, 0, sizeof dp);
  check_data_parallel(&dp);
  em_result em;
  memset(&em, 0, sizeof em);
  check_entropy_mask(&em);

  /* The worst figures over the ranks, and the failure count. */
  double worst[8] = {vp[0].stats_ratio, vp[1].stats_ratio, vp[0].grad_ratio, vp[1].grad_ratio, vp[0].diff, vp[1].diff,
                     dp.max_split_ulps, dp.weight_ulps};
  double merge[4] = {vp[0].merge_ns_aligned, vp[1].merge_ns_aligned, vp[0].merge_ns_any, vp[1].merge_ns_any};
  int all_failures = 0;
  MPI_Allreduce(MPI_IN_PLACE, worst, 8, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, merge, 4, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(&failures, &all_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);

  if (rank == 0) {
    const char *verdict = all_failures ? "FAILED" : "ok";
    size_t recv_a = vp[0].sent_aligned * (size_t)nranks, recv_s = vp[0].sent_any * (size_t)nranks;
    printf("tokenmath %s over MPI: %d ranks, V = %d, %d rows, block %d\n\n", tkm_version(), nranks, V, ROWS,
           TKM_LOGITS_BLOCK);
    printf("%-58s %-22s %s\n", "check", "f32 logits", "bf16 logits");
    printf("%-58s %-22s %s\n", "vocab-parallel, block-aligned shards: statistics", "bitwise", "bitwise");
    printf("%-58s %-22s %s\n", "  gradient slice of every rank", "bitwise", "bitwise");
    printf("%-58s %-22s %s\n", "vocab-parallel, shards cut anywhere: gradient slices",
           "bitwise*", "bitwise*");
    printf("%-58s max %.2f of tol%8s max %.2f of tol\n", "  statistics vs f64 (sharded_stats_tolerance)", worst[0], "",
           worst[1]);
    printf("%-58s max %.2f of tol%8s max %.2f of tol\n", "  gradient vs f64 (grad_tolerance)", worst[2], "", worst[3]);
    printf("%-58s max |d| %-8.2g%6s max |d| %.2g\n", "  lse/entropy/logp vs one process", worst[4], "", worst[5]);
    printf("  (* against the one-process backward given the same merged statistics)\n\n");
    printf("%-58s %s\n", "data-parallel GRPO (verl loop), groups on one rank", "bitwise");
    printf("%-58s %s\n", "  every group vs one process in the library's merge order", "bitwise");
    printf("%-58s %d of %d groups split, max %.0f ulp\n", "  split groups vs one unsplit call", dp.split_groups,
           dp.groups, worst[6]);
    printf("%-58s %llu, exact\n", "token-mean normaliser N_tok (MPI_Allreduce)", dp.tokens);
    printf("%-58s %s (%.0f ulp)\n", "  token weight w/P vs one process 1/N_tok",
           (nranks & (nranks - 1)) == 0 ? "bitwise" : "within 1 ulp", worst[7]);
    printf("%-58s |d| = %.2g <= %.2g\n\n", "  mean of the ranks' losses vs one process", dp.loss_err, dp.loss_tol);
    printf("%-58s bitwise (%d histogram rounds, %zu B per rank)\n", "top-entropy quantile threshold (rho = 0.2) across ranks",
           em.rounds, em.bytes);
    printf("%-58s bitwise, %llu of %llu valid tokens kept\n\n", "  every rank's keep mask vs one process", em.kept, em.valid);
    printf("cost per row (V = %d, %d ranks)            sent per rank  received per rank  vs logits row bf16 / f32\n", V,
           nranks);
    printf("  block partials (bitwise)                      %6zu B       %6zu B           %.0fx / %.0fx\n",
           vp[0].sent_aligned, recv_a, (double)V * 2 / (double)recv_a, (double)V * 4 / (double)recv_a);
    printf("  shard partials (any cut)                      %6zu B       %6zu B           %.0fx / %.0fx\n",
           vp[0].sent_any, recv_s, (double)V * 2 / (double)recv_s, (double)V * 4 / (double)recv_s);
    printf("  merge + finalize per row (CPU time): block partials %.0f ns (f32 run) / %.0f ns (bf16 run),"
           " shard partials %.0f / %.0f ns\n",
           merge[0], merge[1], merge[2], merge[3]);
    printf("\n%s: %d mismatches\n", verdict, all_failures);
  }
  MPI_Finalize();
  return all_failures ? 1 : 0;
}
