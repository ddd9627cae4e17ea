//! xAR's next-X entity orderings, noisy-context flow matching and its Euler–Maruyama
//! sampler with the per-entity CFG schedule.
//!
//! Spec: `token-rewards.md` §7. Source: xAR (arXiv 2502.20388v2) \[paper\]; official code
//! `OliverRensu/xAR` \[code\] (`models/xar.py`, `models/sampler.py`, `models/flow.py`). Every
//! formula below is the code's unless tagged.
//!
//! # Entities (`entities.rs`)
//!
//! A latent `I ∈ R^{C×H×W}` (VAE stride 16, `C = 16`; 256² images give `H = W = 16`) is cut
//! into entities that the model predicts one per autoregressive step. Each ordering is an
//! index map `seq → raster` (`out[s] = y·W + x`): gather `tokens[s] = latent[out[s]]`.
//!
//! ```text
//! token       one token per entity, raster                 s = y·W + x               (identity)
//! cell k×k    cells raster, raster inside a cell           s = ((y/k)·(W/k) + x/k)·k² + (y%k)·k + x%k
//!             (code: clusterify, k = H/√clusters = 8: a 2×2 grid of 4 cells of 64 tokens)
//! subsample d entity (h, w) = {(y, x): y mod H/d = h, x mod W/d = w}, d² tokens each
//!             y = d1·(H/d) + h, x = d2·(W/d) + w:          s = (h·(W/d) + w)·d² + d1·d + d2   [paper]
//! scale N     entity i = 1…N is I resized to s_i×s_i, s_i = H·2^{i−N}, coarse to fine,
//!             nearest neighbour (PyTorch's `interpolate` default), concatenated  [paper; spec]
//! image       one entity, raster (plain flow matching)
//! ```
//!
//! The block-causal mask trains all entities in one pass (`xAR.__init__`): query rows of
//! entity `i` see the key columns of entities `≤ i`, bidirectionally inside an entity;
//! entries `0` (allowed) or `−inf`.
//!
//! # Noisy-context flow matching (`flow.rs`, `xAR.forward`, \[paper eq. 2–4\])
//!
//! ```text
//! t_n = sigmoid(μ + σ·u_n),  u_n ~ N(0, 1)          logit-normal(0, 1), numpy f64, rounded to f32
//! F_n = (1 − t_n)·X_n + t_n·ε_n                      t = 0 clean, t = 1 noise (f32)
//! V_n = ε_n − X_n                                    the velocity target
//! L   = mean_b mean_{n, token, c} (model_n − V_n)²   (`mean_flat(...).mean()`)
//! timestep embedding input = trunc(f32(t·1000))
//! ```
//!
//! Every entity, context included, gets its own `t` (the paper's "random noise" context,
//! FID 2.48 against 3.45 for teacher forcing).
//!
//! # Sampling (`sampler.rs`, `xAR.sample_tokens`, `sampler.euler_maruyama_sampler`), in f64
//!
//! ```text
//! cfg_i  = (cfg − 1)·i/(N − 1) + 1                               entity step i of N
//! grid   = torch.linspace(1, 0.04, num_steps) ++ [0]
//! s      = ((t − 1)·v − x)/(t² − (t − 1)·t)                      score from velocity (linear path)
//! d      = v − ½·(2t)·s             (= (2 − t)·v + x  [derived])   drift, g(t) = 2t
//! d      = d_u + cfg_i·(d_c − d_u)  if cfg_i > 1 and t ∈ [low, high], else d_c
//! x     ← x + d·Δt + √(2t)·(ξ·√|Δt|)                              every interval but the last
//! x     ← x + Δt·d                                                 the last, 0.04 → 0
//! ```
//!
//! Previously generated entities are prepended as clean context at the first step of each
//! entity (their timestep input is `0`); the model call, the cond/uncond batch (label 1000
//! = unconditional) and the KV cache are the caller's. Defaults \[paper\]: xAR-B cfg 2.7 with
//! 40 steps, xAR-L cfg 2.3 with 50 steps.
//!
//! # Randomness \[library choice\]
//!
//! Nothing here draws random numbers: the normals `u` (logit-normal times), `ε` (noise) and
//! `ξ` (SDE noise) are the caller's buffers, so a caller with a `torch.Generator` or
//! `numpy` state reproduces the source's draws exactly (the source draws `u` with
//! `scipy.stats.norm.rvs` in f64, `ε` with `torch.randn_like` in the model dtype and `ξ` with
//! `torch.randn_like` in f64).
//!
//! These kernels work on one latent grid or one entity's tokens, so they take no
//! [`Exec`](crate::Exec) \[library choice\]: they are memory-bound elementwise maps.

mod entities;
mod flow;
mod sampler;

pub use entities::{
    xar_block_causal_mask, xar_block_causal_mask_lens, xar_cell_permutation, xar_invert_permutation,
    xar_nearest_source_index, xar_scale_gather, xar_scale_gather_len, xar_scale_sizes, xar_subsample_permutation,
};
pub use flow::{
    flow_interpolate, logit_normal, xar_flow_interpolate, xar_flow_loss, xar_logit_normal_times, xar_timestep_index,
};
pub use sampler::{
    cfg_schedule, em_drift_linear, xar_cfg_combine, xar_em_step, xar_em_time_grid, CfgGuidance, CfgSchedule, DriftForm,
};
