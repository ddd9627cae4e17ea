/*
 * Plain-C test of the tokenmath C ABI: calls every entry point in include/tokenmath.h and
 * provokes every error status reachable from C. Built with -std=c11 -Wall -Wextra
 * -Wpedantic -Werror against the installed library (shared and static) by
 * scripts/check-ffi.sh. Exit status 0 = all checks passed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenmath.h"

/* The forward's input (tkm_logits_input) as a compound literal: every field after struct_size, in
 * order (dtype, logits, rows, vocab, row_stride, targets, row_mask, temperature, temperatures). */
#define FWD_IN(...) (&(tkm_logits_input){sizeof(tkm_logits_input), __VA_ARGS__})

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                              \
  do {                                                                           \
    checks++;                                                                    \
    if (!(cond)) {                                                               \
      failures++;                                                                \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
    }                                                                            \
  } while (0)

#define EXPECT(call, want)                                                       \
  do {                                                                           \
    tkm_status got_ = (call);                                                    \
    checks++;                                                                    \
    if (got_ != (tkm_status)(want)) {                                            \
      failures++;                                                                \
      fprintf(stderr, "%s:%d: %s returned %u (%s), expected %s\n", __FILE__,     \
              __LINE__, #call, (unsigned)got_, tkm_status_str(got_), #want);     \
    }                                                                            \
  } while (0)

/* Statuses seen returned by a call (index = code), to prove every one is reachable. */
static int seen[256];
static tkm_status note(tkm_status s) {
  if (s < 256) seen[s] = 1;
  return s;
}

#define ROWS 6
#define VOCAB 300
#define STRIDE 304
#define POISON (-12345.0f)

static uint64_t rng = 0x12345678u;
static float frand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

static uint16_t f32_to_bf16_bits(float f) { /* round to nearest even; inputs are finite */
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static void poison(float *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = POISON;
}
static int untouched(const float *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != POISON) return 0;
  return 1;
}

static float x[ROWS * STRIDE];
static int32_t targets[ROWS] = {3, 299, -100, 0, 150, 42};
static uint8_t row_mask[ROWS] = {1, 1, 1, 0, 1, 1};

static void test_version_and_status(void) {
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", TKM_VERSION_MAJOR, TKM_VERSION_MINOR, TKM_VERSION_PATCH);
  CHECK(strcmp(tkm_version(), want) == 0);
  CHECK(strcmp(tkm_status_str(TKM_STATUS_OK), "ok") == 0);
  CHECK(strcmp(tkm_status_str(12345u), "unknown status") == 0);
  CHECK(strstr(tkm_status_str(TKM_STATUS_INTERNAL_PANIC), "panic") != NULL);
  for (unsigned s = 0; s <= TKM_STATUS_DEVICE_MISMATCH; s++) CHECK(strcmp(tkm_status_str(s), "unknown status") != 0);
}

static void test_exec_options(void) {
  tkm_exec_options o;
  EXPECT(note(tkm_exec_options_init(NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_exec_options_init(&o), TKM_STATUS_OK);
  CHECK(o.struct_size == sizeof(tkm_exec_options));
  CHECK(o.threads == 1 && o.backend == TKM_BACKEND_AUTO);
  CHECK(o.cuda_stream == NULL && o.gpu_mode == TKM_GPU_MODE_CANONICAL);
}

/* Naive double-precision reference of one row. */
static void reference_row(const float *row, int32_t target, double *lse, double *ent, double *logp) {
  double m = -INFINITY, s = 0, ez = 0;
  for (int v = 0; v < VOCAB; v++) m = row[v] > m ? row[v] : m;
  for (int v = 0; v < VOCAB; v++) s += exp(row[v] - m);
  *lse = m + log(s);
  for (int v = 0; v < VOCAB; v++) ez += exp(row[v] - *lse) * row[v];
  *ent = *lse - ez;
  *logp = target >= 0 ? row[target] - *lse : 0.0;
}

static void fwd(const tkm_exec_options *o, float *lse, float *ent, float *logp, float *mx, float *ls,
                size_t *nonfinite) {
  EXPECT(tkm_logits_fwd(o, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f, NULL), lse, ent, logp,
                        mx, ls, nonfinite),
         TKM_STATUS_OK);
}

static void test_logits(void) {
  float lse[ROWS], ent[ROWS], logp[ROWS], mx[ROWS], ls[ROWS];
  float lse4[ROWS], ent4[ROWS], logp4[ROWS], mx4[ROWS], ls4[ROWS];
  size_t nonfinite = 99;
  tkm_exec_options o1, o4;
  tkm_exec_options_init(&o1);
  tkm_exec_options_init(&o4);
  o4.threads = 4;
  fwd(&o1, lse, ent, logp, mx, ls, &nonfinite);
  CHECK(nonfinite == 0);
  fwd(&o4, lse4, ent4, logp4, mx4, ls4, NULL);
  CHECK(memcmp(lse, lse4, sizeof lse) == 0 && memcmp(ent, ent4, sizeof ent) == 0);
  CHECK(memcmp(logp, logp4, sizeof logp) == 0 && memcmp(mx, mx4, sizeof mx) == 0 && memcmp(ls, ls4, sizeof ls) == 0);
  for (int r = 0; r < ROWS; r++) {
    double l, h, lp;
    if (!row_mask[r]) {
      CHECK(lse[r] == 0.0f && ent[r] == 0.0f && logp[r] == 0.0f);
      continue;
    }
    reference_row(x + r * STRIDE, targets[r], &l, &h, &lp);
    CHECK(fabs(lse[r] - l) < 1e-5 * fabs(l) + 1e-5);
    CHECK(fabs(ent[r] - h) < 1e-4);
    CHECK(fabs(logp[r] - lp) < 1e-4);
  }

  /* Portable backend: same bits. AVX2: same bits, or unavailable on this CPU. */
  {
    tkm_exec_options p;
    float l2[ROWS], e2[ROWS];
    tkm_exec_options_init(&p);
    p.backend = TKM_BACKEND_PORTABLE;
    EXPECT(tkm_logits_fwd(&p, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f, NULL), l2, e2, NULL,
                          NULL, NULL, NULL),
           TKM_STATUS_OK);
    CHECK(memcmp(l2, lse, sizeof l2) == 0 && memcmp(e2, ent, sizeof e2) == 0);
    p.backend = TKM_BACKEND_AVX2_FMA;
    tkm_status s = note(tkm_logits_fwd(&p, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f, NULL),
                                       l2, e2, NULL, NULL, NULL, NULL));
    CHECK(s == TKM_STATUS_OK || s == TKM_STATUS_BACKEND_UNAVAILABLE);
    if (s == TKM_STATUS_OK) CHECK(memcmp(l2, lse, sizeof l2) == 0);
    /* Reachable only on a CPU without AVX2+FMA+F16C. */
    seen[TKM_STATUS_BACKEND_UNAVAILABLE] = 1;
    p.backend = 77;
    EXPECT(note(tkm_logits_fwd(&p, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL), l2, e2, NULL,
                               NULL, NULL, NULL)),
           TKM_STATUS_INVALID_ARGUMENT);
    p.backend = TKM_BACKEND_AUTO;
    p.struct_size = 3;
    EXPECT(note(tkm_logits_fwd(&p, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL), l2, e2, NULL,
                               NULL, NULL, NULL)),
           TKM_STATUS_BAD_STRUCT_SIZE);
  }

  /* bf16 logits as uint16_t bits and per-row temperatures. */
  {
    static uint16_t xb[ROWS * STRIDE];
    float temps[ROWS] = {1.0f, 0.7f, 1.3f, 1.0f, 2.0f, 0.5f};
    float lb[ROWS], eb[ROWS];
    for (int i = 0; i < ROWS * STRIDE; i++) xb[i] = f32_to_bf16_bits(x[i]);
    EXPECT(tkm_logits_fwd(&o4, FWD_IN(TKM_DTYPE_BF16, xb, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f, temps), lb, eb, NULL,
                          NULL, NULL, NULL),
           TKM_STATUS_OK);
    for (int r = 0; r < ROWS; r++) CHECK(!row_mask[r] || (isfinite(lb[r]) && eb[r] >= 0.0f));
    EXPECT(tkm_logits_fwd(&o4, FWD_IN(TKM_DTYPE_F16, xb, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL), lb, eb, NULL, NULL, NULL,
                          NULL),
           TKM_STATUS_OK);
  }

  /* Backward into a strided f32 dx, checked against the softmax; then in place. */
  {
    static float dx[ROWS * STRIDE];
    static float xi[ROWS * STRIDE];
    float g_logp[ROWS], g_ent[ROWS];
    for (int r = 0; r < ROWS; r++) {
      g_logp[r] = -1.0f;
      g_ent[r] = 0.0f;
    }
    for (int i = 0; i < ROWS * STRIDE; i++) dx[i] = 7.0f;
    EXPECT(tkm_logits_bwd(&o4, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f, NULL, mx, ls, ent, g_logp,
                          g_ent, NULL, TKM_DTYPE_F32, dx, STRIDE),
           TKM_STATUS_OK);
    for (int r = 0; r < ROWS; r++) {
      for (int v = 0; v < VOCAB; v++) {
        double p = exp(x[r * STRIDE + v] - lse[r]);
        double want = row_mask[r] ? p * 1.0 - (v == targets[r] ? 1.0 : 0.0) : 0.0;
        if (row_mask[r] && targets[r] < 0) want = 0.0; /* no target: g_logp ignored */
        CHECK(fabs(dx[r * STRIDE + v] - want) < 1e-5);
      }
      for (int v = VOCAB; v < STRIDE; v++) CHECK(dx[r * STRIDE + v] == 7.0f);
    }
    memcpy(xi, x, sizeof x);
    EXPECT(tkm_logits_bwd_inplace(&o1, TKM_DTYPE_F32, xi, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f, NULL, mx, ls, ent,
                                  g_logp, g_ent, NULL),
           TKM_STATUS_OK);
    for (int r = 0; r < ROWS; r++) CHECK(memcmp(xi + r * STRIDE, dx + r * STRIDE, VOCAB * sizeof(float)) == 0);
    /* dx == logits is refused (use the in-place call). */
    EXPECT(note(tkm_logits_bwd(&o1, TKM_DTYPE_F32, xi, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL, mx, ls, ent, NULL,
                               NULL, NULL, TKM_DTYPE_F32, xi, STRIDE)),
           TKM_STATUS_OVERLAP);
    EXPECT(note(tkm_logits_bwd(&o1, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL, mx, ls, ent, NULL, NULL,
                               NULL, 0, dx, STRIDE)),
           TKM_STATUS_BAD_DTYPE);
    EXPECT(note(tkm_logits_bwd_inplace(&o1, TKM_DTYPE_F32, xi, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL, NULL, ls, ent,
                                       NULL, NULL, NULL)),
           TKM_STATUS_NULL_POINTER);
  }

  /* Vocabulary shards: per-block partials of [0, 2048) and [2048, V2) merge bitwise. */
  {
    enum { V2 = 2048 + 500, R2 = 3 };
    static float xs[R2 * V2];
    int32_t t2[R2] = {5, 2100, -1};
    float l_full[R2], e_full[R2], p_full[R2], l_m[R2], e_m[R2], p_m[R2];
    size_t b0 = tkm_logits_partial_blocks_len(2048), b1 = tkm_logits_partial_blocks_len(V2 - 2048);
    tkm_row_stats part0[R2 * 1], part1[R2 * 1], merged[R2], sh0[R2], sh1[R2];
    for (int i = 0; i < R2 * V2; i++) xs[i] = 4.0f * frand();
    CHECK(b0 == 1 && b1 == 1 && tkm_logits_partial_blocks_len(4097) == 3);
    EXPECT(tkm_logits_fwd(NULL, FWD_IN(TKM_DTYPE_F32, xs, R2, V2, V2, t2, NULL, 1.0f, NULL), l_full, e_full, p_full, NULL, NULL,
                          NULL),
           TKM_STATUS_OK);
    EXPECT(tkm_logits_partial_blocks(NULL, TKM_DTYPE_F32, xs, R2, 2048, V2, 0, V2, t2, NULL, 1.0f, NULL, part0),
           TKM_STATUS_OK);
    EXPECT(tkm_logits_partial_blocks(NULL, TKM_DTYPE_F32, xs + 2048, R2, V2 - 2048, V2, 2048, V2, t2, NULL, 1.0f,
                                     NULL, part1),
           TKM_STATUS_OK);
    {
      const tkm_row_stats *parts[2] = {part0, part1};
      size_t blocks[2] = {b0, b1};
      EXPECT(tkm_logits_merge_block_partials(parts, blocks, 2, R2, merged), TKM_STATUS_OK);
    }
    EXPECT(tkm_logits_finalize(merged, R2, t2, NULL, l_m, e_m, p_m, NULL, NULL, NULL), TKM_STATUS_OK);
    CHECK(memcmp(l_m, l_full, sizeof l_m) == 0 && memcmp(e_m, e_full, sizeof e_m) == 0);
    CHECK(memcmp(p_m, p_full, sizeof p_m) == 0);

    EXPECT(tkm_logits_partial(NULL, TKM_DTYPE_F32, xs, R2, 2048, V2, 0, V2, t2, NULL, 1.0f, NULL, sh0), TKM_STATUS_OK);
    EXPECT(tkm_logits_partial(NULL, TKM_DTYPE_F32, xs + 2048, R2, V2 - 2048, V2, 2048, V2, t2, NULL, 1.0f, NULL, sh1),
           TKM_STATUS_OK);
    {
      const tkm_row_stats *parts[2] = {sh0, sh1};
      const tkm_row_stats *dup[2] = {sh0, sh0};
      EXPECT(tkm_logits_merge_shards(parts, 2, R2, merged), TKM_STATUS_OK);
      EXPECT(tkm_logits_finalize(merged, R2, t2, NULL, l_m, e_m, NULL, NULL, NULL, NULL), TKM_STATUS_OK);
      for (int r = 0; r < R2; r++) CHECK(fabsf(l_m[r] - l_full[r]) <= 1e-5f * fabsf(l_full[r]) + 1e-6f);
      EXPECT(note(tkm_logits_merge_shards(dup, 2, R2, merged)), TKM_STATUS_DUPLICATE_TARGET);
    }
    poison(l_m, R2);
    poison(e_m, R2);
    EXPECT(note(tkm_logits_finalize(sh1, R2, t2, NULL, l_m, e_m, NULL, NULL, NULL, NULL)), TKM_STATUS_MISSING_TARGET);
    CHECK(untouched(l_m, R2) && untouched(e_m, R2));
    EXPECT(note(tkm_logits_partial(NULL, TKM_DTYPE_F32, xs, R2, 600, V2, 2000, V2, NULL, NULL, 1.0f, NULL, sh0)),
           TKM_STATUS_SHARD_OUT_OF_RANGE);
    EXPECT(note(tkm_logits_partial_blocks(NULL, TKM_DTYPE_F32, xs, R2, 100, V2, 10, V2, NULL, NULL, 1.0f, NULL, sh0)),
           TKM_STATUS_INVALID_ARGUMENT);

    /* The backward of each shard (cut at 1000, unaligned) with the full statistics is the
     * slice of the unsharded backward, bit for bit; row 1's target lies in the second shard. */
    {
      static float d_full[R2 * V2], d_sh[R2 * V2];
      float mx2[R2], ls2[R2], g2[R2] = {-1.0f, -0.5f, -1.0f};
      EXPECT(tkm_logits_fwd(NULL, FWD_IN(TKM_DTYPE_F32, xs, R2, V2, V2, t2, NULL, 1.0f, NULL), l_full, e_full, p_full, mx2,
                            ls2, NULL),
             TKM_STATUS_OK);
      EXPECT(tkm_logits_bwd(NULL, TKM_DTYPE_F32, xs, R2, V2, V2, t2, NULL, 1.0f, NULL, mx2, ls2, e_full, g2, NULL, NULL,
                            TKM_DTYPE_F32, d_full, V2),
             TKM_STATUS_OK);
      EXPECT(tkm_logits_bwd_shard(NULL, TKM_DTYPE_F32, xs, R2, 1000, V2, 0, V2, t2, NULL, 1.0f, NULL, mx2, ls2, e_full, g2,
                                  NULL, NULL, TKM_DTYPE_F32, d_sh, V2),
             TKM_STATUS_OK);
      EXPECT(tkm_logits_bwd_shard(NULL, TKM_DTYPE_F32, xs + 1000, R2, V2 - 1000, V2, 1000, V2, t2, NULL, 1.0f, NULL, mx2,
                                  ls2, e_full, g2, NULL, NULL, TKM_DTYPE_F32, d_sh + 1000, V2),
             TKM_STATUS_OK);
      CHECK(memcmp(d_sh, d_full, sizeof d_full) == 0);
      poison(d_sh, R2 * V2);
      EXPECT(note(tkm_logits_bwd_shard(NULL, TKM_DTYPE_F32, xs, R2, 600, V2, 2000, V2, t2, NULL, 1.0f, NULL, mx2, ls2,
                                       e_full, g2, NULL, NULL, TKM_DTYPE_F32, d_sh, V2)),
             TKM_STATUS_SHARD_OUT_OF_RANGE);
      CHECK(untouched(d_sh, R2 * V2));
    }
  }
}

static void test_logits_errors(void) {
  float lse[ROWS], ent[ROWS], logp[ROWS];
  int32_t bad_targets[ROWS] = {0, 0, 0, 0, 0, VOCAB};
  float bad_temps[ROWS] = {1, 1, 0.0f, 1, 1, 1};
  static float neg_inf[2 * VOCAB];
  poison(lse, ROWS);
  poison(ent, ROWS);
  poison(logp, ROWS);
#define FWD(...) note(tkm_logits_fwd(__VA_ARGS__))
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, NULL, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL), lse, ent, NULL, NULL, NULL, NULL),
         TKM_STATUS_NULL_POINTER);
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL), NULL, ent, NULL, NULL, NULL, NULL),
         TKM_STATUS_NULL_POINTER);
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL), lse, ent, logp, NULL, NULL, NULL),
         TKM_STATUS_INVALID_ARGUMENT); /* logp needs targets */
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, (const char *)x + 1, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL), lse, ent, NULL,
             NULL, NULL, NULL),
         TKM_STATUS_MISALIGNED);
  EXPECT(FWD(NULL, FWD_IN(0, x, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL), lse, ent, NULL, NULL, NULL, NULL),
         TKM_STATUS_BAD_DTYPE);
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, VOCAB - 1, NULL, NULL, 1.0f, NULL), lse, ent, NULL, NULL, NULL, NULL),
         TKM_STATUS_BAD_STRIDE);
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, x, SIZE_MAX / 2, VOCAB, STRIDE, NULL, NULL, 1.0f, NULL), lse, ent, NULL, NULL, NULL, NULL),
         TKM_STATUS_SIZE_OVERFLOW);
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, x, ROWS, 0, STRIDE, NULL, NULL, 1.0f, NULL), lse, ent, NULL, NULL, NULL, NULL),
         TKM_STATUS_EMPTY_VOCAB);
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, bad_targets, NULL, 1.0f, NULL), lse, ent, logp, NULL, NULL, NULL),
         TKM_STATUS_LABEL_OUT_OF_RANGE);
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, NULL, NULL, -1.0f, NULL), lse, ent, NULL, NULL, NULL, NULL),
         TKM_STATUS_INVALID_TEMPERATURE);
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, NULL, NULL, 1.0f, bad_temps), lse, ent, NULL, NULL, NULL, NULL),
         TKM_STATUS_INVALID_TEMPERATURE);
  /* The second row is all -inf: found mid-pass, yet row 0's outputs are not written. */
  for (int i = 0; i < VOCAB; i++) {
    neg_inf[i] = (float)i;
    neg_inf[VOCAB + i] = -INFINITY;
  }
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, neg_inf, 2, VOCAB, VOCAB, NULL, NULL, 1.0f, NULL), lse, ent, NULL, NULL, NULL, NULL),
         TKM_STATUS_NO_FINITE_LOGIT);
#if SIZE_MAX > 0xFFFFFFFFu
  /* 2^60 rows: the scratch allocation fails before any logit is read. */
  EXPECT(FWD(NULL, FWD_IN(TKM_DTYPE_F32, x, (size_t)1 << 60, 1, 1, NULL, NULL, 1.0f, NULL), lse, ent, NULL, NULL, NULL, NULL),
         TKM_STATUS_OUT_OF_MEMORY);
#else
  seen[TKM_STATUS_OUT_OF_MEMORY] = 1;
#endif
#undef FWD
  CHECK(untouched(lse, ROWS) && untouched(ent, ROWS) && untouched(logp, ROWS));
  /* Zero rows: NULL arrays are allowed. */
  EXPECT(tkm_logits_fwd(NULL, FWD_IN(TKM_DTYPE_F32, NULL, 0, VOCAB, VOCAB, NULL, NULL, 1.0f, NULL), NULL, NULL, NULL, NULL, NULL,
                        NULL),
         TKM_STATUS_OK);
}

static void test_advantages(void) {
  /* Two groups of 4 (contiguous) = ids {7,7,7,7,9,9,9,9}. */
  float r[8] = {1, 0, 0, 1, 0.5f, 0.5f, 0.5f, 0.5f};
  uint32_t ids[8] = {7, 9, 7, 9, 7, 9, 7, 9};
  float rr[8] = {1, 0.5f, 0, 0.5f, 0, 0.5f, 1, 0.5f}; /* same groups, interleaved */
  float a[8], b[8], bad[8];
  tkm_grpo_options o;
  EXPECT(note(tkm_grpo_options_init(NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_grpo_options_init(&o), TKM_STATUS_OK);
  CHECK(o.struct_size == sizeof o && o.flavor == TKM_GRPO_STANDARD && o.norm_by_std == 1 && o.eps == 1e-6f);
  EXPECT(tkm_grpo_advantage(r, 8, NULL, 4, &o, a), TKM_STATUS_OK);
  /* policy.md worked example: R = [1,0,0,1] -> +-0.8660239 (verl eps); equal rewards -> exactly 0. */
  CHECK(fabsf(a[0] - 0.8660239f) < 1e-6f && fabsf(a[1] + 0.8660239f) < 1e-6f);
  CHECK(a[4] == 0.0f && a[7] == 0.0f);
  EXPECT(tkm_grpo_advantage(rr, 8, ids, 0, NULL, b), TKM_STATUS_OK);
  CHECK(b[0] == a[0] && b[2] == a[1] && b[1] == 0.0f);
  o.flavor = TKM_GRPO_TRL;
  o.eps = 1e-4f;
  o.nan_policy = TKM_NAN_IGNORE_AND_ZERO;
  EXPECT(tkm_grpo_advantage(r, 8, NULL, 4, &o, b), TKM_STATUS_OK);
  CHECK(fabsf(b[0] - 0.8658754f) < 1e-6f);
  EXPECT(note(tkm_grpo_advantage(r, 8, ids, 0, &o, b)), TKM_STATUS_INVALID_ARGUMENT); /* TRL needs contiguous */
  EXPECT(tkm_dr_grpo_advantage(r, 8, NULL, 4, b), TKM_STATUS_OK);
  CHECK(b[0] == 0.5f && b[1] == -0.5f);
  EXPECT(tkm_rloo_advantage(r, 8, NULL, 4, TKM_RLOO_STANDARD, b), TKM_STATUS_OK);
  CHECK(fabsf(b[0] - (1.0f - 1.0f / 3.0f)) < 1e-6f);
  EXPECT(tkm_rloo_advantage(r, 8, NULL, 4, TKM_RLOO_TRL_NORMALIZED, b), TKM_STATUS_OK);
  EXPECT(note(tkm_rloo_advantage(r, 8, NULL, 4, 42, b)), TKM_STATUS_INVALID_ARGUMENT);
  memcpy(bad, r, sizeof r);
  bad[2] = NAN;
  poison(b, 8);
  EXPECT(note(tkm_grpo_advantage(bad, 8, NULL, 4, NULL, b)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_rloo_advantage(bad, 8, NULL, 4, TKM_RLOO_STANDARD, b)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_dr_grpo_advantage(bad, 8, NULL, 4, b)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_grpo_advantage(r, 8, NULL, 3, NULL, b)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_grpo_advantage(NULL, 8, NULL, 4, NULL, b)), TKM_STATUS_NULL_POINTER);
  CHECK(untouched(b, 8));
  /* An options struct from a "newer header" with a nonzero unknown field. */
  {
    struct {
      tkm_grpo_options base;
      uint64_t extra;
    } newer;
    tkm_grpo_options_init(&newer.base);
    newer.base.struct_size = sizeof newer;
    newer.extra = 0;
    EXPECT(tkm_grpo_advantage(r, 8, NULL, 4, &newer.base, b), TKM_STATUS_OK);
    newer.extra = 5;
    EXPECT(note(tkm_grpo_advantage(r, 8, NULL, 4, &newer.base, b)), TKM_STATUS_BAD_STRUCT_SIZE);
  }
  /* Data parallel: rows 0..4 on one "rank", 5..7 on another; each computes its group moments,
   * the tables are concatenated in rank order and merged, then each rank's advantages. */
  {
    uint32_t t_ids[16], m_ids[8];
    tkm_moments t_m[16], merged[8];
    size_t k0 = 0, k1 = 0, k = 0;
    float whole[8], part[8];
    EXPECT(tkm_group_moments(rr, 5, ids, 0, NULL, t_ids, t_m, 8, &k0), TKM_STATUS_OK);
    EXPECT(tkm_group_moments(rr + 5, 3, ids + 5, 0, NULL, t_ids + k0, t_m + k0, 8, &k1), TKM_STATUS_OK);
    CHECK(k0 == 2 && k1 == 2 && t_ids[0] == 7 && t_ids[1] == 9 && t_m[0].n == 3.0);
    EXPECT(tkm_group_moments_merge(t_ids, t_m, k0 + k1, m_ids, merged, 8, &k), TKM_STATUS_OK);
    CHECK(k == 2 && m_ids[0] == 7 && merged[0].n == 4.0 && fabs(merged[0].mean - 0.5) < 1e-15 && merged[1].m2 == 0.0);
    EXPECT(tkm_grpo_advantage(rr, 8, ids, 0, NULL, whole), TKM_STATUS_OK);
    EXPECT(tkm_grpo_advantage_from_moments(rr, 5, ids, m_ids, merged, k, NULL, part), TKM_STATUS_OK);
    EXPECT(tkm_grpo_advantage_from_moments(rr + 5, 3, ids + 5, m_ids, merged, k, NULL, part + 5), TKM_STATUS_OK);
    for (int i = 0; i < 8; i++) CHECK(fabsf(part[i] - whole[i]) <= 1e-6f);
    /* Errors: a table too small for K, an invalid entry, an id missing from the table. */
    k = 99;
    EXPECT(note(tkm_group_moments(rr, 8, ids, 0, NULL, t_ids, t_m, 1, &k)), TKM_STATUS_LENGTH_MISMATCH);
    EXPECT(note(tkm_group_moments_merge(t_ids, t_m, k0 + k1, m_ids, merged, 1, &k)), TKM_STATUS_LENGTH_MISMATCH);
    CHECK(k == 99);
    t_m[1].m2 = -1.0;
    EXPECT(note(tkm_group_moments_merge(t_ids, t_m, k0 + k1, m_ids, merged, 8, &k)), TKM_STATUS_INVALID_ARGUMENT);
    poison(part, 8);
    EXPECT(note(tkm_grpo_advantage_from_moments(rr, 8, ids, m_ids, merged, 1, NULL, part)), TKM_STATUS_INVALID_ARGUMENT);
    CHECK(untouched(part, 8) && k == 99);
  }
  {
    uint8_t mask[8 * 3];
    float tok[8 * 3];
    for (int i = 0; i < 24; i++) mask[i] = (uint8_t)(i % 3 != 2);
    EXPECT(tkm_broadcast_masked(a, 8, mask, 3, tok), TKM_STATUS_OK);
    CHECK(tok[0] == a[0] && tok[1] == a[0] && tok[2] == 0.0f && tok[3] == a[1]);
    EXPECT(note(tkm_broadcast_masked(a, SIZE_MAX, mask, 2, tok)), TKM_STATUS_SIZE_OVERFLOW);
  }
}

/* REINFORCE++, returns-to-go, GAE, whitening, DAPO extras. */
static void test_advantages_tokens(void) {
  enum { AR = 2, AT = 4, AN = AR * AT };
  float r[AN] = {0, 0, 1, 0, 0, 0.5f, 0, 0};
  float v[AN] = {0.1f, 0.2f, 0.3f, 0, 0.5f, 0.4f, 0.3f, 0.2f};
  uint8_t mask[AN] = {1, 1, 1, 0, 1, 1, 0, 0};
  float g[AN], a[AN], ret[AN], w[AN], seq[AR] = {1.0f, 0.0f}, pen = 0.0f;
  uint8_t keep[4] = {9, 9, 9, 9};
  size_t kept = 0;
  tkm_overlong_options oo;
  double sum = 0, sq = 0;
  EXPECT(tkm_returns_to_go(r, mask, AR, AT, 0.5f, g), TKM_STATUS_OK);
  CHECK(g[2] == 1.0f && g[1] == 0.5f && g[0] == 0.25f && g[5] == 0.5f && g[4] == 0.25f);
  EXPECT(note(tkm_returns_to_go(r, mask, AR, AT, -1.0f, g)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(tkm_reinforce_pp_advantage(r, mask, AR, AT, 0.5f, TKM_COMPAT_LIBRARY, a, ret), TKM_STATUS_OK);
  CHECK(memcmp(ret, g, sizeof g) == 0 && a[3] == 0.0f);
  for (int i = 0; i < AN; i++) sum += mask[i] ? a[i] : 0.0;
  CHECK(fabs(sum) < 1e-5); /* whitened: zero mean over the valid tokens */
  EXPECT(tkm_reinforce_pp_advantage(r, mask, AR, AT, 0.5f, TKM_COMPAT_VERL, a, NULL), TKM_STATUS_OK);
  EXPECT(note(tkm_reinforce_pp_advantage(r, mask, AR, AT, 0.5f, 7, a, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(tkm_reinforce_pp_baseline_advantage(seq, AR, NULL, 2, mask, AT, TKM_SINGLETON_ZERO, TKM_COMPAT_LIBRARY, a),
         TKM_STATUS_OK);
  CHECK(a[0] > 0.0f && a[0] == a[1] && a[4] < 0.0f && a[3] == 0.0f);
  EXPECT(note(tkm_reinforce_pp_baseline_advantage(seq, AR, NULL, 3, mask, AT, 0, 0, a)), TKM_STATUS_INVALID_ARGUMENT);
  /* GAE with gamma = lam = 1 and zero values: returns are the returns-to-go. */
  {
    float zero[AN] = {0};
    EXPECT(tkm_gae(r, zero, mask, AR, AT, 1.0f, 1.0f, TKM_COMPAT_LIBRARY, a, ret), TKM_STATUS_OK);
    CHECK(ret[0] == 1.0f && ret[1] == 1.0f && ret[2] == 1.0f && ret[4] == 0.5f && ret[5] == 0.5f);
  }
  EXPECT(tkm_gae(r, v, mask, AR, AT, 0.99f, 0.95f, TKM_COMPAT_VERL, a, NULL), TKM_STATUS_OK);
  EXPECT(note(tkm_gae(r, v, mask, AR, AT, 0.99f, NAN, TKM_COMPAT_LIBRARY, a, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  /* Whitening: zero mean, unit (unbiased) variance over the valid values, 0 at padding. */
  EXPECT(tkm_masked_whiten(v, mask, AN, 0.0f, TKM_COMPAT_LIBRARY, w), TKM_STATUS_OK);
  sum = 0;
  for (int i = 0; i < AN; i++)
    if (mask[i]) sum += w[i], sq += (double)w[i] * w[i];
  CHECK(fabs(sum) < 1e-5 && fabs(sq / 4.0 - 1.0) < 1e-5 && w[3] == 0.0f);
  EXPECT(note(tkm_masked_whiten(v, mask, AN, -1.0f, TKM_COMPAT_LIBRARY, w)), TKM_STATUS_INVALID_ARGUMENT);
  /* Overlong shaping: max 10, buffer 4 -> 0 up to 6 tokens, -factor at 10. */
  EXPECT(note(tkm_overlong_options_init(NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_overlong_options_init(&oo), TKM_STATUS_OK);
  CHECK(oo.struct_size == sizeof oo && oo.max_len == 20480 && oo.buffer_len == 4096 && oo.penalty_factor == 1.0f);
  oo.max_len = 10;
  oo.buffer_len = 4;
  oo.penalty_factor = 0.5f;
  EXPECT(tkm_overlong_penalty(6, &oo, &pen), TKM_STATUS_OK);
  CHECK(pen == 0.0f);
  EXPECT(tkm_overlong_penalty(10, &oo, &pen), TKM_STATUS_OK);
  CHECK(pen == -0.5f);
  EXPECT(tkm_overlong_shaped_token_rewards(seq, AR, mask, AT, &oo, g), TKM_STATUS_OK);
  CHECK(g[2] == 1.0f && g[0] == 0.0f && g[5] == 0.0f && g[4] == 0.0f);
  oo.buffer_len = 11;
  EXPECT(note(tkm_overlong_penalty(6, &oo, &pen)), TKM_STATUS_INVALID_ARGUMENT);
  /* Dynamic sampling: groups {1,1} (dropped) and {0,1} (kept). */
  {
    float metric[4] = {1, 1, 0, 1};
    EXPECT(tkm_dynamic_sampling_keep(metric, 4, NULL, 2, keep, &kept), TKM_STATUS_OK);
    CHECK(kept == 1 && keep[0] == 0 && keep[1] == 0 && keep[2] == 1 && keep[3] == 1);
    metric[1] = NAN;
    EXPECT(note(tkm_dynamic_sampling_keep(metric, 4, NULL, 2, keep, NULL)), TKM_STATUS_NON_FINITE);
    CHECK(keep[0] == 0 && keep[2] == 1);
  }
}

static void test_fingerprint(void) {
  enum { N = 11 };
  uint8_t leaves[N * TKM_FP_HASH_LEN], root[32], root2[32], old_root[32];
  uint8_t salt[TKM_FP_SALT_LEN] = {0};
  uint8_t proof[32 * 8];
  size_t plen = 0, exact = 0, cap = tkm_fp_max_proof_len(N);
  uint64_t len = 0;
  tkm_fp_tree *tree = NULL;
  CHECK(cap <= 8);
  for (uint32_t i = 0; i < N; i++) {
    float emb[2] = {(float)i, -0.5f};
    EXPECT(tkm_fp_leaf_hash(i, salt, 1000 + i, TKM_FP_KIND_F32_CANONICAL, (const uint8_t *)emb, sizeof emb,
                            leaves + 32 * i),
           TKM_STATUS_OK);
  }
  EXPECT(note(tkm_fp_leaf_hash(0, salt, 1, 200, NULL, 0, root)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_fp_leaf_hash(0, NULL, 1, TKM_FP_KIND_NONE, NULL, 0, root)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_fp_root(leaves, N, root), TKM_STATUS_OK);

  EXPECT(note(tkm_fp_tree_new(NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_fp_tree_new(&tree), TKM_STATUS_OK);
  EXPECT(tkm_fp_tree_append(tree, leaves, 4), TKM_STATUS_OK);
  EXPECT(tkm_fp_tree_append(tree, leaves + 4 * 32, N - 4), TKM_STATUS_OK);
  EXPECT(tkm_fp_tree_len(tree, &len), TKM_STATUS_OK);
  EXPECT(tkm_fp_tree_root(tree, root2), TKM_STATUS_OK);
  CHECK(len == N && memcmp(root, root2, 32) == 0);
  EXPECT(note(tkm_fp_tree_append(NULL, leaves, 1)), TKM_STATUS_NULL_POINTER);
  tkm_fp_tree_free(tree);
  tkm_fp_tree_free(NULL);

  EXPECT(tkm_fp_inclusion_proof_len(6, N, &exact), TKM_STATUS_OK);
  EXPECT(tkm_fp_inclusion_proof(leaves, N, 6, proof, cap, &plen), TKM_STATUS_OK);
  CHECK(plen == exact);
  EXPECT(tkm_fp_verify_inclusion(6, N, leaves + 6 * 32, proof, plen, root), TKM_STATUS_OK);
  EXPECT(note(tkm_fp_verify_inclusion(5, N, leaves + 6 * 32, proof, plen, root)), TKM_STATUS_PROOF_MISMATCH);
  EXPECT(note(tkm_fp_verify_inclusion(6, N, leaves + 6 * 32, proof, plen - 1, root)), TKM_STATUS_PROOF_LENGTH);
  EXPECT(note(tkm_fp_inclusion_proof_len(N, N, &exact)), TKM_STATUS_INDEX_OUT_OF_RANGE);
  EXPECT(note(tkm_fp_inclusion_proof(leaves, N, 6, proof, 1, &plen)), TKM_STATUS_LENGTH_MISMATCH);

  EXPECT(tkm_fp_root(leaves, 5, old_root), TKM_STATUS_OK);
  EXPECT(tkm_fp_consistency_proof(leaves, N, 5, proof, cap, &plen), TKM_STATUS_OK);
  EXPECT(tkm_fp_verify_consistency(5, N, old_root, root, proof, plen), TKM_STATUS_OK);
  EXPECT(note(tkm_fp_verify_consistency(5, N, root, root, proof, plen)), TKM_STATUS_PROOF_MISMATCH);
  EXPECT(note(tkm_fp_verify_consistency(0, N, old_root, root, proof, plen)), TKM_STATUS_INVALID_ARGUMENT);
}


/* Encodings, SimHash, signed heads, audit sampling. */
static void test_fingerprint_more(void) {
  float emb[4] = {0.5f, -0.0f, 1e-40f, -2.0f}, tok[2] = {1.0f, 2.0f};
  uint8_t bytes[64], root[32], digest[32], head[128], seed[32] = {1};
  uint64_t sig[2], grd[2], sig2[2], grd2[2], need = 0;
  size_t len = 0, wrote = 0;
  uint32_t d = 99, acc = 99;
  double p = -1.0;
  tkm_fp_head h;
  EXPECT(tkm_fp_encoded_len(TKM_FP_KIND_F32_CANONICAL, 4, &len), TKM_STATUS_OK);
  CHECK(len == 16);
  EXPECT(tkm_fp_encode(TKM_FP_KIND_F32_CANONICAL, emb, 4, bytes, 16), TKM_STATUS_OK);
  {
    float back[4];
    memcpy(back, bytes, 16); /* little-endian hosts: -0 and subnormals became +0 */
    CHECK(back[0] == 0.5f && back[3] == -2.0f && !signbit(back[1]) && back[2] == 0.0f);
  }
  EXPECT(tkm_fp_encode(TKM_FP_KIND_I8_UNIT, emb, 4, bytes, 4), TKM_STATUS_OK);
  CHECK((int8_t)bytes[3] == -123 && (int8_t)bytes[0] == 31); /* 127 x / ||x||, ||x|| = sqrt(4.25) */
  EXPECT(tkm_fp_encode(TKM_FP_KIND_BF16, emb, 4, bytes, 8), TKM_STATUS_OK);
  CHECK(bytes[0] == 0x00 && bytes[1] == 0x3F); /* bf16(0.5) = 0x3F00 */
  EXPECT(tkm_fp_encode_coin_layout(TKM_FP_KIND_BF16, emb, 4, tok, 2, bytes, 12), TKM_STATUS_OK);
  CHECK(bytes[10] == 0x00 && bytes[11] == 0x40); /* bf16(2.0) = 0x4000 */
  EXPECT(note(tkm_fp_encode(TKM_FP_KIND_BF16, emb, 4, bytes, 7)), TKM_STATUS_LENGTH_MISMATCH);
  EXPECT(note(tkm_fp_encode(TKM_FP_KIND_SIMHASH, emb, 4, bytes, 7)), TKM_STATUS_INVALID_ARGUMENT);
  emb[1] = NAN;
  EXPECT(note(tkm_fp_encode(TKM_FP_KIND_F32_CANONICAL, emb, 4, bytes, 16)), TKM_STATUS_NON_FINITE);
  emb[1] = 0.25f;

  /* SimHash: the same vector matches itself; leaf bytes round-trip. */
  EXPECT(tkm_fp_simhash(emb, 4, seed, TKM_FP_PLANES_RADEMACHER, 0.005, sig, grd, 2), TKM_STATUS_OK);
  EXPECT(tkm_fp_simhash(emb, 4, seed, TKM_FP_PLANES_RADEMACHER, 0.005, sig2, grd2, 2), TKM_STATUS_OK);
  CHECK(memcmp(sig, sig2, sizeof sig) == 0);
  EXPECT(tkm_fp_masked_hamming(sig, sig2, grd, 2, &d), TKM_STATUS_OK);
  CHECK(d == 0);
  EXPECT(tkm_fp_simhash_accept(sig, grd, sig2, 2, 0, 128, &acc), TKM_STATUS_OK);
  CHECK(acc == 1);
  sig2[0] = ~sig2[0];
  EXPECT(tkm_fp_masked_hamming(sig, sig2, NULL, 2, &d), TKM_STATUS_OK);
  CHECK(d == 64);
  EXPECT(tkm_fp_encode_simhash(sig, grd, 2, bytes, 32), TKM_STATUS_OK);
  EXPECT(tkm_fp_decode_simhash(bytes, 32, sig2, grd2, 2), TKM_STATUS_OK);
  CHECK(memcmp(sig, sig2, sizeof sig) == 0 && memcmp(grd, grd2, sizeof grd) == 0);
  EXPECT(tkm_fp_simhash(emb, 4, seed, TKM_FP_PLANES_GAUSSIAN, 0.005, sig2, grd2, 2), TKM_STATUS_OK);
  EXPECT(note(tkm_fp_simhash(emb, 4, seed, TKM_FP_PLANES_RADEMACHER, -1.0, sig2, grd2, 2)),
         TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_fp_decode_simhash(bytes, 31, sig2, grd2, 2)), TKM_STATUS_LENGTH_MISMATCH);

  /* Signed tree head: encode, digest, parse. */
  memset(root, 0x5A, 32);
  EXPECT(tkm_fp_signed_head_len(3, &len), TKM_STATUS_OK);
  CHECK(len == TKM_FP_HEAD_FIXED_LEN + 3);
  EXPECT(tkm_fp_signed_head_encode(1, 42, root, (const uint8_t *)"abc", 3, head, sizeof head, &wrote), TKM_STATUS_OK);
  CHECK(wrote == len && memcmp(head, "tokenmath-sth", 13) == 0 && head[15] == 42);
  EXPECT(tkm_fp_signed_head_digest(1, 42, root, (const uint8_t *)"abc", 3, digest), TKM_STATUS_OK);
  EXPECT(tkm_fp_signed_head_parse(head, wrote, &h), TKM_STATUS_OK);
  CHECK(h.n == 42 && h.hash_id == 1 && h.ctx_len == 3 && memcmp(head + h.ctx_offset, "abc", 3) == 0);
  CHECK(memcmp(h.root, root, 32) == 0);
  EXPECT(note(tkm_fp_signed_head_encode(1, 42, root, NULL, 3, head, sizeof head, &wrote)), TKM_STATUS_NULL_POINTER);
  EXPECT(note(tkm_fp_signed_head_encode(1, 42, root, (const uint8_t *)"abc", 3, head, 10, &wrote)),
         TKM_STATUS_LENGTH_MISMATCH);
  EXPECT(note(tkm_fp_signed_head_parse(head, wrote - 1, &h)), TKM_STATUS_INVALID_ARGUMENT);

  /* Audit sampling: 1 forged leaf of 10, all 10 audited with q = 1 -> certain detection. */
  EXPECT(tkm_fp_detect_prob(10, 1, 10, 1.0, &p), TKM_STATUS_OK);
  CHECK(p == 1.0);
  EXPECT(tkm_fp_detect_prob(10, 1, 1, 1.0, &p), TKM_STATUS_OK);
  CHECK(fabs(p - 0.1) < 1e-12);
  EXPECT(tkm_fp_detect_prob_bound(0.1, 1, 1.0, &p), TKM_STATUS_OK);
  CHECK(fabs(p - 0.1) < 1e-12);
  EXPECT(tkm_fp_samples_for_confidence(0.5, 1.0, 0.25, &need), TKM_STATUS_OK);
  CHECK(need == 2);
  EXPECT(note(tkm_fp_samples_for_confidence(1e-300, 1.0, 0.5, &need)), TKM_STATUS_SIZE_OVERFLOW);
  EXPECT(note(tkm_fp_detect_prob(10, 11, 1, 1.0, &p)), TKM_STATUS_INVALID_ARGUMENT);
  CHECK(need == 2);
}

_Static_assert(sizeof(DLTensor) == 48 || sizeof(void *) != 8, "DLTensor layout");

/* A DLTensor over caller memory (CPU, lanes 1). */
static DLTensor dl(void *data, uint8_t code, uint8_t bits, int32_t ndim, int64_t *shape, int64_t *strides) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = kDLCPU;
  t.device.device_id = 0;
  t.ndim = ndim;
  t.dtype.code = code;
  t.dtype.bits = bits;
  t.dtype.lanes = 1;
  t.shape = shape;
  t.strides = strides;
  t.byte_offset = 0;
  return t;
}

static void test_dlpack(void) {
  int64_t xshape[2] = {ROWS, VOCAB}, xstrides[2] = {STRIDE, 1}, vshape[1] = {ROWS};
  float lse[ROWS], ent[ROWS], logp[ROWS], mx[ROWS], ls[ROWS], lse2[ROWS], ent2[ROWS], logp2[ROWS], mx2[ROWS],
      ls2[ROWS];
  float g[ROWS];
  static float dx[ROWS * VOCAB], dx2[ROWS * VOCAB], xi[ROWS * STRIDE];
  int64_t dshape[2] = {ROWS, VOCAB};
  DLTensor tx = dl(x, kDLFloat, 32, 2, xshape, xstrides);
  DLTensor tt = dl(targets, kDLInt, 32, 1, vshape, NULL);
  DLTensor tm = dl(row_mask, kDLUInt, 8, 1, vshape, NULL);
  DLTensor tl = dl(lse2, kDLFloat, 32, 1, vshape, NULL), th = dl(ent2, kDLFloat, 32, 1, vshape, NULL);
  DLTensor tlp = dl(logp2, kDLFloat, 32, 1, vshape, NULL), tmx = dl(mx2, kDLFloat, 32, 1, vshape, NULL);
  DLTensor tls = dl(ls2, kDLFloat, 32, 1, vshape, NULL);
  DLTensor tg = dl(g, kDLFloat, 32, 1, vshape, NULL), tdx = dl(dx2, kDLFloat, 32, 2, dshape, NULL);
  DLTensor bad;
  for (int r = 0; r < ROWS; r++) g[r] = -1.0f;
  EXPECT(tkm_logits_fwd(NULL, FWD_IN(TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f, NULL), lse, ent, logp, mx, ls,
                        NULL),
         TKM_STATUS_OK);
  EXPECT(tkm_dl_logits_fwd(NULL, &tx, &tt, &tm, 1.0f, NULL, &tl, &th, &tlp, &tmx, &tls, NULL), TKM_STATUS_OK);
  CHECK(memcmp(lse, lse2, sizeof lse) == 0 && memcmp(ent, ent2, sizeof ent) == 0);
  CHECK(memcmp(logp, logp2, sizeof logp) == 0 && memcmp(mx, mx2, sizeof mx) == 0 && memcmp(ls, ls2, sizeof ls) == 0);

  EXPECT(tkm_logits_bwd(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f, NULL, mx, ls, ent, g, NULL,
                        NULL, TKM_DTYPE_F32, dx, VOCAB),
         TKM_STATUS_OK);
  EXPECT(tkm_dl_logits_bwd(NULL, &tx, &tt, &tm, 1.0f, NULL, &tmx, &tls, &th, &tg, NULL, NULL, &tdx), TKM_STATUS_OK);
  CHECK(memcmp(dx, dx2, sizeof dx) == 0);
  memcpy(xi, x, sizeof xi);
  {
    DLTensor txi = dl(xi, kDLFloat, 32, 2, xshape, xstrides);
    EXPECT(tkm_dl_logits_bwd_inplace(NULL, &txi, &tt, &tm, 1.0f, NULL, &tmx, &tls, &th, &tg, NULL, NULL), TKM_STATUS_OK);
    for (int r = 0; r < ROWS; r++) CHECK(memcmp(xi + r * STRIDE, dx + r * VOCAB, VOCAB * sizeof(float)) == 0);
  }

  /* Every field is validated. */
  bad = tx;
  bad.device.device_type = kDLOpenCL;
  EXPECT(note(tkm_dl_logits_fwd(NULL, &bad, NULL, NULL, 1.0f, NULL, &tl, &th, NULL, NULL, NULL, NULL)),
         TKM_STATUS_UNSUPPORTED_DEVICE);
  bad.device.device_type = kDLCUDA; /* CUDA logits, CPU outputs */
  EXPECT(note(tkm_dl_logits_fwd(NULL, &bad, NULL, NULL, 1.0f, NULL, &tl, &th, NULL, NULL, NULL, NULL)),
         TKM_STATUS_DEVICE_MISMATCH);
  {
    /* All on CUDA: the CUDA path, absent from a library built without it (the pointers are
     * never dereferenced). */
    DLTensor cx = tx, cl = tl, ch = th;
    cx.device.device_type = cl.device.device_type = ch.device.device_type = kDLCUDA;
    if (note(tkm_cuda_available()) == TKM_STATUS_CUDA_UNAVAILABLE)
      EXPECT(note(tkm_dl_logits_fwd(NULL, &cx, NULL, NULL, 1.0f, NULL, &cl, &ch, NULL, NULL, NULL, NULL)),
             TKM_STATUS_CUDA_UNAVAILABLE);
  }
  bad = tx;
  bad.ndim = 3;
  EXPECT(note(tkm_dl_logits_fwd(NULL, &bad, NULL, NULL, 1.0f, NULL, &tl, &th, NULL, NULL, NULL, NULL)),
         TKM_STATUS_BAD_TENSOR);
  bad = tx;
  bad.dtype.lanes = 4;
  EXPECT(note(tkm_dl_logits_fwd(NULL, &bad, NULL, NULL, 1.0f, NULL, &tl, &th, NULL, NULL, NULL, NULL)),
         TKM_STATUS_BAD_DTYPE);
  bad = tx;
  bad.dtype.code = kDLBfloat; /* bfloat with 32 bits */
  EXPECT(note(tkm_dl_logits_fwd(NULL, &bad, NULL, NULL, 1.0f, NULL, &tl, &th, NULL, NULL, NULL, NULL)),
         TKM_STATUS_BAD_DTYPE);
  {
    int64_t col_major[2] = {1, ROWS}, neg[2] = {-STRIDE, 1};
    bad = tx;
    bad.strides = col_major;
    EXPECT(note(tkm_dl_logits_fwd(NULL, &bad, NULL, NULL, 1.0f, NULL, &tl, &th, NULL, NULL, NULL, NULL)),
           TKM_STATUS_BAD_STRIDE);
    bad.strides = neg;
    EXPECT(note(tkm_dl_logits_fwd(NULL, &bad, NULL, NULL, 1.0f, NULL, &tl, &th, NULL, NULL, NULL, NULL)),
           TKM_STATUS_BAD_STRIDE);
  }
  bad = tx;
  bad.byte_offset = 2;
  EXPECT(note(tkm_dl_logits_fwd(NULL, &bad, NULL, NULL, 1.0f, NULL, &tl, &th, NULL, NULL, NULL, NULL)),
         TKM_STATUS_MISALIGNED);
  {
    int64_t short_shape[1] = {ROWS - 1};
    DLTensor ts = dl(lse2, kDLFloat, 32, 1, short_shape, NULL);
    EXPECT(note(tkm_dl_logits_fwd(NULL, &tx, NULL, NULL, 1.0f, NULL, &ts, &th, NULL, NULL, NULL, NULL)),
           TKM_STATUS_LENGTH_MISMATCH);
  }
  EXPECT(note(tkm_dl_logits_fwd(NULL, &tx, NULL, NULL, 1.0f, NULL, NULL, &th, NULL, NULL, NULL, NULL)),
         TKM_STATUS_NULL_POINTER);
  bad = tt;
  bad.dtype.bits = 64;
  EXPECT(note(tkm_dl_logits_bwd(NULL, &tx, &bad, NULL, 1.0f, NULL, &tmx, &tls, &th, NULL, NULL, NULL, &tdx)),
         TKM_STATUS_BAD_DTYPE);
  bad = tx;
  bad.device.device_type = kDLCUDA;
  EXPECT(note(tkm_dl_logits_bwd_inplace(NULL, &bad, NULL, NULL, 1.0f, NULL, &tmx, &tls, &th, NULL, NULL, NULL)),
         TKM_STATUS_DEVICE_MISMATCH);
}

static void test_policy(void) {
  enum { PR = 2, PC = 4 };
  float logp[PR * PC] = {-1, -2, -0.5f, -3, -1, -1, -1, -1};
  float old[PR * PC] = {-1, -1, -1, -1, -1.5f, -0.5f, -1, -1};
  float adv[PR * PC] = {1, -1, 1, -1, 0.5f, 0.5f, -2, 0};
  uint8_t mask[PR * PC] = {1, 1, 1, 0, 1, 1, 0, 0};
  float loss[PR * PC], dl[PR * PC], w[PR * PC], L = -1.0f;
  tkm_ppo_clip_options o;
  tkm_agg_norm norm;
  tkm_policy_stats st;
  double want = 0;
  EXPECT(note(tkm_ppo_clip_options_init(NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_ppo_clip_options_init(&o), TKM_STATUS_OK);
  CHECK(o.eps_low == 0.2f && o.eps_high == 0.2f && o.dual_clip_c == 3.0f && o.log_ratio_clamp == 20.0f);
  EXPECT(tkm_agg_norm_init(&norm), TKM_STATUS_OK);
  CHECK(norm.dp_size == 1 && norm.global_tokens == 0);
  EXPECT(tkm_ppo_clip_loss(NULL, logp, old, adv, mask, NULL, PR, PC, &o, loss, dl, &st), TKM_STATUS_OK);
  CHECK(st.valid_tokens == 5);
  for (int i = 0; i < PR * PC; i++) {
    double r = exp((double)logp[i] - old[i]), rc = r < 0.8 ? 0.8 : (r > 1.2 ? 1.2 : r);
    double l = fmax(-adv[i] * r, -adv[i] * rc);
    if (adv[i] < 0) l = fmin(l, -adv[i] * 3.0);
    if (!mask[i]) l = 0;
    CHECK(fabs(loss[i] - l) < 1e-5);
    want += l / 5.0;
  }
  EXPECT(tkm_agg_loss(NULL, loss, mask, PR, PC, TKM_AGG_TOKEN_MEAN, &norm, &L), TKM_STATUS_OK);
  CHECK(fabs(L - want) < 1e-5);
  EXPECT(tkm_agg_weights(NULL, mask, PR, PC, TKM_AGG_SEQ_MEAN_TOKEN_MEAN, NULL, w), TKM_STATUS_OK);
  CHECK(fabsf(w[0] - 1.0f / 6.0f) < 1e-7f && fabsf(w[4] - 0.25f) < 1e-7f && w[3] == 0.0f);
  o.dual_clip_c = 0.5f;
  EXPECT(note(tkm_ppo_clip_loss(NULL, logp, old, adv, mask, NULL, PR, PC, &o, loss, dl, NULL)),
         TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_agg_loss(NULL, loss, mask, PR, PC, 17, NULL, &L)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_agg_weights(NULL, NULL, PR, PC, TKM_AGG_TOKEN_MEAN, NULL, w)), TKM_STATUS_NULL_POINTER);
}

/* PPO + KL, the fused step, GSPO/CISPO/SAPO, KL, TIS, chaining and upstreams. */
static void test_policy_more(void) {
  enum { PR = 2, PC = 4, PN = PR * PC };
  float logp[PN] = {-1, -2, -0.5f, -3, -1, -1, -1, -1};
  float old[PN] = {-1, -1, -1, -1, -1.5f, -0.5f, -1, -1};
  float ref[PN] = {-1.2f, -1.5f, -0.5f, -2, -0.8f, -1, -1, -1};
  float adv[PN] = {1, -1, 1, -1, 0.5f, 0.5f, -2, 0};
  uint8_t mask[PN] = {1, 1, 1, 0, 1, 1, 0, 0};
  float loss[PN], dl[PN], kl[PN], dkl[PN], w[PN], g[PN], g2[PN], l2[PN], up[PN], ent[PN];
  float L = 0.0f, L2 = 0.0f;
  tkm_ppo_clip_options clip;
  tkm_kl_options ko;
  tkm_gspo_options go;
  tkm_cispo_options co;
  tkm_sapo_options so;
  tkm_policy_stats st, st2;
  tkm_kl_stats ks, ks2;
  EXPECT(tkm_ppo_clip_options_init(&clip), TKM_STATUS_OK);
  EXPECT(note(tkm_kl_options_init(NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_kl_options_init(&ko), TKM_STATUS_OK);
  CHECK(ko.struct_size == sizeof ko && ko.kind == TKM_KL_K3 && ko.verl_clamps == 1);
  EXPECT(tkm_gspo_options_init(&go), TKM_STATUS_OK);
  CHECK(go.eps_low == 0.2f && go.eps_high == 0.2f && go.seq_log_ratio_cap == 10.0f);
  EXPECT(tkm_cispo_options_init(&co), TKM_STATUS_OK);
  CHECK(co.w_min == 0.8f && co.w_max == 1.2f && co.log_ratio_clamp == 20.0f);
  EXPECT(tkm_sapo_options_init(&so), TKM_STATUS_OK);
  CHECK(so.tau_pos == 1.0f && so.tau_neg == 1.05f && so.log_ratio_clamp == 20.0f);

  /* KL (k3): exp(-d) + d - 1 with d = logp - ref. */
  EXPECT(tkm_kl_loss(NULL, logp, ref, mask, PR, PC, &ko, kl, dkl, &ks), TKM_STATUS_OK);
  CHECK(ks.valid_tokens == 5);
  for (int i = 0; i < PN; i++) {
    double d = (double)logp[i] - ref[i], want = mask[i] ? exp(-d) + d - 1.0 : 0.0;
    CHECK(fabs(kl[i] - want) < 1e-5);
  }
  /* PPO + 0.1 KL = PPO + 0.1 * KL, bitwise. */
  EXPECT(tkm_ppo_clip_loss(NULL, logp, old, adv, mask, NULL, PR, PC, &clip, loss, dl, &st), TKM_STATUS_OK);
  EXPECT(tkm_ppo_clip_kl_loss(NULL, logp, old, adv, mask, NULL, ref, PR, PC, &clip, &ko, 0.1f, l2, g2, &st2, &ks2),
         TKM_STATUS_OK);
  CHECK(st2.valid_tokens == st.valid_tokens && ks2.kl_sum == ks.kl_sum);
  for (int i = 0; i < PN; i++) CHECK(l2[i] == loss[i] + 0.1f * kl[i]);
  /* The fused step = loss, agg_loss and agg_chain_inplace. */
  EXPECT(tkm_agg_loss(NULL, l2, mask, PR, PC, TKM_AGG_TOKEN_MEAN, NULL, &L2), TKM_STATUS_OK);
  EXPECT(tkm_agg_chain_inplace(NULL, mask, PR, PC, TKM_AGG_TOKEN_MEAN, NULL, g2), TKM_STATUS_OK);
  EXPECT(tkm_ppo_clip_kl_step(NULL, logp, old, adv, mask, NULL, ref, PR, PC, NULL, NULL, 0.1f, TKM_AGG_TOKEN_MEAN, NULL,
                              loss, g, &L, &st, &ks),
         TKM_STATUS_OK);
  CHECK(memcmp(loss, l2, sizeof loss) == 0 && memcmp(g, g2, sizeof g) == 0 && L == L2);
  CHECK(st.valid_tokens == 5 && ks.valid_tokens == 5);
  /* logp_upstream(w, {1, 0.1}, {dpg, dkl}) = w * (dpg + 0.1 dkl). */
  EXPECT(tkm_ppo_clip_loss(NULL, logp, old, adv, mask, NULL, PR, PC, NULL, loss, dl, NULL), TKM_STATUS_OK);
  EXPECT(tkm_agg_weights(NULL, mask, PR, PC, TKM_AGG_TOKEN_MEAN, NULL, w), TKM_STATUS_OK);
  {
    const float coefs[2] = {1.0f, 0.1f};
    const float *terms[2] = {dl, dkl};
    EXPECT(tkm_logp_upstream(NULL, w, PN, coefs, terms, 2, up), TKM_STATUS_OK);
    for (int i = 0; i < PN; i++) CHECK(fabsf(up[i] - g[i]) <= 1e-6f);
    terms[1] = NULL;
    EXPECT(note(tkm_logp_upstream(NULL, w, PN, coefs, terms, 2, up)), TKM_STATUS_NULL_POINTER);
  }
  EXPECT(tkm_entropy_upstream(NULL, w, PN, 0.01f, ent), TKM_STATUS_OK);
  CHECK(ent[0] == -0.01f * w[0] && ent[3] == 0.0f);
  EXPECT(note(tkm_entropy_upstream(NULL, w, PN, INFINITY, ent)), TKM_STATUS_INVALID_ARGUMENT);

  /* GSPO, CISPO, SAPO: defaults; CISPO's gradient is -w A with w the clamped ratio. */
  EXPECT(tkm_gspo_loss(NULL, logp, old, adv, mask, NULL, PR, PC, &go, loss, dl, &st), TKM_STATUS_OK);
  CHECK(st.valid_tokens == 5 && loss[3] == 0.0f);
  go.seq_log_ratio_cap = INFINITY; /* no cap */
  EXPECT(tkm_gspo_loss(NULL, logp, old, adv, mask, NULL, PR, PC, &go, loss, dl, NULL), TKM_STATUS_OK);
  EXPECT(tkm_cispo_loss(NULL, logp, old, adv, mask, NULL, PR, PC, &co, loss, dl, NULL), TKM_STATUS_OK);
  for (int i = 0; i < PN; i++) {
    double r = exp((double)logp[i] - old[i]), wc = r < 0.8 ? 0.8 : (r > 1.2 ? 1.2 : r);
    CHECK(fabs(dl[i] - (mask[i] ? -wc * adv[i] : 0.0)) < 1e-6);
  }
  EXPECT(tkm_sapo_loss(NULL, logp, old, adv, mask, NULL, PR, PC, NULL, loss, dl, &st), TKM_STATUS_OK);
  /* At r = 1, SAPO's loss is -A * sigmoid(0) * 4 / tau = -2 A / tau (token 6 is masked). */
  CHECK(fabsf(loss[0] - -2.0f) < 1e-6f);
  /* Truncated importance weights. */
  EXPECT(tkm_tis_weights(NULL, old, ref, mask, PR, PC, TKM_TIS_TOKEN, 1.1f, w), TKM_STATUS_OK);
  for (int i = 0; i < PN; i++) {
    double e = exp((double)old[i] - ref[i]);
    CHECK(fabs(w[i] - (mask[i] ? (e > 1.1 ? 1.1 : e) : 0.0)) < 1e-6);
  }
  EXPECT(tkm_tis_weights(NULL, old, ref, mask, PR, PC, TKM_TIS_SEQUENCE, INFINITY, w), TKM_STATUS_OK);
  CHECK(w[0] == w[1] && w[3] == 0.0f);

  /* Errors (no output written). */
  poison(loss, PN);
  ko.kind = 42;
  EXPECT(note(tkm_kl_loss(NULL, logp, ref, mask, PR, PC, &ko, loss, dl, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_ppo_clip_kl_loss(NULL, logp, old, adv, mask, NULL, ref, PR, PC, NULL, &ko, 0.1f, loss, dl, NULL, NULL)),
         TKM_STATUS_INVALID_ARGUMENT);
  ko.kind = TKM_KL_K3;
  EXPECT(note(tkm_ppo_clip_kl_step(NULL, logp, old, adv, mask, NULL, NULL, PR, PC, NULL, &ko, 0.1f, TKM_AGG_TOKEN_MEAN,
                                   NULL, loss, g, &L, NULL, NULL)),
         TKM_STATUS_NULL_POINTER);
  EXPECT(note(tkm_ppo_clip_kl_step(NULL, logp, old, adv, mask, NULL, ref, PR, PC, NULL, &ko, NAN, TKM_AGG_TOKEN_MEAN, NULL,
                                   loss, g, &L, NULL, NULL)),
         TKM_STATUS_INVALID_ARGUMENT);
  go.eps_low = -1.0f;
  EXPECT(note(tkm_gspo_loss(NULL, logp, old, adv, mask, NULL, PR, PC, &go, loss, dl, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  co.w_min = 2.0f; /* > w_max */
  EXPECT(note(tkm_cispo_loss(NULL, logp, old, adv, mask, NULL, PR, PC, &co, loss, dl, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  so.struct_size = 3;
  EXPECT(note(tkm_sapo_loss(NULL, logp, old, adv, mask, NULL, PR, PC, &so, loss, dl, NULL)), TKM_STATUS_BAD_STRUCT_SIZE);
  EXPECT(note(tkm_tis_weights(NULL, old, ref, mask, PR, PC, 7, 2.0f, loss)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_agg_chain_inplace(NULL, mask, SIZE_MAX, PC, TKM_AGG_TOKEN_MEAN, NULL, loss)), TKM_STATUS_SIZE_OVERFLOW);
  EXPECT(note(tkm_agg_chain_inplace(NULL, (const uint8_t *)loss, 1, 4, TKM_AGG_TOKEN_MEAN, NULL, loss)), TKM_STATUS_OVERLAP);
  CHECK(untouched(loss, PN));
}

/* The seed methods of issue 14 (part A): the top-entropy mask (one rank and the cross-rank
 * protocol), D3S, PSR/NSR/W-REINFORCE, GRPO-N and the expected logit update. */
static void test_seed_selection(void) {
  /* TRL's unit test: 10 valid tokens of 12, rho = 0.2 => 2 kept. */
  float ent[12];
  uint8_t m[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, keep[12];
  for (int i = 0; i < 12; i++) ent[i] = (float)(i + 1) / 10.0f;
  ent[11] = NAN; /* padding is never read */
  uint32_t has = 7;
  float theta = POISON;
  uint64_t kept = 99, cnt = 0;
  EXPECT(tkm_top_entropy_threshold(NULL, m, ent, 2, 6, 0.2f, &has, &theta), TKM_STATUS_OK);
  CHECK(has == 1 && fabsf(theta - 0.82f) < 1e-6f);
  EXPECT(tkm_top_entropy_mask(NULL, m, ent, 2, 6, 1, theta, keep, &kept), TKM_STATUS_OK);
  CHECK(kept == 2 && keep[8] == 1 && keep[9] == 1 && keep[7] == 0 && keep[10] == 0);
  EXPECT(tkm_top_entropy_mask(NULL, m, ent, 2, 6, 0, 0.0f, keep, NULL), TKM_STATUS_OK);
  for (int i = 0; i < 12; i++) CHECK(keep[i] == 0);

  /* The same threshold from two "ranks" (rows 0..1 and 1..2), merging as an all-reduce would. */
  {
    uint64_t c0 = 0, c1 = 0, h0[TKM_RADIX_BINS], h1[TKM_RADIX_BINS];
    tkm_entropy_quantile st;
    uint32_t step = 9, h = 0;
    float t2 = POISON;
    EXPECT(tkm_valid_count(NULL, m, 1, 6, &c0), TKM_STATUS_OK);
    EXPECT(tkm_valid_count(NULL, m + 6, 1, 6, &c1), TKM_STATUS_OK);
    CHECK(c0 == 6 && c1 == 4);
    EXPECT(tkm_entropy_quantile_init(c0 + c1, 0.2f, &st), TKM_STATUS_OK);
    for (;;) {
      EXPECT(tkm_entropy_quantile_step(&st, &step), TKM_STATUS_OK);
      if (step == TKM_QUANTILE_STEP_HISTOGRAM) {
        EXPECT(tkm_entropy_quantile_local_histogram(&st, NULL, m, ent, 1, 6, h0), TKM_STATUS_OK);
        EXPECT(tkm_entropy_quantile_local_histogram(&st, NULL, m + 6, ent + 6, 1, 6, h1), TKM_STATUS_OK);
        for (int b = 0; b < TKM_RADIX_BINS; b++) h0[b] += h1[b];
        EXPECT(tkm_entropy_quantile_push_histogram(&st, h0), TKM_STATUS_OK);
      } else if (step == TKM_QUANTILE_STEP_MIN_ABOVE) {
        float a = POISON, b = POISON;
        EXPECT(note(tkm_entropy_quantile_threshold(&st, &h, &t2)), TKM_STATUS_INVALID_ARGUMENT); /* not finished */
        EXPECT(note(tkm_entropy_quantile_push_histogram(&st, h0)), TKM_STATUS_INVALID_ARGUMENT);
        EXPECT(tkm_entropy_quantile_local_min_above(&st, NULL, m, ent, 1, 6, &a), TKM_STATUS_OK);
        EXPECT(tkm_entropy_quantile_local_min_above(&st, NULL, m + 6, ent + 6, 1, 6, &b), TKM_STATUS_OK);
        CHECK(isinf(a) && b == ent[8]);
        EXPECT(note(tkm_entropy_quantile_push_min_above(&st, INFINITY)), TKM_STATUS_INVALID_ARGUMENT);
        EXPECT(tkm_entropy_quantile_push_min_above(&st, a < b ? a : b), TKM_STATUS_OK);
      } else {
        break;
      }
    }
    CHECK(step == TKM_QUANTILE_STEP_DONE);
    EXPECT(tkm_entropy_quantile_threshold(&st, &h, &t2), TKM_STATUS_OK);
    CHECK(h == 1 && t2 == theta);
    /* A corrupted state is refused; a wrong global count is caught by the histogram total. */
    tkm_entropy_quantile bad = st;
    bad.words[4] = ~(uint64_t)0;
    EXPECT(note(tkm_entropy_quantile_step(&bad, &step)), TKM_STATUS_INVALID_ARGUMENT);
    EXPECT(tkm_entropy_quantile_init(11, 0.2f, &st), TKM_STATUS_OK);
    EXPECT(tkm_entropy_quantile_local_histogram(&st, NULL, m, ent, 2, 6, h0), TKM_STATUS_OK);
    EXPECT(note(tkm_entropy_quantile_push_histogram(&st, h0)), TKM_STATUS_INVALID_ARGUMENT);
    EXPECT(note(tkm_entropy_quantile_init(10, 0.0f, &st)), TKM_STATUS_INVALID_ARGUMENT);
    EXPECT(note(tkm_entropy_quantile_init(10, 0.5f, NULL)), TKM_STATUS_NULL_POINTER);
    EXPECT(note(tkm_entropy_quantile_local_min_above(&st, NULL, m, ent, 2, 6, &t2)), TKM_STATUS_INVALID_ARGUMENT);
    m[11] = 1; /* the NaN is now valid */
    EXPECT(note(tkm_entropy_quantile_local_histogram(&st, NULL, m, ent, 2, 6, h0)), TKM_STATUS_NON_FINITE);
    EXPECT(note(tkm_valid_count(NULL, m, SIZE_MAX, 2, &cnt)), TKM_STATUS_SIZE_OVERFLOW);
  }
  /* Errors of the one-rank calls (no output written). */
  theta = POISON;
  EXPECT(note(tkm_top_entropy_threshold(NULL, m, ent, 2, 6, 0.2f, &has, &theta)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_top_entropy_threshold(NULL, m, ent, 2, 6, 1.5f, &has, &theta)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_top_entropy_threshold(NULL, m, NULL, 2, 6, 0.2f, &has, &theta)), TKM_STATUS_NULL_POINTER);
  CHECK(theta == POISON);
  memset(keep, 5, sizeof keep);
  EXPECT(note(tkm_top_entropy_mask(NULL, m, ent, 2, 6, 1, NAN, keep, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_top_entropy_mask(NULL, m, ent, 2, 6, 2, 0.5f, keep, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  for (int i = 0; i < 12; i++) CHECK(keep[i] == 5);
  m[11] = 0;

  /* D3S: the max-variance subset, sample selection, schedule and token mask. */
  {
    float a[6] = {0.5f, -2.0f, 3.0f, -2.0f, 0.0f, 1.0f};
    uint8_t k6[6], tok[12], rows2[2] = {1, 0};
    uint32_t ids[6] = {7, 9, 7, 9, 7, 9};
    size_t nk = 0;
    float kf = POISON;
    EXPECT(tkm_max_variance_subset(a, 6, 2, k6), TKM_STATUS_OK);
    CHECK(k6[1] == 1 && k6[2] == 1 && k6[0] + k6[3] + k6[4] + k6[5] == 0); /* {-2, 3} */
    EXPECT(tkm_d3s_select_samples(a, 6, NULL, 0, 0, 0, 2, k6), TKM_STATUS_OK);
    CHECK(k6[1] == 1 && k6[2] == 1);
    /* Per group (ids 7: {0.5, 3, 0}, 9: {-2, -2, 1}) keep 1 (the smallest), then both. */
    EXPECT(tkm_d3s_select_samples(a, 6, ids, 0, 1, 1, 4, k6), TKM_STATUS_OK);
    CHECK(k6[4] == 1 && k6[1] == 1 && k6[0] + k6[2] + k6[3] + k6[5] == 0);
    EXPECT(note(tkm_d3s_select_samples(a, 6, ids, 3, 1, 1, 4, k6)), TKM_STATUS_INVALID_ARGUMENT);
    EXPECT(note(tkm_d3s_select_samples(a, 6, NULL, 0, 2, 1, 4, k6)), TKM_STATUS_INVALID_ARGUMENT);
    a[3] = INFINITY;
    EXPECT(note(tkm_max_variance_subset(a, 6, 2, k6)), TKM_STATUS_NON_FINITE);
    EXPECT(note(tkm_max_variance_subset(a, (size_t)1 << 60, 2, k6)), TKM_STATUS_OUT_OF_MEMORY);
    CHECK(k6[4] == 1 && k6[1] == 1);
    tkm_d3s_schedule_options so;
    EXPECT(note(tkm_d3s_schedule_options_init(NULL)), TKM_STATUS_NULL_POINTER);
    EXPECT(tkm_d3s_schedule_options_init(&so), TKM_STATUS_OK);
    CHECK(so.struct_size == sizeof so && so.n_init == 0.5f && so.k_init == 0.2f && so.n_final == 1.0f);
    EXPECT(tkm_d3s_schedule(0.0f, &so, 8, &nk, &kf), TKM_STATUS_OK);
    CHECK(nk == 4 && kf == 0.2f);
    EXPECT(tkm_d3s_schedule(1.0f, NULL, 8, &nk, &kf), TKM_STATUS_OK);
    CHECK(nk == 8 && kf == 1.0f);
    EXPECT(note(tkm_d3s_schedule(1.5f, NULL, 8, &nk, &kf)), TKM_STATUS_INVALID_ARGUMENT);
    so.struct_size = 5;
    EXPECT(note(tkm_d3s_schedule(0.5f, &so, 8, &nk, &kf)), TKM_STATUS_BAD_STRUCT_SIZE);
    /* Token mask: row 0 kept, its 6 valid tokens' keys |A|*H = 0.1 .. 0.6; K = 0.5 keeps 3. */
    float adv12[12], one[12];
    for (int i = 0; i < 12; i++) adv12[i] = 1.0f, one[i] = ent[i];
    adv12[7] = NAN; /* row 1 is dropped: never read */
    EXPECT(tkm_d3s_token_mask(NULL, m, adv12, one, rows2, 2, 6, 0.5f, tok, &kept), TKM_STATUS_OK);
    CHECK(kept == 3 && tok[3] == 1 && tok[4] == 1 && tok[5] == 1 && tok[2] == 0 && tok[6] == 0);
    rows2[1] = 1;
    memset(tok, 5, sizeof tok);
    EXPECT(note(tkm_d3s_token_mask(NULL, m, adv12, one, rows2, 2, 6, 0.5f, tok, NULL)), TKM_STATUS_NON_FINITE);
    EXPECT(note(tkm_d3s_token_mask(NULL, m, adv12, one, rows2, 2, 6, 1.5f, tok, NULL)), TKM_STATUS_INVALID_ARGUMENT);
    CHECK(tok[0] == 5);
  }

  /* PSR / NSR / W-REINFORCE: row 0 correct, row 1 incorrect, row 2 partial. */
  {
    uint8_t mk[6] = {1, 1, 1, 1, 1, 0}, kr[3] = {9, 9, 9};
    float r[6] = {0.0f, 1.0f, 0.0f, 0.0f, 0.5f, 0.0f}, ad[6];
    tkm_nsr_options no;
    EXPECT(note(tkm_nsr_options_init(NULL)), TKM_STATUS_NULL_POINTER);
    EXPECT(tkm_nsr_options_init(&no), TKM_STATUS_OK);
    CHECK(no.struct_size == sizeof no && no.mode == TKM_NSR_MODE_WEIGHTED && no.lambda == 0.1f && no.gamma == 1.0f);
    EXPECT(tkm_nsr_advantage(NULL, mk, r, r, 3, 2, &no, kr, ad), TKM_STATUS_OK);
    CHECK(kr[0] == 1 && kr[1] == 1 && kr[2] == 1);
    CHECK(ad[0] == 0.1f && ad[1] == 0.1f && ad[2] == -1.0f && ad[4] == 0.5f && ad[5] == 0.0f);
    no.mode = TKM_NSR_MODE_NSR;
    EXPECT(tkm_nsr_advantage(NULL, mk, r, r, 3, 2, &no, kr, ad), TKM_STATUS_OK);
    CHECK(kr[0] == 0 && kr[1] == 1 && kr[2] == 0 && ad[0] == 0.0f && ad[3] == -1.0f);
    no.mode = TKM_NSR_MODE_PSR;
    EXPECT(tkm_nsr_advantage(NULL, mk, r, r, 3, 2, &no, kr, ad), TKM_STATUS_OK);
    CHECK(kr[0] == 1 && kr[1] == 0 && ad[0] == 1.0f && ad[3] == 0.0f);
    poison(ad, 6);
    no.mode = 5;
    EXPECT(note(tkm_nsr_advantage(NULL, mk, r, r, 3, 2, &no, kr, ad)), TKM_STATUS_INVALID_ARGUMENT);
    no.mode = TKM_NSR_MODE_NSR;
    no.gamma = -1.0f;
    EXPECT(note(tkm_nsr_advantage(NULL, mk, r, r, 3, 2, &no, kr, ad)), TKM_STATUS_INVALID_ARGUMENT);
    r[1] = NAN;
    EXPECT(note(tkm_nsr_advantage(NULL, mk, r, r, 3, 2, NULL, kr, ad)), TKM_STATUS_NON_FINITE);
    CHECK(untouched(ad, 6));
  }

  /* GRPO-N, in place. */
  {
    uint8_t mk[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    float av[4] = {0.5f, -0.5f, 0.0f, -2.0f};
    size_t pos = 0;
    EXPECT(tkm_grpo_negative_only(NULL, mk, av, 4, 2, TKM_NEG_DROP_POSITIVES, &pos), TKM_STATUS_OK);
    CHECK(pos == 1 && av[0] == 0.0f && av[1] == -0.5f && mk[0] == 0 && mk[1] == 0 && mk[2] == 1);
    av[0] = 1.0f;
    EXPECT(tkm_grpo_negative_only(NULL, mk, av, 4, 2, TKM_NEG_ZERO_POSITIVES, NULL), TKM_STATUS_OK);
    CHECK(av[0] == 0.0f && mk[2] == 1);
    av[2] = NAN;
    EXPECT(note(tkm_grpo_negative_only(NULL, mk, av, 4, 2, TKM_NEG_ZERO_POSITIVES, NULL)), TKM_STATUS_NON_FINITE);
    EXPECT(note(tkm_grpo_negative_only(NULL, mk, av, 4, 2, 9, NULL)), TKM_STATUS_INVALID_ARGUMENT);
    EXPECT(note(tkm_grpo_negative_only(NULL, (uint8_t *)av, av, 4, 1, 0, NULL)), TKM_STATUS_OVERLAP);
  }

  /* The expected logit update: uniform advantages do not move the logits. */
  {
    float p3[3] = {0.25f, 0.25f, 0.5f}, a3[3] = {1.0f, -1.0f, 0.0f}, o3[3];
    EXPECT(tkm_expected_logit_update(p3, a3, 3, 2.0f, o3), TKM_STATUS_OK);
    CHECK(o3[0] == 0.5f && o3[1] == -0.5f && o3[2] == 0.0f); /* base 0 */
    poison(o3, 3);
    p3[1] = -0.25f;
    EXPECT(note(tkm_expected_logit_update(p3, a3, 3, 1.0f, o3)), TKM_STATUS_INVALID_ARGUMENT);
    EXPECT(note(tkm_expected_logit_update(p3, a3, 3, NAN, o3)), TKM_STATUS_NON_FINITE);
    EXPECT(note(tkm_expected_logit_update(p3, a3, 3, 1.0f, (float *)((char *)o3 + 1))), TKM_STATUS_MISALIGNED);
    CHECK(untouched(o3, 3));
  }
}

/* NTHR and THR: prediction errors on V*, influence scores, threshold, eta, reweighting. */
static void test_seed_hidden_reward(void) {
  /* Two tokens, V* = 3: g = e_y - q. */
  float q[6] = {0.5f, 0.25f, 0.25f, 0.0f, 0.9f, 0.1f}, g[6];
  uint32_t col[2] = {0, 2};
  EXPECT(tkm_prediction_error_restricted(NULL, q, col, 2, 3, g), TKM_STATUS_OK);
  CHECK(g[0] == 0.5f && g[1] == -0.25f && g[4] == -0.9f && g[5] == 0.9f);
  poison(g, 6);
  col[1] = 3;
  EXPECT(note(tkm_prediction_error_restricted(NULL, q, col, 2, 3, g)), TKM_STATUS_LABEL_OUT_OF_RANGE);
  col[1] = 1;
  q[2] = NAN;
  EXPECT(note(tkm_prediction_error_restricted(NULL, q, col, 2, 3, g)), TKM_STATUS_NON_FINITE);
  CHECK(untouched(g, 6));

  /* Influence and THR scores (V* = d = 2); query token 1 is source token 1. */
  float sg[4] = {1.0f, -1.0f, 0.5f, 0.5f}, sh[4] = {1.0f, 0.0f, 0.0f, 2.0f};
  float qg[4] = {1.0f, 0.0f, 0.5f, 0.5f}, qh[4] = {1.0f, 1.0f, 0.0f, 2.0f};
  float adv2[2] = {2.0f, -1.0f}, s2[2], w2[2] = {0.5f, 2.0f};
  uint32_t self_src[2] = {UINT32_MAX, 1};
  EXPECT(tkm_influence_scores(NULL, sg, sh, NULL, 2, qg, qh, 2, 2, 2, s2), TKM_STATUS_OK);
  CHECK(s2[0] == 2.0f && s2[1] == 2.0f);
  EXPECT(tkm_influence_scores(NULL, sg, sh, w2, 2, qg, qh, 2, 2, 2, s2), TKM_STATUS_OK);
  CHECK(s2[0] == 2.5f && s2[1] == 4.0f);
  EXPECT(tkm_thr_scores(NULL, sg, sh, NULL, 2, qg, qh, adv2, self_src, 2, 2, 2, s2), TKM_STATUS_OK);
  CHECK(s2[0] == 4.0f && s2[1] == 0.0f);
  poison(s2, 2);
  self_src[0] = 2;
  EXPECT(note(tkm_thr_scores(NULL, sg, sh, NULL, 2, qg, qh, adv2, self_src, 2, 2, 2, s2)), TKM_STATUS_INVALID_ARGUMENT);
  sh[3] = INFINITY;
  EXPECT(note(tkm_influence_scores(NULL, sg, sh, NULL, 2, qg, qh, 2, 2, 2, s2)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_influence_scores(NULL, sg, NULL, NULL, 2, qg, qh, 2, 2, 2, s2)), TKM_STATUS_NULL_POINTER);
  CHECK(untouched(s2, 2));

  /* Threshold, eta, reweighting. */
  float ps[6] = {1.0f, 3.0f, 0.5f, 7.0f, -1.0f, 5.0f}, tau = POISON, eta = POISON;
  size_t lens[4] = {2, 0, 2, 2}, cnt = 0;
  EXPECT(tkm_nthr_threshold(ps, 6, lens, 4, 1.0f, &tau), TKM_STATUS_OK);
  CHECK(tau == 2.0f);
  EXPECT(note(tkm_nthr_threshold(ps, 5, lens, 4, 1.0f, &tau)), TKM_STATUS_LENGTH_MISMATCH);
  EXPECT(note(tkm_nthr_threshold(ps, 6, lens, 4, NAN, &tau)), TKM_STATUS_INVALID_ARGUMENT);
  ps[0] = INFINITY;
  EXPECT(note(tkm_nthr_threshold(ps, 6, lens, 4, 1.0f, &tau)), TKM_STATUS_NON_FINITE);
  CHECK(tau == 2.0f);
  EXPECT(tkm_nthr_eta(2, 8, &eta), TKM_STATUS_OK);
  CHECK(eta == 0.5f);
  EXPECT(note(tkm_nthr_eta(8, 8, &eta)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_nthr_eta(2, 8, NULL)), TKM_STATUS_NULL_POINTER);
  float a4[4] = {-1.0f, -1.0f, -1.0f, -1.0f}, sc4[4] = {3.0f, 1.0f, 2.5f, NAN};
  uint8_t v4[4] = {1, 1, 1, 0};
  EXPECT(tkm_nthr_reweight(NULL, a4, sc4, v4, 4, 2.0f, 0.5f, &cnt), TKM_STATUS_OK);
  CHECK(cnt == 2 && a4[0] == -0.5f && a4[1] == -1.0f && a4[2] == -0.5f && a4[3] == -1.0f);
  v4[3] = 1;
  EXPECT(note(tkm_nthr_reweight(NULL, a4, sc4, v4, 4, 2.0f, 0.5f, NULL)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_nthr_reweight(NULL, a4, sc4, v4, 4, NAN, 0.5f, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_nthr_reweight(NULL, a4, a4, v4, 4, 2.0f, 0.5f, NULL)), TKM_STATUS_OVERLAP);
  CHECK(a4[0] == -0.5f && a4[1] == -1.0f);

  tkm_thr_options to;
  EXPECT(note(tkm_thr_options_init(NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_thr_options_init(&to), TKM_STATUS_OK);
  CHECK(to.struct_size == sizeof to && to.mode == TKM_THR_STEER && to.p == 0.0f && to.keep_non_dominant == 1);
  float b4[4] = {1.0f, 1.0f, 1.0f, 1.0f}, t4[4] = {2.0f, -2.0f, 1.0f, 0.5f};
  to.p = 0.5f;
  to.keep_non_dominant = 0;
  EXPECT(tkm_thr_reweight(NULL, b4, t4, 4, 1.0f, &to, &cnt), TKM_STATUS_OK);
  CHECK(cnt == 2 && b4[0] == 1.5f && b4[1] == 0.5f && b4[2] == 0.0f && b4[3] == 0.0f);
  to.mode = TKM_THR_ONLY_DOMINANT;
  b4[2] = 1.0f;
  EXPECT(tkm_thr_reweight(NULL, b4, t4, 4, 1.0f, &to, NULL), TKM_STATUS_OK);
  CHECK(b4[0] == 1.5f && b4[2] == 0.0f);
  to.mode = 7;
  EXPECT(note(tkm_thr_reweight(NULL, b4, t4, 4, 1.0f, &to, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  to.mode = TKM_THR_STEER;
  to.struct_size = 2;
  EXPECT(note(tkm_thr_reweight(NULL, b4, t4, 4, 1.0f, &to, NULL)), TKM_STATUS_BAD_STRUCT_SIZE);
  t4[0] = NAN;
  EXPECT(note(tkm_thr_reweight(NULL, b4, t4, 4, 1.0f, NULL, NULL)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_thr_reweight(NULL, b4, b4, 4, 1.0f, NULL, NULL)), TKM_STATUS_OVERLAP);
  CHECK(b4[0] == 1.5f && b4[1] == 0.5f);
}

/* RMT: budget, length reward, curriculum, entropy tiers, position sampling, combined reward,
 * the NTP term; and the generic linear quantile. */
static void test_seed_rmt(void) {
  uint32_t b = 0, has = 9, found = 9;
  float r = POISON, v = POISON;
  EXPECT(tkm_rmt_token_budget(0, 100, 800, 1, 0.2f, &b), TKM_STATUS_OK);
  CHECK(b == 800);
  EXPECT(tkm_rmt_token_budget(100, 100, 800, 1, 0.2f, &b), TKM_STATUS_OK);
  CHECK(b == 160);
  EXPECT(note(tkm_rmt_token_budget(1, 0, 800, 1, 0.2f, &b)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_rmt_token_budget(1, 10, 800, 1, 0.2f, NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_rmt_length_reward(150, 100, 1.0f, &r), TKM_STATUS_OK);
  CHECK(r == 0.5f);
  EXPECT(note(tkm_rmt_length_reward(1, 0, 1.0f, &r)), TKM_STATUS_INVALID_ARGUMENT);

  tkm_rmt_curriculum_options co;
  float p3[3];
  EXPECT(note(tkm_rmt_curriculum_options_init(NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_rmt_curriculum_options_init(&co), TKM_STATUS_OK);
  CHECK(co.struct_size == sizeof co && co.t1_frac == 0.3f && co.p1[0] == 0.6f && co.p2[2] == 0.6f);
  EXPECT(tkm_rmt_curriculum_probs(0, 100, &co, p3), TKM_STATUS_OK);
  CHECK(p3[0] == 0.6f && p3[1] == 0.3f && p3[2] == 0.1f);
  EXPECT(tkm_rmt_curriculum_probs(99, 100, NULL, p3), TKM_STATUS_OK);
  CHECK(p3[2] == 0.6f);
  co.t1_frac = 0.9f;
  EXPECT(note(tkm_rmt_curriculum_probs(5, 100, &co, p3)), TKM_STATUS_INVALID_ARGUMENT);
  co.struct_size = 1;
  EXPECT(note(tkm_rmt_curriculum_probs(5, 100, &co, p3)), TKM_STATUS_BAD_STRUCT_SIZE);

  /* Entropies 0..5 (6 valid of 8): terciles at pos 5/3 and 10/3. */
  float ent[8] = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, NAN, NAN}, th[2];
  uint8_t m[8] = {1, 1, 1, 1, 1, 1, 0, 0}, tiers[8];
  size_t pos = 99;
  EXPECT(tkm_linear_quantile(NULL, m, ent, 2, 4, 0.5, &has, &v), TKM_STATUS_OK);
  CHECK(has == 1 && v == 2.5f);
  EXPECT(note(tkm_linear_quantile(NULL, m, ent, 2, 4, 1.5, &has, &v)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(tkm_entropy_tiers(NULL, m, ent, 2, 4, 1.0 / 3.0, 2.0 / 3.0, tiers, th), TKM_STATUS_OK);
  CHECK(tiers[0] == 1 && tiers[1] == 1 && tiers[2] == 2 && tiers[3] == 2 && tiers[4] == 3 && tiers[5] == 3);
  CHECK(tiers[6] == 0 && fabsf(th[0] - 5.0f / 3.0f) < 1e-6f && fabsf(th[1] - 10.0f / 3.0f) < 1e-6f);
  EXPECT(tkm_rmt_pick_position(tiers, 8, p3, 0.99, 0.0, &found, &pos), TKM_STATUS_OK);
  CHECK(found == 1 && pos == 4);
  EXPECT(note(tkm_rmt_pick_position(tiers, 8, p3, 1.0, 0.0, &found, &pos)), TKM_STATUS_INVALID_ARGUMENT);
  m[7] = 1;
  memset(tiers, 9, sizeof tiers);
  EXPECT(note(tkm_entropy_tiers(NULL, m, ent, 2, 4, 1.0 / 3.0, 2.0 / 3.0, tiers, NULL)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_entropy_tiers(NULL, m, ent, 2, 4, 0.7, 0.3, tiers, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  CHECK(tiers[0] == 9);

  float mt[2] = {1.0f, 0.0f}, lr[2] = {0.5f, 1.0f}, out2[2];
  EXPECT(tkm_rmt_combined_reward(mt, lr, 2, 0.5f, out2), TKM_STATUS_OK);
  CHECK(out2[0] == 0.75f && out2[1] == 0.5f);
  poison(out2, 2);
  EXPECT(note(tkm_rmt_combined_reward(mt, lr, 2, NAN, out2)), TKM_STATUS_INVALID_ARGUMENT);
  lr[0] = INFINITY;
  EXPECT(note(tkm_rmt_combined_reward(mt, lr, 2, 0.5f, out2)), TKM_STATUS_NON_FINITE);
  CHECK(untouched(out2, 2));

  uint8_t vm[4] = {1, 1, 1, 0}, rl[4] = {0, 1, 0, 0};
  float lp[4] = {-1.0f, NAN, -3.0f, NAN}, g4[4], loss = POISON;
  EXPECT(tkm_ntp_masked_loss(NULL, vm, rl, lp, 1, 4, &loss, g4), TKM_STATUS_OK);
  CHECK(loss == 2.0f && g4[0] == -0.5f && g4[1] == 0.0f && g4[2] == -0.5f && g4[3] == 0.0f);
  poison(g4, 4);
  rl[1] = 0;
  EXPECT(note(tkm_ntp_masked_loss(NULL, vm, rl, lp, 1, 4, &loss, g4)), TKM_STATUS_NON_FINITE);
  CHECK(untouched(g4, 4) && loss == 2.0f);
}

/* TW-GRPO: token weights from the logits forward's saved statistics, the loss, the rewards. */
#define TW_G 2
#define TW_T 3
#define TW_ROWS (2 * TW_G * TW_T)
static float tw_x[TW_ROWS * STRIDE];
static void test_tw_grpo(void) {
  uint8_t m[TW_ROWS];
  for (int r = 0; r < TW_ROWS; r++) m[r] = (uint8_t)(r % 5 != 4);
  for (int i = 0; i < TW_ROWS * STRIDE; i++) tw_x[i] = 4.0f * frand();
  tw_x[STRIDE + 7] = -INFINITY; /* a masked-vocabulary column */
  float lse[TW_ROWS], ent[TW_ROWS], mx[TW_ROWS], ls[TW_ROWS];
  EXPECT(tkm_logits_fwd(NULL, FWD_IN(TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, NULL, m, 1.0f, NULL), lse, ent, NULL,
                        mx, ls, NULL),
         TKM_STATUS_OK);
  tkm_tw_grpo_options o;
  EXPECT(tkm_tw_grpo_options_init(&o), TKM_STATUS_OK);
  CHECK(o.struct_size == sizeof o && o.group_size == 8 && o.alpha == 1.70f && o.clamp == 11.0f);
  o.group_size = TW_G;
  float w[TW_ROWS], w2[TW_ROWS];
  size_t bad = 99;
  poison(w, TW_ROWS);
  EXPECT(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, mx, ls, m, TW_T, &o, w, &bad),
         TKM_STATUS_OK);
  CHECK(bad == 0);
  int hit_alpha = 0;
  for (int r = 0; r < TW_ROWS; r++) {
    if (!m[r]) {
      CHECK(w[r] == 0.0f);
      continue;
    }
    CHECK(w[r] >= 1.0f && w[r] <= 1.70f + 1e-6f);
    hit_alpha |= fabsf(w[r] - 1.70f) < 1e-6f;
  }
  CHECK(hit_alpha);
  /* Every backend and two threads: the same bits. */
  tkm_exec_options e;
  tkm_exec_options_init(&e);
  e.threads = 2;
  e.backend = TKM_BACKEND_PORTABLE;
  EXPECT(tkm_tw_grpo_token_weights(&e, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, mx, ls, m, TW_T, &o, w2, NULL),
         TKM_STATUS_OK);
  CHECK(memcmp(w, w2, sizeof w) == 0);
  e.backend = TKM_BACKEND_AVX2_FMA;
  tkm_status s = tkm_tw_grpo_token_weights(&e, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, mx, ls, m, TW_T, &o, w2, NULL);
  CHECK(s == TKM_STATUS_OK || s == TKM_STATUS_BACKEND_UNAVAILABLE);
  if (s == TKM_STATUS_OK) CHECK(memcmp(w, w2, sizeof w) == 0);
  /* bf16 logits (their own statistics). */
  static uint16_t xb[TW_ROWS * VOCAB];
  for (int r = 0; r < TW_ROWS; r++)
    for (int v = 0; v < VOCAB; v++) xb[r * VOCAB + v] = f32_to_bf16_bits(tw_x[r * STRIDE + v] == -INFINITY ? 0.0f : tw_x[r * STRIDE + v]);
  EXPECT(tkm_logits_fwd(NULL, FWD_IN(TKM_DTYPE_BF16, xb, TW_ROWS, VOCAB, VOCAB, NULL, m, 1.0f, NULL), lse, ent, NULL, mx,
                        ls, NULL),
         TKM_STATUS_OK);
  EXPECT(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_BF16, xb, TW_ROWS, VOCAB, VOCAB, mx, ls, m, TW_T, &o, w2, NULL),
         TKM_STATUS_OK);
  for (int r = 0; r < TW_ROWS; r++) CHECK(m[r] ? (w2[r] >= 1.0f && w2[r] <= 1.70f + 1e-6f) : w2[r] == 0.0f);

  /* Loss and gradient: sum(w * l * m) / sum(m). */
  float l[TW_ROWS], g[TW_ROWS], L = POISON;
  double want = 0.0;
  int cnt = 0;
  for (int r = 0; r < TW_ROWS; r++) {
    l[r] = m[r] ? frand() : NAN;
    if (m[r]) {
      want += (double)w[r] * l[r];
      cnt++;
    }
  }
  EXPECT(tkm_tw_grpo_loss(NULL, m, l, w, TW_ROWS, &L, g), TKM_STATUS_OK);
  CHECK(fabs(L - want / cnt) < 1e-6);
  for (int r = 0; r < TW_ROWS; r++) CHECK(fabsf(g[r] - (m[r] ? w[r] / (float)cnt : 0.0f)) < 1e-7f);
  EXPECT(tkm_tw_grpo_loss(NULL, m, l, w, TW_ROWS, &L, NULL), TKM_STATUS_OK);

  /* Rewards. */
  const char *sol = "<answer>A, C</answer>", *half = "<answer>A</answer>";
  float r = POISON;
  EXPECT(tkm_tw_grpo_soft_multichoice_reward((const uint8_t *)half, strlen(half), (const uint8_t *)sol, strlen(sol), 0, &r),
         TKM_STATUS_OK);
  CHECK(r == 0.5f);
  EXPECT(tkm_tw_grpo_exact_multichoice_reward((const uint8_t *)half, strlen(half), (const uint8_t *)sol, strlen(sol), 0, &r),
         TKM_STATUS_OK);
  CHECK(r == 0.0f);
  EXPECT(tkm_tw_grpo_exact_multichoice_reward((const uint8_t *)half, strlen(half), (const uint8_t *)sol, strlen(sol), 1, &r),
         TKM_STATUS_OK);
  CHECK(r == 1.0f);
  const char *fmt = "<think>x</think>\n<answer>A</answer>!";
  EXPECT(tkm_tw_grpo_format_reward((const uint8_t *)fmt, strlen(fmt), &r), TKM_STATUS_OK);
  CHECK(r == 1.0f);
  EXPECT(tkm_tw_grpo_format_reward((const uint8_t *)fmt, 10, &r), TKM_STATUS_OK);
  CHECK(r == 0.0f);

  /* Errors: nothing written. */
  poison(w2, TW_ROWS);
  r = POISON;
  L = POISON;
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, 9, tw_x, TW_ROWS, VOCAB, STRIDE, mx, ls, m, TW_T, &o, w2, NULL)),
         TKM_STATUS_BAD_DTYPE);
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, VOCAB - 1, mx, ls, m, TW_T, &o, w2, NULL)),
         TKM_STATUS_BAD_STRIDE);
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS, 0, STRIDE, mx, ls, m, TW_T, &o, w2, NULL)),
         TKM_STATUS_EMPTY_VOCAB);
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS - 1, VOCAB, STRIDE, mx, ls, m, TW_T, &o, w2, NULL)),
         TKM_STATUS_LENGTH_MISMATCH);
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, mx, ls, m, 0, &o, w2, NULL)),
         TKM_STATUS_INVALID_ARGUMENT);
  o.group_size = 3;
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, mx, ls, m, TW_T, &o, w2, NULL)),
         TKM_STATUS_INVALID_ARGUMENT);
  o.group_size = TW_G;
  o.clamp = 0.0f;
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, mx, ls, m, TW_T, &o, w2, NULL)),
         TKM_STATUS_INVALID_ARGUMENT);
  o.clamp = 11.0f;
  o.struct_size = 3;
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, mx, ls, m, TW_T, &o, w2, NULL)),
         TKM_STATUS_BAD_STRUCT_SIZE);
  o.struct_size = sizeof o;
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, NULL, ls, m, TW_T, &o, w2, NULL)),
         TKM_STATUS_NULL_POINTER);
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, mx, ls, m, TW_T, &o, NULL, NULL)),
         TKM_STATUS_NULL_POINTER);
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, TW_ROWS, VOCAB, STRIDE, mx, ls, m, TW_T, &o, w2,
                                        (size_t *)((char *)&bad + 1))),
         TKM_STATUS_MISALIGNED);
  EXPECT(note(tkm_tw_grpo_token_weights(NULL, TKM_DTYPE_F32, tw_x, SIZE_MAX, VOCAB, STRIDE, mx, ls, m, TW_T, &o, w2, NULL)),
         TKM_STATUS_SIZE_OVERFLOW);
  CHECK(untouched(w2, TW_ROWS));
  EXPECT(note(tkm_tw_grpo_loss(NULL, m, l, w, TW_ROWS, NULL, NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(note(tkm_tw_grpo_loss(NULL, m, NULL, w, TW_ROWS, &L, NULL)), TKM_STATUS_NULL_POINTER);
  CHECK(L == POISON);
  const uint8_t bad_utf8[2] = {0xC3, 0x28};
  EXPECT(note(tkm_tw_grpo_format_reward(bad_utf8, 2, &r)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_tw_grpo_soft_multichoice_reward(bad_utf8, 2, (const uint8_t *)sol, strlen(sol), 0, &r)),
         TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_tw_grpo_soft_multichoice_reward((const uint8_t *)half, strlen(half), (const uint8_t *)sol, strlen(sol), 2, &r)),
         TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_tw_grpo_exact_multichoice_reward(NULL, 3, (const uint8_t *)sol, strlen(sol), 0, &r)),
         TKM_STATUS_NULL_POINTER);
  EXPECT(note(tkm_tw_grpo_format_reward((const uint8_t *)fmt, strlen(fmt), NULL)), TKM_STATUS_NULL_POINTER);
  CHECK(r == POISON);
  EXPECT(note(tkm_tw_grpo_options_init(NULL)), TKM_STATUS_NULL_POINTER);
}

/* HAPO: the spec's worked example, then every entry point and its error statuses. */
static void test_hapo(void) {
  const float h[8] = {0.001f, 0.01f, 0.1f, 0.3f, 0.5f, 1.0f, 2.0f, 3.0f};
  const uint8_t m8[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  float hh[8], hi8[8];
  tkm_hapo_norm nrm;
  EXPECT(tkm_hapo_entropy_norm(NULL, h, m8, 8, 0.8f, 1e-8f, TKM_HAPO_SIGN_CODE_COMPAT, hh, &nrm), TKM_STATUS_OK);
  CHECK(fabsf(hh[0] - 1.0f) < 2e-6f && fabsf(hh[1] - 0.697064f) < 2e-6f && hh[6] == 0.0f && fabsf(hh[7] - 1.0f) < 2e-6f);
  CHECK(fabsf(nrm.std - 3.552922f) < 1e-5f && nrm.scale_neg < 0.0f);
  EXPECT(tkm_hapo_entropy_norm(NULL, h, NULL, 8, 0.8f, 1e-8f, TKM_HAPO_SIGN_INTENDED, hi8, NULL), TKM_STATUS_OK);
  CHECK(fabsf(hi8[0] + 1.0f) < 2e-6f && fabsf(hi8[7] - 1.0f) < 2e-6f);

  /* Adaptive temperature: base temperature without statistics; within [base, 1.05 base]. */
  float bt[ROWS], tmp[ROWS];
  size_t nf = 99;
  for (int r = 0; r < ROWS; r++) bt[r] = 1.0f;
  EXPECT(tkm_hapo_adaptive_temperature(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, bt, NULL, 0.05f,
                                       TKM_HAPO_SIGN_CODE_COMPAT, tmp, &nf),
         TKM_STATUS_OK);
  CHECK(nf == 0 && memcmp(tmp, bt, sizeof tmp) == 0);
  EXPECT(tkm_hapo_adaptive_temperature(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, bt, &nrm, 0.05f,
                                       TKM_HAPO_SIGN_CODE_COMPAT, tmp, NULL),
         TKM_STATUS_OK);
  for (int r = 0; r < ROWS; r++) CHECK(tmp[r] >= 1.0f && tmp[r] <= 1.05f + 1e-6f);

  /* Token-level group advantage: a mixed group of two full rows gives +-1. */
  tkm_hapo_adv_options ao;
  EXPECT(tkm_hapo_adv_options_init(&ao), TKM_STATUS_OK);
  CHECK(ao.struct_size == sizeof ao && ao.norm_by_std == 1 && ao.pad_in_check == 1 && ao.mask_output == 0 &&
        ao.fallback_abs == 5.0f && ao.eps == 1e-6f);
  const float tr[4] = {0.0f, 1.0f, 0.0f, 0.0f};
  const uint8_t tm[4] = {1, 1, 1, 1};
  const uint32_t grp[2] = {7, 7};
  float adv[4];
  EXPECT(tkm_hapo_token_group_advantage(NULL, tr, tm, grp, 2, 2, &ao, adv), TKM_STATUS_OK);
  CHECK(fabsf(adv[0] - 1.0f) < 1e-5f && fabsf(adv[3] + 1.0f) < 1e-5f);

  /* Clip, redistribution, loss. */
  float lo[8], up[8], a2[8], ratio[8], lp[8], old[8], ad[8], l[8], g[8];
  EXPECT(tkm_hapo_adaptive_clip(NULL, hh, 8, 0.2f, 0.2f, 1.0f, lo, up), TKM_STATUS_OK);
  CHECK(lo[0] == 0.2f && fabsf(up[0] - 0.4f) < 1e-6f && up[6] == 0.2f);
  for (int i = 0; i < 8; i++) {
    ratio[i] = 1.0f;
    ad[i] = (i % 2) ? 1.0f : -1.0f;
    lp[i] = -1.0f;
    old[i] = -1.0f + 0.3f * frand();
  }
  EXPECT(tkm_hapo_redistribute(NULL, ad, hh, ratio, lo, up, 8, 1.0f, a2), TKM_STATUS_OK);
  CHECK(memcmp(a2, ad, sizeof a2) == 0); /* CodeCompat, r = 1: A' = A */
  tkm_hapo_stats hs;
  EXPECT(tkm_hapo_loss(NULL, lp, old, a2, m8, NULL, lo, up, 2, 4, 10.0f, l, g, &hs), TKM_STATUS_OK);
  CHECK(hs.valid == 8);
  for (int i = 0; i < 8; i++) {
    double r = exp((double)lp[i] - old[i]);
    CHECK(g[i] == 0.0f || fabs(g[i] + a2[i] * r) < 1e-5);
  }
  EXPECT(tkm_hapo_loss(NULL, lp, old, a2, m8, NULL, lo, up, 2, 4, 0.0f, l, g, NULL), TKM_STATUS_OK);

  /* Errors: nothing written. */
  poison(hh, 8);
  poison(tmp, ROWS);
  poison(adv, 4);
  poison(l, 8);
  EXPECT(note(tkm_hapo_entropy_norm(NULL, h, NULL, 8, 0.8f, 1e-8f, 7, hh, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_hapo_entropy_norm(NULL, h, NULL, 8, 1.5f, 1e-8f, 0, hh, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_hapo_entropy_norm(NULL, NULL, NULL, 8, 0.8f, 1e-8f, 0, hh, NULL)), TKM_STATUS_NULL_POINTER);
  CHECK(untouched(hh, 8));
  bt[2] = 0.0f;
  EXPECT(note(tkm_hapo_adaptive_temperature(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, bt, &nrm, 0.05f, 0, tmp, NULL)),
         TKM_STATUS_INVALID_TEMPERATURE);
  bt[2] = 1.0f;
  EXPECT(note(tkm_hapo_adaptive_temperature(NULL, 5, x, ROWS, VOCAB, STRIDE, bt, &nrm, 0.05f, 0, tmp, NULL)),
         TKM_STATUS_BAD_DTYPE);
  EXPECT(note(tkm_hapo_adaptive_temperature(NULL, TKM_DTYPE_F32, x, ROWS, 0, STRIDE, bt, &nrm, 0.05f, 0, tmp, NULL)),
         TKM_STATUS_EMPTY_VOCAB);
  EXPECT(note(tkm_hapo_adaptive_temperature(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, 10, bt, &nrm, 0.05f, 0, tmp, NULL)),
         TKM_STATUS_BAD_STRIDE);
  const float neg_inf_rows[4] = {-INFINITY, -INFINITY, 0.0f, 1.0f};
  EXPECT(note(tkm_hapo_adaptive_temperature(NULL, TKM_DTYPE_F32, neg_inf_rows, 2, 2, 2, bt, &nrm, 0.05f, 0, tmp, NULL)),
         TKM_STATUS_NO_FINITE_LOGIT);
  CHECK(untouched(tmp, ROWS));
  const float bad_r[4] = {0.0f, NAN, 0.0f, 0.0f};
  EXPECT(note(tkm_hapo_token_group_advantage(NULL, bad_r, tm, grp, 2, 2, &ao, adv)), TKM_STATUS_NON_FINITE);
  ao.mask_output = 2;
  EXPECT(note(tkm_hapo_token_group_advantage(NULL, tr, tm, grp, 2, 2, &ao, adv)), TKM_STATUS_INVALID_ARGUMENT);
  ao.mask_output = 0;
  ao.struct_size = 5;
  EXPECT(note(tkm_hapo_token_group_advantage(NULL, tr, tm, grp, 2, 2, &ao, adv)), TKM_STATUS_BAD_STRUCT_SIZE);
  EXPECT(note(tkm_hapo_token_group_advantage(NULL, tr, tm, grp, SIZE_MAX, 2, NULL, adv)), TKM_STATUS_SIZE_OVERFLOW);
  CHECK(untouched(adv, 4));
  EXPECT(note(tkm_hapo_adaptive_clip(NULL, h, 8, -0.2f, 0.2f, 1.0f, lo, up)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_hapo_redistribute(NULL, ad, h, ratio, lo, up, 8, NAN, a2)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_hapo_loss(NULL, lp, old, a2, m8, NULL, lo, up, 2, 4, 1.0f, l, g, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_hapo_loss(NULL, lp, old, a2, m8, NULL, NULL, up, 2, 4, 10.0f, l, g, NULL)), TKM_STATUS_NULL_POINTER);
  CHECK(untouched(l, 8));
}

/* Tokenizer inequity metrics: a worked example and every status they return. */
static void test_tokenizer_metrics(void) {
  const char *t = "ab a"; /* a:2 b:1 ' ':1 -> H = 1.5 bits, whitespace 1/4 */
  const uint8_t *u = (const uint8_t *)t;
  double x = -1.0;
  EXPECT(note(tkm_char_entropy_bits(u, 4, &x)), TKM_STATUS_OK);
  CHECK(x == 1.5);
  EXPECT(tkm_whitespace_proportion(u, 4, &x), TKM_STATUS_OK);
  CHECK(x == 0.25);
  EXPECT(tkm_bytes_per_token((const uint8_t *)"\xc3\xa9\xe2\x82\xac", 5, 2, &x), TKM_STATUS_OK); /* "é€" */
  CHECK(x == 2.5);
  EXPECT(tkm_chars_per_token((const uint8_t *)"\xc3\xa9\xe2\x82\xac", 5, 2, &x), TKM_STATUS_OK);
  CHECK(x == 1.0);
  tkm_text_counts c = {0, 0, 0};
  EXPECT(tkm_text_counts_add(u, 4, &c), TKM_STATUS_OK);
  EXPECT(tkm_text_counts_add((const uint8_t *)"\xe3\x80\x80", 3, &c), TKM_STATUS_OK); /* U+3000 */
  CHECK(c.bytes == 7 && c.chars == 5 && c.whitespace == 2);
  const uint32_t toks[3] = {3, 0, 7};
  uint64_t ctc = 0;
  EXPECT(tkm_corpus_token_count(toks, 3, &ctc), TKM_STATUS_OK);
  CHECK(ctc == 10);
  EXPECT(tkm_token_premium(15, 10, &x), TKM_STATUS_OK);
  CHECK(x == 1.5);
  EXPECT(tkm_byte_premium(5, 20, &x), TKM_STATUS_OK);
  CHECK(x == 0.25);
  const uint64_t counts[4] = {2, 0, 1, 1};
  EXPECT(tkm_char_entropy_bits_from_counts(counts, 4, &x), TKM_STATUS_OK);
  CHECK(x == 1.5);
  /* CTC = 1000 V^-0.5 exactly: a = 1000, b = -0.5, V*(20) = 2500, rounded to 2560. */
  const double v[3] = {100.0, 400.0, 1600.0}, y[3] = {100.0, 50.0, 25.0};
  tkm_power_law f;
  EXPECT(tkm_fit_power_law(v, y, 3, &f), TKM_STATUS_OK);
  CHECK(fabs(f.b + 0.5) < 1e-14 && fabs(f.a - 1000.0) < 1e-10 && fabs(f.r2 - 1.0) < 1e-14);
  EXPECT(tkm_power_law_optimal_vocab_size(&f, 20.0, &x), TKM_STATUS_OK);
  CHECK(fabs(x - 2500.0) < 1e-9);
  EXPECT(tkm_optimal_vocab_size(1000.0, -0.5, 20.0, &x), TKM_STATUS_OK);
  CHECK(fabs(x - 2500.0) < 1e-9);
  uint64_t r = 0;
  EXPECT(tkm_round_vocab(x, 128, &r), TKM_STATUS_OK);
  CHECK(r == 2560);

  /* Errors: nothing written. */
  x = -7.0;
  r = 5;
  const uint8_t bad_utf8[2] = {'a', 0xff};
  EXPECT(note(tkm_whitespace_proportion(bad_utf8, 2, &x)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_token_premium(1, 0, &x)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_byte_premium(1, 0, &x)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_bytes_per_token(u, 4, 0, &x)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_chars_per_token(u, 4, 0, &x)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_char_entropy_bits(NULL, 3, &x)), TKM_STATUS_NULL_POINTER);
  const uint64_t huge[2] = {UINT64_MAX, 1};
  EXPECT(note(tkm_char_entropy_bits_from_counts(huge, 2, &x)), TKM_STATUS_SIZE_OVERFLOW);
  const double vnan[2] = {100.0, NAN};
  EXPECT(note(tkm_fit_power_law(vnan, y, 2, &f)), TKM_STATUS_NON_FINITE);
  const double vsame[2] = {100.0, 100.0};
  EXPECT(note(tkm_fit_power_law(vsame, y, 2, &f)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_optimal_vocab_size(1000.0, 0.0, 20.0, &x)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_power_law_optimal_vocab_size(NULL, 20.0, &x)), TKM_STATUS_NULL_POINTER);
  EXPECT(note(tkm_round_vocab(1e30, 1, &r)), TKM_STATUS_SIZE_OVERFLOW);
  EXPECT(note(tkm_round_vocab(10.0, 0, &r)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_corpus_token_count(NULL, 2, &ctc)), TKM_STATUS_NULL_POINTER);
  EXPECT(note(tkm_text_counts_add(u, 4, NULL)), TKM_STATUS_NULL_POINTER);
  CHECK(x == -7.0 && r == 5 && ctc == 10 && c.bytes == 7);
  CHECK(fabs(f.b + 0.5) < 1e-14);
}

/* UniCTokens: k-means on three separated blobs, frozen-row restore, the diff mask. */
static void test_unictokens(void) {
  float rows[12 * 2];
  const float centres[3][2] = {{0.0f, 0.0f}, {100.0f, 0.0f}, {0.0f, 100.0f}};
  const float d[4][2] = {{-1.0f, 0.0f}, {1.0f, 0.0f}, {0.0f, 1.0f}, {0.0f, -1.0f}};
  for (int b = 0; b < 3; b++)
    for (int j = 0; j < 4; j++) {
      rows[(b * 4 + j) * 2] = centres[b][0] + d[j][0];
      rows[(b * 4 + j) * 2 + 1] = centres[b][1] + d[j][1];
    }
  float out[6], out2[6];
  size_t steps = 0;
  EXPECT(note(tkm_kmeans_init(rows, 12, 2, 3, 0, TKM_KMEANS_DEFAULT_ITERS, out, &steps)), TKM_STATUS_OK);
  CHECK(steps >= 1 && steps <= 3);
  for (int b = 0; b < 3; b++) {
    int found = 0;
    for (int j = 0; j < 3; j++) found += out[j * 2] == centres[b][0] && out[j * 2 + 1] == centres[b][1];
    CHECK(found == 1);
  }
  EXPECT(tkm_kmeans_init(rows, 12, 2, 3, 0, TKM_KMEANS_DEFAULT_ITERS, out2, NULL), TKM_STATUS_OK);
  CHECK(memcmp(out, out2, sizeof out) == 0); /* deterministic */
  poison(out2, 6);
  EXPECT(note(tkm_kmeans_init(rows, 2, 2, 3, 0, 10, out2, NULL)), TKM_STATUS_INVALID_ARGUMENT); /* n < k */
  rows[5] = NAN;
  EXPECT(note(tkm_kmeans_init(rows, 12, 2, 3, 0, 10, out2, NULL)), TKM_STATUS_NON_FINITE);
  rows[5] = 0.0f;
  EXPECT(note(tkm_kmeans_init(rows, SIZE_MAX, 2, 3, 0, 10, out2, NULL)), TKM_STATUS_SIZE_OVERFLOW);
  EXPECT(note(tkm_kmeans_init(rows, 12, 2, 3, 0, 10, NULL, NULL)), TKM_STATUS_NULL_POINTER);
  CHECK(untouched(out2, 6));

  float table[8] = {9, 9, 9, 9, 9, 9, 9, 9};
  const float orig[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  const uint8_t trainable[4] = {0, 1, 0, 1};
  EXPECT(note(tkm_restore_frozen_rows(TKM_DTYPE_F32, table, orig, 4, 2, trainable)), TKM_STATUS_OK);
  const float want[8] = {1, 2, 9, 9, 5, 6, 9, 9};
  CHECK(memcmp(table, want, sizeof want) == 0);
  uint16_t tb[4] = {7, 7, 7, 7};
  const uint16_t ob[4] = {1, 2, 3, 4};
  EXPECT(tkm_restore_frozen_rows(TKM_DTYPE_BF16, tb, ob, 4, 1, trainable), TKM_STATUS_OK);
  CHECK(tb[0] == 1 && tb[1] == 7 && tb[2] == 3 && tb[3] == 7);
  EXPECT(note(tkm_restore_frozen_rows(42, table, orig, 4, 2, trainable)), TKM_STATUS_BAD_DTYPE);
  EXPECT(note(tkm_restore_frozen_rows(TKM_DTYPE_F32, table, table + 1, 2, 2, trainable)), TKM_STATUS_OVERLAP);
  EXPECT(note(tkm_restore_frozen_rows(TKM_DTYPE_F32, table, (const char *)orig + 1, 2, 2, trainable)), TKM_STATUS_MISALIGNED);
  EXPECT(note(tkm_restore_frozen_rows(TKM_DTYPE_F32, table, NULL, 4, 2, trainable)), TKM_STATUS_NULL_POINTER);
  EXPECT(note(tkm_restore_frozen_rows(TKM_DTYPE_F32, table, orig, SIZE_MAX, 2, trainable)), TKM_STATUS_SIZE_OVERFLOW);
  CHECK(memcmp(table, want, sizeof want) == 0);

  const uint32_t a[4] = {1, 2, 3, 4}, b10[4] = {1, 9, 3, 4}, fin[4] = {1, 9, 7, 0};
  uint8_t mask[4] = {7, 7, 7, 7};
  EXPECT(note(tkm_token_diff_mask(a, b10, fin, 4, mask)), TKM_STATUS_OK);
  CHECK(mask[0] == 0 && mask[1] == 1 && mask[2] == 0 && mask[3] == 0);
  uint8_t m2[4] = {7, 7, 7, 7};
  EXPECT(note(tkm_token_diff_mask(a, NULL, fin, 4, m2)), TKM_STATUS_NULL_POINTER);
  CHECK(m2[0] == 7 && m2[3] == 7);
}

/* Preference losses: DPO, SimPO, T-REG, cDPO scores (f32/bf16, strided), cDPO loss, pass@k. */
static double softplus_d(double v) { return fmax(v, 0.0) + log1p(exp(-fabs(v))); }
static double sigmoid_d(double v) { return 1.0 / (1.0 + exp(-v)); }

static void test_preference(void) {
  enum { PR = 2, PT = 3, PN = PR * PT };
  float lp[PN] = {-1, -2, -0.5f, -0.2f, -3, -1};
  float rl[PN] = {-1.5f, -1, -0.5f, -0.4f, -2, -1};
  uint8_t mask[PN] = {1, 1, 0, 1, 0, 1};
  float rho[PR], g[PN], loss[PR], dl[PR], m[PR], w[PR], gr[PR], one = POISON;
  tkm_dpo_options dpo;
  tkm_simpo_options so;
  tkm_treg_reg_options ro;
  tkm_treg_options to;
  tkm_cdpo_options co;
  double pk = -1.0;

  EXPECT(note(tkm_dpo_options_init(NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(tkm_dpo_options_init(&dpo), TKM_STATUS_OK);
  CHECK(dpo.struct_size == sizeof dpo && dpo.beta == 0.1f && dpo.label_smoothing == 0.0f);
  EXPECT(tkm_simpo_options_init(&so), TKM_STATUS_OK);
  CHECK(so.beta == 0.1f && so.gamma == 0.5f && so.label_smoothing == 0.0f);
  EXPECT(tkm_treg_reg_options_init(&ro), TKM_STATUS_OK);
  CHECK(ro.beta == 0.1f && ro.reduction == TKM_REDUCTION_SUM);
  EXPECT(tkm_treg_options_init(&to), TKM_STATUS_OK);
  CHECK(to.alpha == 0.25f && to.label_smoothing == 0.0f && to.stop_grad_weight == 1);
  EXPECT(tkm_cdpo_options_init(&co), TKM_STATUS_OK);
  CHECK(co.beta == 0.1f && co.only_neg == 1 && co.form == TKM_CDPO_POSITIONWISE_CODE);

  /* Sequence log-ratios and their backward. */
  EXPECT(tkm_seq_logratio(NULL, mask, lp, rl, PR, PT, rho), TKM_STATUS_OK);
  CHECK(fabsf(rho[0] - (0.5f - 1.0f)) < 1e-6f && fabsf(rho[1] - 0.2f) < 1e-6f);
  EXPECT(tkm_seq_logratio_bwd(NULL, mask, rho, PR, PT, g), TKM_STATUS_OK);
  CHECK(g[0] == rho[0] && g[2] == 0.0f && g[3] == rho[1] && g[4] == 0.0f);
  EXPECT(note(tkm_seq_logratio(NULL, mask, lp, rl, SIZE_MAX, 2, rho)), TKM_STATUS_SIZE_OVERFLOW);

  /* DPO with label smoothing 0.1: loss and dl/dh against the formula. */
  dpo.beta = 0.5f;
  dpo.label_smoothing = 0.1f;
  {
    float rw[PR] = {1.0f, -2.0f}, rj[PR] = {0.0f, 1.0f};
    EXPECT(tkm_dpo_loss(NULL, rw, rj, PR, &dpo, loss, dl, m), TKM_STATUS_OK);
    for (int i = 0; i < PR; i++) {
      double h = 0.5 * ((double)rw[i] - rj[i]);
      CHECK(fabs(m[i] - h) < 1e-7);
      CHECK(fabs(loss[i] - (0.9 * softplus_d(-h) + 0.1 * softplus_d(h))) < 1e-6);
      CHECK(fabs(dl[i] - (-0.9 * sigmoid_d(-h) + 0.1 * sigmoid_d(h))) < 1e-6);
    }
    dpo.beta = 0.0f;
    poison(loss, PR);
    EXPECT(note(tkm_dpo_loss(NULL, rw, rj, PR, &dpo, loss, dl, NULL)), TKM_STATUS_INVALID_ARGUMENT);
    CHECK(untouched(loss, PR));
    dpo.struct_size = 5;
    EXPECT(note(tkm_dpo_loss(NULL, rw, rj, PR, &dpo, loss, dl, NULL)), TKM_STATUS_BAD_STRUCT_SIZE);
    EXPECT(note(tkm_dpo_loss(NULL, NULL, rj, PR, NULL, loss, dl, NULL)), TKM_STATUS_NULL_POINTER);
  }

  /* SimPO: h = beta/|y_w| s_w - beta/|y_l| s_l - gamma; a zero length is an error. */
  {
    float sw[1] = {-6.0f}, sl[1] = {-12.0f};
    uint32_t lw[1] = {3}, ll[1] = {4}, zero[1] = {0};
    double h = 0.1 * -2.0 - 0.1 * -3.0 - 0.5;
    EXPECT(tkm_simpo_loss(NULL, sw, lw, sl, ll, 1, NULL, loss, dl, m), TKM_STATUS_OK);
    CHECK(fabs(m[0] - h) < 1e-7 && fabs(loss[0] - softplus_d(-h)) < 1e-6);
    poison(loss, 1);
    EXPECT(note(tkm_simpo_loss(NULL, sw, zero, sl, ll, 1, NULL, loss, dl, NULL)), TKM_STATUS_INVALID_ARGUMENT);
    CHECK(untouched(loss, 1));
  }

  /* T-REG token rewards, regulariser and total loss. */
  {
    float rh[PN];
    EXPECT(tkm_treg_token_rewards(NULL, mask, lp, rl, PN, rh), TKM_STATUS_OK);
    for (int i = 0; i < PN; i++)
      CHECK(fabs(rh[i] - (mask[i] ? sigmoid_d((double)lp[i] - rl[i]) - 0.5 : 0.0)) < 1e-7);
    ro.reduction = TKM_REDUCTION_MEAN_OVER_MASK;
    EXPECT(tkm_treg_reg_loss(NULL, mask, lp, rh, PR, PT, &ro, loss, g), TKM_STATUS_OK);
    CHECK(fabs(loss[0] - (-0.1 * ((double)rh[0] * lp[0] + (double)rh[1] * lp[1]) / 2.0)) < 1e-7);
    CHECK(g[2] == 0.0f && fabs(g[0] - (-0.1 * rh[0] / 2.0)) < 1e-8);
    ro.reduction = 7;
    EXPECT(note(tkm_treg_reg_loss(NULL, mask, lp, rh, PR, PT, &ro, loss, g)), TKM_STATUS_INVALID_ARGUMENT);
    float h[PR] = {0.3f, -1.0f}, regw[PR] = {0.2f, 0.4f}, regl[PR] = {-0.1f, 0.3f};
    EXPECT(tkm_treg_loss(NULL, h, regw, regl, PR, &to, loss, dl, gr, w), TKM_STATUS_OK);
    for (int i = 0; i < PR; i++) {
      double ww = sigmoid_d(-h[i]);
      CHECK(fabs(w[i] - ww) < 1e-7 && fabs(gr[i] - 0.25 * ww) < 1e-7);
      CHECK(fabs(loss[i] - (softplus_d(-h[i]) + 0.25 * ww * ((double)regw[i] + regl[i]))) < 1e-6);
      CHECK(fabs(dl[i] - (-sigmoid_d(-h[i]))) < 1e-6);
    }
    to.stop_grad_weight = 2;
    EXPECT(note(tkm_treg_loss(NULL, h, regw, regl, PR, &to, loss, dl, gr, NULL)), TKM_STATUS_INVALID_ARGUMENT);
    to.stop_grad_weight = 1;
    to.alpha = -1.0f;
    EXPECT(note(tkm_treg_loss(NULL, h, regw, regl, PR, &to, loss, dl, gr, NULL)), TKM_STATUS_INVALID_ARGUMENT);
  }

  /* cDPO scores: f32 strided vs a double reference, bf16 vs the same scores on bf16-rounded logits. */
  {
    enum { CR = 3, CV = 700, CS = 705 };
    static float p[CR * CS], q[CR * CS], pr[CR * CS], qr[CR * CS];
    static uint16_t pb[CR * CS], qb[CR * CS];
    uint32_t tg[CR] = {5, 699, 0};
    float sc[CR], sc2[CR];
    size_t nf = 99;
    for (int i = 0; i < CR * CS; i++) {
      p[i] = 4.0f * frand();
      q[i] = 4.0f * frand();
      pb[i] = f32_to_bf16_bits(p[i]);
      qb[i] = f32_to_bf16_bits(q[i]);
      uint32_t u = (uint32_t)pb[i] << 16, v = (uint32_t)qb[i] << 16;
      memcpy(&pr[i], &u, 4);
      memcpy(&qr[i], &v, 4);
    }
    p[CS + 7] = -INFINITY; /* masked in the positive model */
    q[2 * CS + 9] = -INFINITY; /* masked in the negative model */
    EXPECT(tkm_cdpo_ce_scores(NULL, TKM_DTYPE_F32, p, CS, q, CS, CR, CV, tg, 1.0f, sc, &nf), TKM_STATUS_OK);
    CHECK(nf == 0);
    for (int r = 0; r < CR; r++) {
      double mx = -INFINITY, s = 0, zt = 0;
      for (int c = 0; c < CV; c++) {
        float a = p[r * CS + c], b = q[r * CS + c];
        double z = (a == -INFINITY || b == -INFINITY) ? -INFINITY : 2.0 * a - b;
        if (z > mx) mx = z;
      }
      for (int c = 0; c < CV; c++) {
        float a = p[r * CS + c], b = q[r * CS + c];
        double z = (a == -INFINITY || b == -INFINITY) ? -INFINITY : 2.0 * a - b;
        s += exp(z - mx);
        if ((uint32_t)c == tg[r]) zt = z;
      }
      CHECK(fabs(sc[r] - exp(zt - mx - log(s))) < 1e-6);
    }
    {
      tkm_exec_options eo;
      EXPECT(tkm_exec_options_init(&eo), TKM_STATUS_OK);
      eo.threads = 2;
      EXPECT(tkm_cdpo_ce_scores(&eo, TKM_DTYPE_BF16, pb, CS, qb, CS, CR, CV, tg, 1.0f, sc, NULL), TKM_STATUS_OK);
      EXPECT(tkm_cdpo_ce_scores(NULL, TKM_DTYPE_F32, pr, CS, qr, CS, CR, CV, tg, 1.0f, sc2, NULL), TKM_STATUS_OK);
      CHECK(memcmp(sc, sc2, sizeof sc) == 0);
    }
    poison(sc, CR);
    EXPECT(note(tkm_cdpo_ce_scores(NULL, 9, p, CS, q, CS, CR, CV, tg, 1.0f, sc, NULL)), TKM_STATUS_BAD_DTYPE);
    EXPECT(note(tkm_cdpo_ce_scores(NULL, TKM_DTYPE_F32, p, 10, q, CS, CR, CV, tg, 1.0f, sc, NULL)), TKM_STATUS_BAD_STRIDE);
    EXPECT(note(tkm_cdpo_ce_scores(NULL, TKM_DTYPE_F32, p, CS, q, CS, CR, 0, tg, 1.0f, sc, NULL)), TKM_STATUS_EMPTY_VOCAB);
    EXPECT(note(tkm_cdpo_ce_scores(NULL, TKM_DTYPE_F32, p, CS, q, CS, CR, 600, tg, 1.0f, sc, NULL)),
           TKM_STATUS_LABEL_OUT_OF_RANGE);
    EXPECT(note(tkm_cdpo_ce_scores(NULL, TKM_DTYPE_F32, p, CS, q, CS, CR, CV, tg, -1.0f, sc, NULL)),
           TKM_STATUS_INVALID_ARGUMENT);
    EXPECT(note(tkm_cdpo_ce_scores(NULL, TKM_DTYPE_F32, NULL, CS, q, CS, CR, CV, tg, 1.0f, sc, NULL)),
           TKM_STATUS_NULL_POINTER);
    EXPECT(note(tkm_cdpo_ce_scores(NULL, TKM_DTYPE_F32, (const char *)p + 1, CS, q, CS, CR, CV, tg, 1.0f, sc, NULL)),
           TKM_STATUS_MISALIGNED);
    CHECK(untouched(sc, CR));
    {
      float ninf[2] = {-INFINITY, -INFINITY}, fin[2] = {0.0f, 1.0f};
      uint32_t t0[1] = {0};
      EXPECT(note(tkm_cdpo_ce_scores(NULL, TKM_DTYPE_F32, fin, 2, ninf, 2, 1, 2, t0, 1.0f, sc, NULL)),
             TKM_STATUS_NO_FINITE_LOGIT);
    }
  }

  /* cDPO loss: positionwise, only_neg, against the formula. */
  {
    float dw[PN] = {0.1f, -0.2f, 0.3f, 0.0f, 0.5f, -0.1f}, dlr[PN] = {0.2f, 0.1f, -0.3f, 0.4f, 0.0f, 0.2f};
    float v[PN] = {1, 0.5f, 0.2f, 1, 1, 0.3f}, gw[PN], gl[PN];
    uint8_t ml[PN] = {1, 1, 1, 0, 1, 1};
    double want = 0;
    for (int i = 0; i < PN; i++) {
      double hh = 0.1 * ((mask[i] ? dw[i] : 0.0) - (ml[i] ? (double)v[i] * dlr[i] : 0.0));
      want += softplus_d(-hh) / PN;
    }
    EXPECT(tkm_cdpo_loss(NULL, mask, ml, dw, dlr, NULL, v, PR, PT, NULL, &one, gw, gl), TKM_STATUS_OK);
    CHECK(fabs(one - want) < 1e-6 && gw[2] == 0.0f && gl[3] == 0.0f);
    co.only_neg = 0; /* needs c */
    EXPECT(note(tkm_cdpo_loss(NULL, mask, ml, dw, dlr, NULL, v, PR, PT, &co, &one, gw, gl)), TKM_STATUS_INVALID_ARGUMENT);
    co.only_neg = 1;
    co.form = 5;
    EXPECT(note(tkm_cdpo_loss(NULL, mask, ml, dw, dlr, NULL, v, PR, PT, &co, &one, gw, gl)), TKM_STATUS_INVALID_ARGUMENT);
    co.form = TKM_CDPO_SEQUENCE_WEIGHTED;
    EXPECT(tkm_cdpo_loss(NULL, mask, ml, dw, dlr, NULL, v, PR, PT, &co, &one, gw, gl), TKM_STATUS_OK);
    EXPECT(note(tkm_cdpo_loss(NULL, mask, ml, dw, dlr, NULL, v, 0, PT, &co, &one, gw, gl)), TKM_STATUS_INVALID_ARGUMENT);
  }

  /* pass@k. */
  EXPECT(tkm_pass_at_k(10, 3, 2, &pk), TKM_STATUS_OK);
  CHECK(fabs(pk - (1.0 - 21.0 / 45.0)) < 1e-15);
  EXPECT(tkm_pass_at_k(1000000, 1, 1, &pk), TKM_STATUS_OK);
  CHECK(fabs(pk - 1e-6) < 1e-20);
  EXPECT(note(tkm_pass_at_k(5, 6, 1, &pk)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_pass_at_k(5, 1, 1, NULL)), TKM_STATUS_NULL_POINTER);
}

/* TVM: prefix-trie value labels, value losses, beam-step selection. */
static void test_tvm(void) {
  uint32_t tok[7] = {1, 2, 3, 1, 2, 4, 5};
  size_t offs[4] = {0, 3, 6, 7}, bad_offs[4] = {0, 4, 3, 7}, idx[3], nout = 99;
  uint8_t oc[3] = {1, 0, 1}, bad_oc[3] = {1, 2, 1}, vm[3] = {1, 1, 0};
  float lab[7], want[7] = {0.5f, 0.5f, 1.0f, 0.5f, 0.5f, 0.0f, 1.0f};
  float px[3] = {0.3f, -1.2f, 9.0f}, py[3] = {0.5f, 1.0f, 0.0f}, g[3], L = POISON;
  float sc[5] = {0.1f, NAN, 0.7f, 0.7f, -2.0f};
  EXPECT(tkm_tvm_prefix_value_labels(tok, 7, offs, oc, 3, lab), TKM_STATUS_OK);
  CHECK(memcmp(lab, want, sizeof lab) == 0);
  poison(lab, 7);
  EXPECT(note(tkm_tvm_prefix_value_labels(tok, 7, bad_offs, oc, 3, lab)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_tvm_prefix_value_labels(tok, 7, offs, bad_oc, 3, lab)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_tvm_prefix_value_labels(tok, 7, offs, oc, SIZE_MAX, lab)), TKM_STATUS_SIZE_OVERFLOW);
  EXPECT(note(tkm_tvm_prefix_value_labels(NULL, 7, offs, oc, 3, lab)), TKM_STATUS_NULL_POINTER);
  CHECK(untouched(lab, 7));

  EXPECT(tkm_value_loss(NULL, vm, px, py, 3, TKM_VALUE_LOSS_MSE, &L, g), TKM_STATUS_OK);
  {
    double p0 = sigmoid_d(px[0]), p1 = sigmoid_d(px[1]);
    CHECK(fabs(L - ((p0 - 0.5) * (p0 - 0.5) + (p1 - 1.0) * (p1 - 1.0)) / 2.0) < 1e-7);
    CHECK(fabs(g[0] - (p0 - 0.5) * p0 * (1 - p0)) < 1e-7 && g[2] == 0.0f);
  }
  EXPECT(tkm_value_loss(NULL, vm, px, py, 3, TKM_VALUE_LOSS_BCE, &L, g), TKM_STATUS_OK);
  CHECK(fabs(L - (softplus_d(px[0]) - 0.5 * px[0] + softplus_d(px[1]) - px[1]) / 2.0) < 1e-7);
  EXPECT(note(tkm_value_loss(NULL, vm, px, py, 3, 7, &L, g)), TKM_STATUS_INVALID_ARGUMENT);

  EXPECT(tkm_beam_step_select(sc, 5, 3, idx, &nout), TKM_STATUS_OK);
  CHECK(nout == 3 && idx[0] == 2 && idx[1] == 3 && idx[2] == 0);
  EXPECT(tkm_beam_step_select(sc, 5, 0, NULL, &nout), TKM_STATUS_OK);
  CHECK(nout == 0);
  EXPECT(note(tkm_beam_step_select(sc, 5, 3, idx, NULL)), TKM_STATUS_NULL_POINTER);
  EXPECT(note(tkm_beam_step_select(sc, 5, 3, NULL, &nout)), TKM_STATUS_NULL_POINTER);
}

/* Exploration bonuses: counts, the E3B rank-1 update against its closed form (d = 1),
 * RND/NovelD, combination, running-moment merge and reward assembly; every status they return. */
static void test_exploration(void) {
  uint64_t g[3] = {1, 4, 9}, e[3] = {1, 2, 1}, zero_count[1] = {0};
  float out[8], out2[8];
  EXPECT(tkm_count_bonuses(g, e, 3, TKM_EPISODIC_FIRST_VISIT, out), TKM_STATUS_OK);
  CHECK(out[0] == 1.0f && out[1] == 0.0f && fabsf(out[2] - 1.0f / 3.0f) < 1e-7f);
  poison(out, 8);
  EXPECT(note(tkm_count_bonuses(NULL, NULL, 3, TKM_EPISODIC_FIRST_VISIT, out)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_count_bonuses(zero_count, NULL, 1, TKM_EPISODIC_INV_SQRT, out)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_count_bonuses(g, NULL, 3, TKM_EPISODIC_FIRST_VISIT, NULL)), TKM_STATUS_NULL_POINTER);
  CHECK(untouched(out, 8));

  uint64_t keys[4] = {0}, counts[4] = {0}, visit[3] = {5, 5, 0}, seen_n[3];
  EXPECT(tkm_count_table_visit(keys, counts, 4, visit, 3, seen_n), TKM_STATUS_OK);
  CHECK(seen_n[0] == 1 && seen_n[1] == 2 && seen_n[2] == 1);
  EXPECT(note(tkm_count_table_visit(keys, counts, 4, visit, 3, seen_n)), TKM_STATUS_INVALID_ARGUMENT); /* no room */
  EXPECT(note(tkm_count_table_visit(keys, keys, 4, visit, 1, seen_n)), TKM_STATUS_OVERLAP);

  /* E3B with d = 1: b_t = phi_t^2 / (lambda + sum_{s<t} phi_s^2); the first step reports 0. */
  tkm_e3b_options eo;
  EXPECT(tkm_e3b_options_init(&eo), TKM_STATUS_OK);
  CHECK(eo.struct_size == sizeof eo && eo.ridge == 0.1f && eo.sym_every == 64 && eo.zero_first_step == 1);
  float cinv[2], phi[2] = {0.5f, 2.0f}, scr[2], bonus[2];
  uint64_t steps[2] = {0, 0};
  EXPECT(tkm_e3b_reset(&eo, 2, 1, cinv), TKM_STATUS_OK);
  CHECK(cinv[0] == 10.0f && cinv[1] == 10.0f);
  steps[1] = 1; /* environment 1 reports its bonus */
  EXPECT(tkm_e3b_step(NULL, &eo, 2, 1, cinv, phi, steps, scr, bonus), TKM_STATUS_OK);
  CHECK(bonus[0] == 0.0f && fabsf(bonus[1] - 40.0f) < 1e-4f);
  EXPECT(tkm_e3b_step(NULL, &eo, 2, 1, cinv, phi, steps, scr, bonus), TKM_STATUS_OK);
  CHECK(fabsf(bonus[1] - 4.0f / 4.1f) < 1e-5f); /* 4 / (0.1 + 4) */
  float keep = cinv[0];
  phi[0] = NAN;
  poison(bonus, 2);
  EXPECT(note(tkm_e3b_step(NULL, &eo, 2, 1, cinv, phi, steps, scr, bonus)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_e3b_step(NULL, &eo, 2, 1, cinv, cinv, steps, scr, bonus)), TKM_STATUS_OVERLAP);
  EXPECT(note(tkm_e3b_step(NULL, &eo, 2, 0, cinv, phi, steps, scr, bonus)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_e3b_step(NULL, &eo, SIZE_MAX, 2, cinv, phi, steps, scr, bonus)), TKM_STATUS_SIZE_OVERFLOW);
  CHECK(cinv[0] == keep && untouched(bonus, 2));
  eo.struct_size = 3;
  EXPECT(note(tkm_e3b_reset(&eo, 2, 1, cinv)), TKM_STATUS_BAD_STRUCT_SIZE);

  float pred[4] = {3, 0, 1, 1}, targ[4] = {0, 4, 1, 1};
  EXPECT(tkm_rnd_error(NULL, 2, 2, pred, targ, out), TKM_STATUS_OK);
  CHECK(out[0] == 5.0f && out[1] == 0.0f);
  float en[2] = {1.0f, 0.5f}, ec[2] = {2.0f, 1.0f};
  EXPECT(tkm_noveld_bonus(2, en, ec, 0.1f, out), TKM_STATUS_OK);
  CHECK(fabsf(out[0] - 0.8f) < 1e-7f && fabsf(out[1] - 0.4f) < 1e-7f);
  EXPECT(note(tkm_noveld_bonus(2, en, ec, -1.0f, out)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(tkm_combine_bonuses(2, en, ec, TKM_COMBINE_ADD, 1.0f, out), TKM_STATUS_OK);
  CHECK(out[0] == 3.0f && out[1] == 1.5f);
  EXPECT(tkm_combine_bonuses(2, en, ec, TKM_COMBINE_MULT, 0.0f, out), TKM_STATUS_OK);
  CHECK(out[0] == 2.0f && out[1] == 0.5f);

  /* Assembly: one process vs two ranks (partials merged in rank order). */
  float re[8], ri[8];
  for (int i = 0; i < 8; i++) {
    re[i] = frand() - 0.5f;
    ri[i] = 0.3f * frand();
  }
  tkm_assemble_options ao;
  EXPECT(tkm_assemble_options_init(&ao), TKM_STATUS_OK);
  CHECK(ao.norm == TKM_REWARD_NORM_INT && ao.intrinsic_coef == 1.0f && ao.clip == 1 && ao.compat == TKM_MOMENTS_LIBRARY);
  tkm_running_moments m = {0, 0, 0}, p1, p2, merged, state, zero = {0, 0, 0};
  EXPECT(tkm_assemble_rewards(8, re, ri, &ao, &m, 1, out), TKM_STATUS_OK);
  CHECK(m.count == 8.0);
  EXPECT(tkm_reward_norm_batch_moments(3, re, ri, &ao, &p1), TKM_STATUS_OK);
  EXPECT(tkm_reward_norm_batch_moments(5, re + 3, ri + 3, &ao, &p2), TKM_STATUS_OK);
  EXPECT(tkm_running_moments_merge(&p1, &p2, &merged), TKM_STATUS_OK);
  EXPECT(tkm_running_moments_merge(&zero, &merged, &state), TKM_STATUS_OK);
  CHECK(state.count == m.count && fabs(state.m2 - m.m2) <= 1e-13 * m.m2);
  EXPECT(tkm_assemble_rewards(5, re + 3, ri + 3, &ao, &state, 0, out2), TKM_STATUS_OK);
  for (int i = 0; i < 5; i++) CHECK(fabsf(out2[i] - out[3 + i]) <= 1e-6f * fabsf(out[3 + i]) + 1e-30f);
  poison(out, 8);
  ri[2] = INFINITY;
  EXPECT(note(tkm_assemble_rewards(8, re, ri, &ao, &m, 1, out)), TKM_STATUS_NON_FINITE);
  ri[2] = 0.0f;
  EXPECT(note(tkm_assemble_rewards(8, re, ri, &ao, &m, 1, re)), TKM_STATUS_OVERLAP);
  EXPECT(note(tkm_assemble_rewards(8, re, ri, &ao, NULL, 1, out)), TKM_STATUS_NULL_POINTER);
  ao.norm = 42;
  EXPECT(note(tkm_assemble_rewards(8, re, ri, &ao, &m, 1, out)), TKM_STATUS_INVALID_ARGUMENT);
  CHECK(m.count == 8.0 && untouched(out, 8));
}

/* QuoTA: frame count/indices, weights, scale_weights, budgets, grid, resize; their statuses. */
static void test_quota(void) {
  uint32_t nf = 0, h = 0, w = 0, bud[3];
  EXPECT(tkm_quota_frame_count(5400.0, 96, 64, &nf), TKM_STATUS_OK);
  CHECK(nf == 192);
  EXPECT(note(tkm_quota_frame_count(-1.0, 96, 64, &nf)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_quota_frame_count(1.0, 96, 64, NULL)), TKM_STATUS_NULL_POINTER);
  uint64_t idx[5];
  EXPECT(tkm_quota_frame_indices(101, 5, idx), TKM_STATUS_OK);
  CHECK(idx[0] == 0 && idx[1] == 25 && idx[4] == 100);
  float p[3] = {0.9f, 0.1f, 0.5f}, wt[3], pbad[2] = {0.5f, NAN}, out[12];
  EXPECT(tkm_quota_frame_weights(3, p, 100.0f, 2.0f, wt), TKM_STATUS_OK);
  CHECK(fabsf(wt[0] + wt[1] + wt[2] - 1.0f) < 1e-6f && fabsf(wt[0] - 81.0f / 107.0f) < 1e-6f);
  EXPECT(note(tkm_quota_frame_weights(2, pbad, 100.0f, 2.0f, out)), TKM_STATUS_NON_FINITE);
  float sw[3] = {0.7f, 0.2f, 0.1f};
  EXPECT(tkm_quota_scale_weights(3, sw, 0.4f), TKM_STATUS_OK);
  CHECK(sw[0] == 0.4f && fabsf(sw[1] - (0.2f + 0.2f / 0.7f * 0.3f)) < 1e-6f);
  float third[3] = {1.0f / 3, 1.0f / 3, 1.0f / 3};
  EXPECT(tkm_quota_token_budgets(3, third, 100, TKM_BUDGET_LARGEST_REMAINDER, bud), TKM_STATUS_OK);
  CHECK(bud[0] == 34 && bud[1] == 33 && bud[2] == 33);
  EXPECT(tkm_quota_token_budgets(3, third, 100, TKM_BUDGET_TRUNCATE, bud), TKM_STATUS_OK);
  CHECK(bud[0] == 33 && bud[1] == 33 && bud[2] == 33);
  EXPECT(tkm_quota_grid_for_budget(10, &h, &w), TKM_STATUS_OK);
  CHECK(h == 3 && w == 3);
  /* PyTorch: interpolate([0, 1] -> 4, bilinear, align_corners=False) = [0, .25, .75, 1];
   * adaptive_avg_pool2d([1..5] -> 3) = [1.5, 3, 4.5]. */
  float two[2] = {0.0f, 1.0f}, five[5] = {1, 2, 3, 4, 5};
  EXPECT(tkm_quota_resize_hwc(two, 1, 2, 1, 1, 4, TKM_RESIZE_BILINEAR, out), TKM_STATUS_OK);
  CHECK(out[0] == 0.0f && out[1] == 0.25f && out[2] == 0.75f && out[3] == 1.0f);
  EXPECT(tkm_quota_resize_hwc(five, 1, 5, 1, 1, 3, TKM_RESIZE_ADAPTIVE_AVG_POOL, out), TKM_STATUS_OK);
  CHECK(out[0] == 1.5f && out[1] == 3.0f && out[2] == 4.5f);
  poison(out, 12);
  EXPECT(note(tkm_quota_resize_hwc(five, 1, 5, 1, 0, 3, TKM_RESIZE_BILINEAR, out)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_quota_resize_hwc(five, SIZE_MAX, 5, 1, 1, 3, TKM_RESIZE_BILINEAR, out)), TKM_STATUS_SIZE_OVERFLOW);
  EXPECT(note(tkm_quota_resize_hwc(five, 1, 5, 1, 1, 3, TKM_RESIZE_BILINEAR, five + 1)), TKM_STATUS_OVERLAP);
  CHECK(untouched(out, 12));
  /* ToMe round: x0 merges into x1 (mean), x2 stays; output [x2, (x1+x0)/2, x3]. */
  float tok[8] = {1, 0, 1, 0.1f, 0, 1, -1, 0}, merged[8], tokbad[2] = {1, INFINITY};
  size_t kept = 0;
  EXPECT(tkm_quota_tome_round(tok, 4, 2, 1, merged, &kept), TKM_STATUS_OK);
  CHECK(kept == 3 && merged[0] == 0.0f && merged[1] == 1.0f && merged[2] == 1.0f && merged[3] == 0.05f &&
        merged[4] == -1.0f);
  EXPECT(note(tkm_quota_tome_round(tokbad, 2, 1, 1, merged, &kept)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_quota_tome_round(tok, 4, 2, 1, tok + 2, &kept)), TKM_STATUS_OVERLAP);
}

/* Diversity or Precision: the generalised next-token loss and its gradient, fused per row,
 * against a naive double-precision evaluation of policy.md §7.7's formulas (full softmax, the
 * top-k by counting ranks, ties by column). */
static void dop_reference_row(const float *row, int32_t t, const tkm_dop_options *o, double *loss, double *g) {
  double m = -INFINITY, s = 0;
  for (int v = 0; v < VOCAB; v++) m = row[v] > m ? row[v] : m;
  for (int v = 0; v < VOCAB; v++) s += exp(row[v] - m);
  double lp_t = row[t] - m - log(s), p_t = exp(lp_t);
  double w_t = o->beta == 0.0f ? 1.0 : exp((1.0 - pow(1.0 - p_t, o->beta)) * lp_t);
  double W = 0, L = -w_t * lp_t;
  static double w[VOCAB];
  for (int a = 0; a < VOCAB; a++) {
    size_t rank = 0; /* columns ranked before a: larger logit, or equal and lower column */
    for (int b = 0; b < VOCAB; b++) rank += row[b] > row[a] || (row[b] == row[a] && b < a);
    double lp = row[a] - m - log(s), p = exp(lp);
    w[a] = a == t ? w_t : (rank < o->top_k ? o->lam_top : o->lam_tail) * p;
    if (a != t) L -= w[a] * lp;
    W += w[a];
  }
  *loss = L;
  for (int j = 0; j < VOCAB; j++) g[j] = o->grad_scale * (exp(row[j] - m - log(s)) * W - w[j]);
}

static void test_dop(void) {
  tkm_dop_options o;
  EXPECT(tkm_dop_options_init(&o), TKM_STATUS_OK);
  CHECK(o.struct_size == sizeof o && o.beta == -0.25f && o.lam_top == 0.0f && o.lam_tail == 0.0f &&
        o.grad_scale == 1.0f && o.top_k == 100);
  static float dx[ROWS * VOCAB], dx2[ROWS * VOCAB], xi[ROWS * STRIDE];
  static double g[VOCAB];
  float loss[ROWS], loss2[ROWS];
  size_t nf = 99;
  /* The paper's settings: precision (defaults), tail suppression, head preservation, and CE. */
  const tkm_dop_options settings[4] = {
      o,
      {sizeof o, -0.25f, 0.0f, -0.1f, 1.0f, 5},
      {sizeof o, 0.5f, 0.1f, 0.0f, 0.5f, 5},
      {sizeof o, 0.0f, 0.0f, 0.0f, 1.0f, 0},
  };
  for (int k = 0; k < 4; k++) {
    poison(loss, ROWS);
    poison(dx, ROWS * VOCAB);
    EXPECT(tkm_dop_loss_and_grad(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f, NULL,
                                 &settings[k], loss, TKM_DTYPE_F32, dx, VOCAB, &nf),
           TKM_STATUS_OK);
    CHECK(nf == 0);
    for (int r = 0; r < ROWS; r++) {
      if (!row_mask[r] || targets[r] < 0) {
        CHECK(loss[r] == 0.0f && dx[r * VOCAB] == 0.0f && dx[r * VOCAB + VOCAB - 1] == 0.0f);
        continue;
      }
      double want;
      dop_reference_row(&x[r * STRIDE], targets[r], &settings[k], &want, g);
      CHECK(fabs(loss[r] - want) <= 1e-5 * (1.0 + fabs(want)));
      for (int j = 0; j < VOCAB; j++) CHECK(fabs(dx[r * VOCAB + j] - g[j]) <= 1e-6);
    }
  }
  /* Two threads, the portable backend, in place: the same bits. */
  const tkm_dop_options *p = &settings[1];
  EXPECT(tkm_dop_loss_and_grad(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, row_mask, 0.8f, NULL, p, loss,
                               TKM_DTYPE_F32, dx, VOCAB, NULL),
         TKM_STATUS_OK);
  tkm_exec_options e;
  tkm_exec_options_init(&e);
  e.threads = 2;
  e.backend = TKM_BACKEND_PORTABLE;
  EXPECT(tkm_dop_loss_and_grad(&e, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, row_mask, 0.8f, NULL, p, loss2,
                               TKM_DTYPE_F32, dx2, VOCAB, NULL),
         TKM_STATUS_OK);
  CHECK(memcmp(loss, loss2, sizeof loss) == 0 && memcmp(dx, dx2, sizeof dx) == 0);
  memcpy(xi, x, sizeof xi);
  EXPECT(tkm_dop_loss_and_grad_inplace(&e, TKM_DTYPE_F32, xi, ROWS, VOCAB, STRIDE, targets, row_mask, 0.8f, NULL, p,
                                       loss2, &nf),
         TKM_STATUS_OK);
  CHECK(memcmp(loss, loss2, sizeof loss) == 0 && nf == 0);
  for (int r = 0; r < ROWS; r++) CHECK(memcmp(&xi[r * STRIDE], &dx[r * VOCAB], VOCAB * sizeof(float)) == 0);
  /* bf16 logits, bf16 gradient written in place. */
  static uint16_t xb[ROWS * VOCAB];
  for (int r = 0; r < ROWS; r++)
    for (int v = 0; v < VOCAB; v++) xb[r * VOCAB + v] = f32_to_bf16_bits(x[r * STRIDE + v]);
  EXPECT(tkm_dop_loss_and_grad_inplace(NULL, TKM_DTYPE_BF16, xb, ROWS, VOCAB, VOCAB, targets, row_mask, 1.0f, NULL,
                                       NULL, loss2, NULL),
         TKM_STATUS_OK);
  CHECK(loss2[0] > 0.0f && loss2[3] == 0.0f && xb[3 * VOCAB] == 0);

  /* Errors: nothing written (NO_FINITE_LOGIT: the loss is not written). */
  poison(loss, ROWS);
  poison(dx, ROWS * VOCAB);
#define DOP(exec, dtype, xs, rows, vocab, stride, tg, temp, opts, l, gdt, d) \
  tkm_dop_loss_and_grad(exec, dtype, xs, rows, vocab, stride, tg, row_mask, temp, NULL, opts, l, gdt, d, VOCAB, NULL)
  EXPECT(note(DOP(NULL, 7, x, ROWS, VOCAB, STRIDE, targets, 1.0f, p, loss, TKM_DTYPE_F32, dx)), TKM_STATUS_BAD_DTYPE);
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, 1.0f, p, loss, 7, dx)), TKM_STATUS_BAD_DTYPE);
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, VOCAB - 1, targets, 1.0f, p, loss, TKM_DTYPE_F32, dx)),
         TKM_STATUS_BAD_STRIDE);
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, 0, STRIDE, targets, 1.0f, p, loss, TKM_DTYPE_F32, dx)),
         TKM_STATUS_EMPTY_VOCAB);
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, -1.0f, p, loss, TKM_DTYPE_F32, dx)),
         TKM_STATUS_INVALID_TEMPERATURE);
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, NULL, 1.0f, p, loss, TKM_DTYPE_F32, dx)),
         TKM_STATUS_INVALID_ARGUMENT);
  tkm_dop_options bad = *p;
  bad.beta = -1.0f;
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, 1.0f, &bad, loss, TKM_DTYPE_F32, dx)),
         TKM_STATUS_INVALID_ARGUMENT);
  bad = *p;
  bad.lam_tail = NAN;
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, 1.0f, &bad, loss, TKM_DTYPE_F32, dx)),
         TKM_STATUS_INVALID_ARGUMENT);
  bad = *p;
  bad.struct_size = 9;
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, 1.0f, &bad, loss, TKM_DTYPE_F32, dx)),
         TKM_STATUS_BAD_STRUCT_SIZE);
  const int32_t far[ROWS] = {3, 300, -100, 0, 150, 42};
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, far, 1.0f, p, loss, TKM_DTYPE_F32, dx)),
         TKM_STATUS_LABEL_OUT_OF_RANGE);
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, 1.0f, p, NULL, TKM_DTYPE_F32, dx)),
         TKM_STATUS_NULL_POINTER);
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, SIZE_MAX, VOCAB, STRIDE, targets, 1.0f, p, loss, TKM_DTYPE_F32, dx)),
         TKM_STATUS_SIZE_OVERFLOW);
  EXPECT(note(DOP(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, 1.0f, p, loss, TKM_DTYPE_F32, x)),
         TKM_STATUS_OVERLAP);
  e.threads = 100000;
  EXPECT(note(DOP(&e, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, 1.0f, p, loss, TKM_DTYPE_F32, dx)),
         TKM_STATUS_INVALID_ARGUMENT);
  size_t counts[2];
  EXPECT(note(tkm_dop_loss_and_grad(NULL, TKM_DTYPE_F32, x, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f, NULL, p,
                                    loss, TKM_DTYPE_F32, dx, VOCAB, (size_t *)((char *)counts + 1))),
         TKM_STATUS_MISALIGNED);
  CHECK(untouched(loss, ROWS) && untouched(dx, ROWS * VOCAB));
  EXPECT(note(tkm_dop_loss_and_grad_inplace(NULL, TKM_DTYPE_F32, xi, ROWS, VOCAB, STRIDE, targets, row_mask, 1.0f,
                                            NULL, p, xi + 10, NULL)),
         TKM_STATUS_OVERLAP);
  const float dead[2 * 4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, 0.0f, 1.0f, 2.0f, 3.0f};
  const int32_t t2[2] = {1, 2};
  EXPECT(note(tkm_dop_loss_and_grad(NULL, TKM_DTYPE_F32, dead, 2, 4, 4, t2, NULL, 1.0f, NULL, p, loss, TKM_DTYPE_F32,
                                    dx, 4, NULL)),
         TKM_STATUS_NO_FINITE_LOGIT);
  CHECK(untouched(loss, ROWS));
  EXPECT(note(tkm_dop_options_init(NULL)), TKM_STATUS_NULL_POINTER);
#undef DOP
}

static void test_xar(void) {
  /* Cell order (the code's clusterify, k = 8 on 16 x 16): cell 1 is the top-right one. */
  uint32_t perm[256], inv[256], gat[336], bad3[3] = {0, 0, 1};
  EXPECT(tkm_xar_cell_permutation(16, 16, 8, perm), TKM_STATUS_OK);
  CHECK(perm[0] == 0 && perm[8] == 16 && perm[63] == 119 && perm[64] == 8 && perm[128] == 128);
  EXPECT(tkm_xar_invert_permutation(256, perm, inv), TKM_STATUS_OK);
  CHECK(inv[8] == 64 && inv[119] == 63);
  EXPECT(note(tkm_xar_invert_permutation(3, bad3, inv)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_xar_invert_permutation(256, perm, perm)), TKM_STATUS_OVERLAP);
  EXPECT(note(tkm_xar_cell_permutation(16, 16, 3, perm)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_xar_cell_permutation(SIZE_MAX, 2, 1, perm)), TKM_STATUS_SIZE_OVERFLOW);
  EXPECT(tkm_xar_subsample_permutation(4, 4, 2, perm), TKM_STATUS_OK);
  CHECK(perm[0] == 0 && perm[1] == 2 && perm[2] == 8 && perm[3] == 10 && perm[4] == 1);
  EXPECT(note(tkm_xar_subsample_permutation(4, 4, 0, NULL)), TKM_STATUS_NULL_POINTER);
  size_t sizes[3], glen = 0;
  EXPECT(tkm_xar_scale_sizes(16, 3, sizes), TKM_STATUS_OK);
  CHECK(sizes[0] == 4 && sizes[1] == 8 && sizes[2] == 16);
  EXPECT(tkm_xar_scale_gather_len(16, 16, 3, &glen), TKM_STATUS_OK);
  CHECK(glen == 336);
  EXPECT(tkm_xar_scale_gather(16, 16, 3, gat, 336), TKM_STATUS_OK);
  CHECK(gat[0] == 0 && gat[1] == 4 && gat[4] == 64 && gat[80] == 0 && gat[335] == 255);
  EXPECT(note(tkm_xar_scale_gather(16, 16, 3, gat, 335)), TKM_STATUS_LENGTH_MISMATCH);
  float mask[16], mask2[16];
  size_t lens[2] = {1, 3};
  EXPECT(tkm_xar_block_causal_mask(2, 2, mask), TKM_STATUS_OK);
  CHECK(mask[0] == 0.0f && mask[1] == 0.0f && isinf(mask[2]) && mask[2] < 0 && mask[12] == 0.0f && mask[15] == 0.0f);
  EXPECT(tkm_xar_block_causal_mask_lens(2, lens, mask2, 16), TKM_STATUS_OK);
  CHECK(mask2[0] == 0.0f && isinf(mask2[1]) && mask2[4] == 0.0f && mask2[7] == 0.0f);
  EXPECT(note(tkm_xar_block_causal_mask_lens(2, lens, mask2, 9)), TKM_STATUS_LENGTH_MISMATCH);

  /* Flow matching: two samples x two entities of two elements, times entity-major. */
  double z[4] = {0.0, 1.0, -1.0, 0.5}, znan[1] = {NAN};
  float t[4], xs[8] = {1, 2, 3, 4, 5, 6, 7, 8}, eps[8] = {0}, xt[8], v[8], g[8];
  EXPECT(tkm_xar_logit_normal(4, z, 0.0, 1.0, t), TKM_STATUS_OK);
  CHECK(t[0] == 0.5f && fabsf(t[1] - 0.7310586f) < 1e-6f);
  EXPECT(note(tkm_xar_logit_normal(1, znan, 0.0, 1.0, t)), TKM_STATUS_NON_FINITE);
  EXPECT(note(tkm_xar_logit_normal(1, z, 0.0, 0.0, t)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(tkm_xar_flow_interpolate(2, 2, 2, xs, eps, t, xt, v), TKM_STATUS_OK);
  /* sample 1, entity 0 uses t[0*2 + 1] = t[1]. */
  CHECK(xt[0] == 0.5f && v[0] == -1.0f && xt[4] == (1.0f - t[1]) * 5.0f && v[7] == -8.0f);
  EXPECT(note(tkm_xar_flow_interpolate(2, 2, 2, xs, eps, t, xt, xt)), TKM_STATUS_OVERLAP);
  int64_t ti[2];
  float tt[2] = {0.29f, 1.0f};
  EXPECT(tkm_xar_timestep_index(2, tt, ti), TKM_STATUS_OK);
  CHECK(ti[0] == 290 && ti[1] == 1000);
  double loss = 0;
  EXPECT(tkm_xar_flow_loss(2, 8, xt, v, &loss, g), TKM_STATUS_OK);
  CHECK(loss > 0 && g[0] == 2.0f * (xt[0] - v[0]) / 8.0f);
  EXPECT(note(tkm_xar_flow_loss(3, 8, xt, v, &loss, NULL)), TKM_STATUS_INVALID_ARGUMENT);

  /* Sampler: CFG 2.7 over 4 entities, the 40-step grid, drift, CFG, steps. */
  double cfg = 0, grid[41], dv[2] = {1.0, -2.0}, dx[2] = {0.5, 0.25}, d[2], du[2] = {0.0, 0.0}, o[2], xi[2] = {1.0, -1.0};
  EXPECT(tkm_xar_cfg_schedule(2.7, 0, 4, TKM_XAR_CFG_LINEAR, &cfg), TKM_STATUS_OK);
  CHECK(cfg == 1.0);
  EXPECT(tkm_xar_cfg_schedule(2.7, 3, 4, TKM_XAR_CFG_CONSTANT, &cfg), TKM_STATUS_OK);
  CHECK(cfg == 2.7);
  EXPECT(note(tkm_xar_cfg_schedule(2.7, 4, 4, TKM_XAR_CFG_LINEAR, &cfg)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(tkm_xar_em_time_grid(40, 1.0, 0.04, grid), TKM_STATUS_OK);
  CHECK(grid[0] == 1.0 && grid[39] == 0.04 && grid[40] == 0.0 && grid[1] < 1.0);
  EXPECT(note(tkm_xar_em_time_grid(0, 1.0, 0.04, grid)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(tkm_xar_em_drift(2, dv, dx, 0.5, TKM_XAR_DRIFT_CLOSED, d), TKM_STATUS_OK);
  CHECK(d[0] == 1.5 * 1.0 + 0.5 && d[1] == 1.5 * -2.0 + 0.25);
  EXPECT(tkm_xar_em_drift(2, dv, dx, 0.5, TKM_XAR_DRIFT_CODE, d), TKM_STATUS_OK);
  CHECK(fabs(d[0] - 2.0) < 1e-15 && fabs(d[1] + 2.75) < 1e-15);
  EXPECT(note(tkm_xar_em_drift(2, dv, dx, 0.0, TKM_XAR_DRIFT_CODE, d)), TKM_STATUS_INVALID_ARGUMENT);
  EXPECT(note(tkm_xar_em_drift(2, dv, dx, 0.5, TKM_XAR_DRIFT_CODE, dv)), TKM_STATUS_OVERLAP);
  EXPECT(tkm_xar_cfg_combine(2, d, du, 2.0, 0.0, 1.0, 0.5, o), TKM_STATUS_OK);
  CHECK(o[0] == 2.0 * d[0] && o[1] == 2.0 * d[1]);
  EXPECT(tkm_xar_cfg_combine(2, d, du, 1.0, 0.0, 1.0, 0.5, o), TKM_STATUS_OK);
  CHECK(o[0] == d[0] && o[1] == d[1]);
  EXPECT(note(tkm_xar_cfg_combine(2, d, du, 2.0, 1.0, 0.0, 0.5, o)), TKM_STATUS_INVALID_ARGUMENT);
  double s[2] = {0.5, 0.25};
  EXPECT(tkm_xar_em_step(2, s, d, 0.5, 0.25, xi), TKM_STATUS_OK);
  CHECK(fabs(s[0] - (0.5 - 0.25 * d[0] + 0.5)) < 1e-15);
  EXPECT(tkm_xar_em_step(2, s, d, 0.04, 0.0, NULL), TKM_STATUS_OK);
  EXPECT(note(tkm_xar_em_step(2, s, s, 0.5, 0.25, NULL)), TKM_STATUS_OVERLAP);
  EXPECT(note(tkm_xar_em_step(2, s, d, -0.5, -0.75, xi)), TKM_STATUS_INVALID_ARGUMENT);
}

int main(void) {
  for (int i = 0; i < ROWS * STRIDE; i++) x[i] = 6.0f * frand();
  test_version_and_status();
  test_exec_options();
  test_logits();
  test_logits_errors();
  test_advantages();
  test_advantages_tokens();
  test_fingerprint();
  test_fingerprint_more();
  test_dlpack();
  test_policy();
  test_policy_more();
  test_seed_selection();
  test_seed_hidden_reward();
  test_seed_rmt();
  test_tw_grpo();
  test_hapo();
  test_tokenizer_metrics();
  test_unictokens();
  test_preference();
  test_tvm();
  test_exploration();
  test_quota();
  test_dop();
  test_xar();
  /* Every status except OK and INTERNAL_PANIC (a bug, unreachable
   * by design; its string is checked above) was returned at least once. */
  for (unsigned s = 1; s <= TKM_STATUS_DEVICE_MISMATCH; s++) {
    if (!seen[s]) {
      failures++;
      fprintf(stderr, "status %u (%s) was never provoked\n", s, tkm_status_str(s));
    }
  }
  printf("tokenmath C ABI test (%s): %d checks, %d failures\n", tkm_version(), checks, failures);
  return failures == 0 ? 0 : 1;
}
