// A miniature GRPO training step through the tokenmath C ABI, on random data:
//
//   logits = H W^T                       (C++; H: [B*T, D] hidden states, W: [V, D] LM head)
//   lse, entropy, logp = tkm_logits_fwd  (temperature 0.8, padding rows masked out)
//   A = tkm_grpo_advantage(rewards)      (groups of G responses), broadcast to tokens
//   loss = agg_token_mean(tkm_ppo_clip_loss(logp, old_logp, A)) - beta * mean entropy
//   g_logp = tkm_agg_weights * dloss/dlogp,  g_entropy = -beta/n
//     (and the same through the fused tkm_ppo_clip_kl_step and tkm_entropy_upstream)
//   dlogits = tkm_logits_bwd(g_logp, g_entropy)
//   dW = dlogits^T H;  W -= lr dW;  the new policy's loss is lower than before
//   the sampled tokens are committed with tkm_fp_tree and one is opened and verified
//
// Every tokenmath result is checked against a naive double-precision C++ computation, and
// the forward is checked bitwise across thread counts. Exit status 0 = all checks passed.
#include <tokenmath.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Throws on any non-OK status, with tokenmath's description.
void ok(tkm_status s, const char* what) {
  if (s != TKM_STATUS_OK) {
    throw std::runtime_error(std::string(what) + ": " + tkm_status_str(s));
  }
}

int failures = 0;
void expect_close(double got, double want, double tol, const char* what) {
  if (!(std::fabs(got - want) <= tol * (1.0 + std::fabs(want)))) {
    if (failures++ < 10) std::fprintf(stderr, "%s: got %.9g, want %.9g\n", what, got, want);
  }
}

constexpr size_t B = 8, G = 4, T = 6, D = 16, V = 700;
constexpr size_t N = B * T;
constexpr float kTemp = 0.8f, kBeta = 0.01f, kLr = 0.5f;

struct Batch {
  std::vector<float> h;          // [N, D]
  std::vector<int32_t> target;   // [N]
  std::vector<uint8_t> mask;     // [N]
  std::vector<float> reward;     // [B]
};

std::vector<float> logits_of(const std::vector<float>& w, const std::vector<float>& h) {
  std::vector<float> x(N * V);
  for (size_t n = 0; n < N; n++)
    for (size_t v = 0; v < V; v++) {
      float acc = 0.0f;
      for (size_t d = 0; d < D; d++) acc += h[n * D + d] * w[v * D + d];
      x[n * V + v] = acc;
    }
  return x;
}

struct Fwd {
  std::vector<float> lse, entropy, logp, max, log_sum;  // max, log_sum, entropy: saved for the backward
};

// The forward's input: the [N, V] logits, the targets, the row mask and the temperature.
tkm_logits_input input(const std::vector<float>& x, const Batch& b) {
  tkm_logits_input in;
  ok(tkm_logits_input_init(&in), "logits input");
  in.logits = x.data();
  in.rows = N;
  in.vocab = V;
  in.row_stride = V;
  in.targets = b.target.data();
  in.row_mask = b.mask.data();
  in.temperature = kTemp;
  return in;
}

Fwd forward(const std::vector<float>& x, const Batch& b, uint32_t threads) {
  tkm_exec_options opts;
  ok(tkm_exec_options_init(&opts), "exec options");
  opts.threads = threads;
  Fwd f{std::vector<float>(N), std::vector<float>(N), std::vector<float>(N), std::vector<float>(N),
        std::vector<float>(N)};
  const tkm_logits_input in = input(x, b);
  ok(tkm_logits_fwd(&opts, &in, f.lse.data(), f.entropy.data(), f.logp.data(), f.max.data(),
                    f.log_sum.data(), nullptr),
     "tkm_logits_fwd");
  return f;
}

// The loss the step minimises, from tokenmath's forward and the per-token advantages.
double loss_of(const Fwd& f, const std::vector<float>& adv_tok, const Batch& b) {
  double n = 0, l = 0;
  for (size_t i = 0; i < N; i++)
    if (b.mask[i]) {
      n += 1;
      l += -adv_tok[i] * f.logp[i] - kBeta * f.entropy[i];
    }
  return l / n;
}

}  // namespace

int main() {
  std::printf("tokenmath %s (header %d.%d.%d)\n", tkm_version(), TKM_VERSION_MAJOR, TKM_VERSION_MINOR,
              TKM_VERSION_PATCH);
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int32_t> token(0, V - 1);
  std::uniform_int_distribution<int> len(2, T);

  Batch b;
  b.h.resize(N * D);
  for (auto& v : b.h) v = normal(rng);
  std::vector<float> w(V * D);
  for (auto& v : w) v = 0.5f * normal(rng);
  b.target.resize(N);
  b.mask.resize(N);
  for (size_t r = 0; r < B; r++) {
    int valid = len(rng);
    for (size_t t = 0; t < T; t++) {
      b.target[r * T + t] = token(rng);
      b.mask[r * T + t] = t < static_cast<size_t>(valid) ? 1 : 0;
    }
  }
  b.reward = {1, 0, 0, 1, 0.25f, 0.75f, 0.5f, 0.5f};

  // ---- forward ---------------------------------------------------------------------------
  std::vector<float> x = logits_of(w, b.h);
  Fwd f = forward(x, b, 1);
  for (uint32_t threads : {2u, 3u, 8u}) {
    Fwd g = forward(x, b, threads);
    if (std::memcmp(g.lse.data(), f.lse.data(), N * sizeof(float)) != 0 ||
        std::memcmp(g.logp.data(), f.logp.data(), N * sizeof(float)) != 0 ||
        std::memcmp(g.entropy.data(), f.entropy.data(), N * sizeof(float)) != 0) {
      failures++;
      std::fprintf(stderr, "forward with %u threads is not bitwise identical\n", threads);
    }
  }
  std::vector<std::vector<double>> prob(N);  // naive softmax of the tempered logits
  for (size_t n = 0; n < N; n++) {
    if (!b.mask[n]) {
      expect_close(f.lse[n], 0.0, 0.0, "masked lse");
      continue;
    }
    double m = -INFINITY, s = 0, ent = 0;
    for (size_t v = 0; v < V; v++) m = std::max(m, static_cast<double>(x[n * V + v]) / kTemp);
    for (size_t v = 0; v < V; v++) s += std::exp(x[n * V + v] / static_cast<double>(kTemp) - m);
    double lse = m + std::log(s);
    prob[n].resize(V);
    for (size_t v = 0; v < V; v++) {
      double z = x[n * V + v] / static_cast<double>(kTemp);
      prob[n][v] = std::exp(z - lse);
      ent -= prob[n][v] * (z - lse);
    }
    expect_close(f.lse[n], lse, 1e-5, "lse");
    expect_close(f.entropy[n], ent, 1e-4, "entropy");
    expect_close(f.logp[n], x[n * V + b.target[n]] / static_cast<double>(kTemp) - lse, 1e-4, "logp");
    expect_close(f.max[n], m, 1e-6, "max");
    expect_close(f.log_sum[n], std::log(s), 1e-5, "log_sum");
  }

  // ---- advantages ------------------------------------------------------------------------
  tkm_grpo_options gopts;
  ok(tkm_grpo_options_init(&gopts), "grpo options");
  std::vector<float> adv(B), adv_tok(N);
  ok(tkm_grpo_advantage(b.reward.data(), B, nullptr, G, &gopts, adv.data()), "tkm_grpo_advantage");
  ok(tkm_broadcast_masked(adv.data(), B, b.mask.data(), T, adv_tok.data()), "tkm_broadcast_masked");
  for (size_t g = 0; g < B / G; g++) {
    double mean = 0, var = 0;
    for (size_t i = 0; i < G; i++) mean += b.reward[g * G + i] / static_cast<double>(G);
    for (size_t i = 0; i < G; i++) var += std::pow(b.reward[g * G + i] - mean, 2) / (G - 1.0);
    for (size_t i = 0; i < G; i++) {
      double want = var == 0 ? 0.0 : (b.reward[g * G + i] - mean) / (std::sqrt(var) + 1e-6);
      expect_close(adv[g * G + i], want, 1e-6, "GRPO advantage");
    }
  }

  // ---- policy loss: PPO clip (on-policy, so the ratio is 1) aggregated as token-mean -----
  std::vector<float> old_logp = f.logp, pg_loss(N), dloss(N), w_agg(N);
  tkm_ppo_clip_options clip;
  ok(tkm_ppo_clip_options_init(&clip), "ppo clip options");
  tkm_policy_stats stats;
  ok(tkm_ppo_clip_loss(nullptr, f.logp.data(), old_logp.data(), adv_tok.data(), b.mask.data(), nullptr, B, T, &clip,
                       pg_loss.data(), dloss.data(), &stats),
     "tkm_ppo_clip_loss");
  float agg = 0.0f;
  ok(tkm_agg_loss(nullptr, pg_loss.data(), b.mask.data(), B, T, TKM_AGG_TOKEN_MEAN, nullptr, &agg), "tkm_agg_loss");
  ok(tkm_agg_weights(nullptr, b.mask.data(), B, T, TKM_AGG_TOKEN_MEAN, nullptr, w_agg.data()), "tkm_agg_weights");

  // ---- backward --------------------------------------------------------------------------
  double count = 0, naive_pg = 0;
  for (size_t n = 0; n < N; n++) {
    count += b.mask[n];
    naive_pg += b.mask[n] ? -adv_tok[n] : 0.0;
  }
  naive_pg /= count;
  expect_close(agg, naive_pg, 1e-6, "aggregated PPO loss");
  if (stats.valid_tokens != static_cast<uint64_t>(count) || stats.clipped_high + stats.clipped_low != 0) {
    failures++;
    std::fprintf(stderr, "unexpected PPO clip statistics\n");
  }
  std::vector<float> g_logp(N), g_ent(N);
  for (size_t n = 0; n < N; n++) {
    g_logp[n] = w_agg[n] * dloss[n];  // chain rule through the aggregation
    g_ent[n] = static_cast<float>(b.mask[n] ? -kBeta / count : 0.0);
    expect_close(g_logp[n], b.mask[n] ? -adv_tok[n] / count : 0.0, 1e-6, "g_logp");
  }
  // The same step fused: tkm_ppo_clip_kl_step computes the per-token loss with a KL penalty
  // (the reference policy is the old one here, so the KL term is 0), the aggregated loss and
  // g_logp = w * dloss/dlogp in one pass; tkm_entropy_upstream gives the entropy bonus' g.
  {
    tkm_kl_options kl;
    ok(tkm_kl_options_init(&kl), "kl options");
    std::vector<float> step_loss(N), step_g(N), step_ent(N);
    float total = 0.0f;
    tkm_policy_stats step_stats;
    tkm_kl_stats kl_stats;
    ok(tkm_ppo_clip_kl_step(nullptr, f.logp.data(), old_logp.data(), adv_tok.data(), b.mask.data(), nullptr,
                            old_logp.data(), B, T, &clip, &kl, 0.001f, TKM_AGG_TOKEN_MEAN, nullptr,
                            step_loss.data(), step_g.data(), &total, &step_stats, &kl_stats),
       "tkm_ppo_clip_kl_step");
    expect_close(total, agg, 1e-7, "fused step loss");
    for (size_t n = 0; n < N; n++) expect_close(step_g[n], g_logp[n], 1e-7, "fused step g_logp");
    if (kl_stats.valid_tokens != static_cast<uint64_t>(count) || kl_stats.kl_sum != 0.0 ||
        step_stats.valid_tokens != stats.valid_tokens) {
      failures++;
      std::fprintf(stderr, "unexpected fused step statistics\n");
    }
    ok(tkm_entropy_upstream(nullptr, w_agg.data(), N, kBeta, step_ent.data()), "tkm_entropy_upstream");
    for (size_t n = 0; n < N; n++) expect_close(step_ent[n], g_ent[n], 1e-6, "entropy upstream");
  }
  tkm_exec_options opts;
  ok(tkm_exec_options_init(&opts), "exec options");
  opts.threads = 4;
  std::vector<float> dx(N * V);
  ok(tkm_logits_bwd(&opts, TKM_DTYPE_F32, x.data(), N, V, V, b.target.data(), b.mask.data(), kTemp, nullptr,
                    f.max.data(), f.log_sum.data(), f.entropy.data(), g_logp.data(), g_ent.data(), nullptr, TKM_DTYPE_F32, dx.data(), V),
     "tkm_logits_bwd");
  // Naive gradient: dL/dz_j = p_j (g_lse - g_lp - g_H (z_j - E[z])) + g_lp 1[j = t], then / temp.
  for (size_t n = 0; n < N; n++) {
    for (size_t v = 0; v < V; v++) {
      double want = 0;
      if (b.mask[n]) {
        double z = x[n * V + v] / static_cast<double>(kTemp), ez = 0;
        for (size_t u = 0; u < V; u++) ez += prob[n][u] * x[n * V + u] / static_cast<double>(kTemp);
        want = prob[n][v] * (-g_logp[n] - g_ent[n] * (z - ez)) + (v == static_cast<size_t>(b.target[n]) ? g_logp[n] : 0);
        want /= kTemp;
      }
      expect_close(dx[n * V + v], want, 1e-5, "dlogits");
    }
  }

  // ---- SGD step on the LM head; the loss must go down --------------------------------------
  double before = loss_of(f, adv_tok, b);
  std::vector<float> dw(V * D, 0.0f);
  for (size_t n = 0; n < N; n++)
    for (size_t v = 0; v < V; v++)
      for (size_t d = 0; d < D; d++) dw[v * D + d] += dx[n * V + v] * b.h[n * D + d];
  for (size_t i = 0; i < w.size(); i++) w[i] -= kLr * dw[i];
  std::vector<float> x2 = logits_of(w, b.h);
  double after = loss_of(forward(x2, b, 2), adv_tok, b);
  std::printf("loss %.6f -> %.6f\n", before, after);
  if (!(after < before)) {
    failures++;
    std::fprintf(stderr, "the SGD step did not lower the loss\n");
  }

  // ---- commit the sampled tokens, open one --------------------------------------------------
  std::vector<uint8_t> leaves(N * TKM_FP_HASH_LEN);
  uint8_t salt[TKM_FP_SALT_LEN] = {};
  tkm_fp_tree* tree = nullptr;
  ok(tkm_fp_tree_new(&tree), "tkm_fp_tree_new");
  for (size_t n = 0; n < N; n++) {
    ok(tkm_fp_leaf_hash(n, salt, static_cast<uint32_t>(b.target[n]), TKM_FP_KIND_NONE, nullptr, 0,
                        &leaves[n * TKM_FP_HASH_LEN]),
       "tkm_fp_leaf_hash");
    ok(tkm_fp_tree_append(tree, &leaves[n * TKM_FP_HASH_LEN], 1), "tkm_fp_tree_append");
  }
  uint8_t root[TKM_FP_HASH_LEN], batch_root[TKM_FP_HASH_LEN];
  ok(tkm_fp_tree_root(tree, root), "tkm_fp_tree_root");
  tkm_fp_tree_free(tree);
  ok(tkm_fp_root(leaves.data(), N, batch_root), "tkm_fp_root");
  std::vector<uint8_t> proof(tkm_fp_max_proof_len(N) * TKM_FP_HASH_LEN);
  size_t plen = 0;
  ok(tkm_fp_inclusion_proof(leaves.data(), N, 17, proof.data(), proof.size() / TKM_FP_HASH_LEN, &plen),
     "tkm_fp_inclusion_proof");
  if (std::memcmp(root, batch_root, sizeof root) != 0 ||
      tkm_fp_verify_inclusion(17, N, &leaves[17 * TKM_FP_HASH_LEN], proof.data(), plen, root) != TKM_STATUS_OK ||
      tkm_fp_verify_inclusion(18, N, &leaves[17 * TKM_FP_HASH_LEN], proof.data(), plen, root) !=
          TKM_STATUS_PROOF_MISMATCH) {
    failures++;
    std::fprintf(stderr, "fingerprint commitment check failed\n");
  }

  // ---- an error is a status, never an exception or a crash ---------------------------------
  b.target[0] = static_cast<int32_t>(V);
  b.mask[0] = 1;
  std::vector<float> lse(N, -1.0f), ent(N, -1.0f);
  const tkm_logits_input in = input(x, b);
  tkm_status s = tkm_logits_fwd(nullptr, &in, lse.data(), ent.data(), nullptr, nullptr, nullptr, nullptr);
  if (s != TKM_STATUS_LABEL_OUT_OF_RANGE || lse[0] != -1.0f) {
    failures++;
    std::fprintf(stderr, "expected TKM_STATUS_LABEL_OUT_OF_RANGE with untouched outputs, got %s\n",
                 tkm_status_str(s));
  }

  std::printf("%s\n", failures == 0 ? "all checks passed" : "FAILED");
  return failures == 0 ? 0 : 1;
}
