//! QuoTA's query-oriented frame weights and per-frame token budgets, and the per-frame
//! reductions they drive (bilinear resize, adaptive average pooling).
//!
//! Spec: `token-rewards.md` §6. Source: QuoTA (arXiv 2503.08689), official code
//! `MAC-AutoML/QuoTA` (`quota_pipeline.py`, `core/llava_arch.py`). All \[code\] unless tagged.
//!
//! ```text
//! frames.rs   max_frames = base + trunc(video_secs/3600 · per_hour)          (96, 64)
//!             frame_idx[j] = floor(j·(total − 1)/(count − 1))                  (exact integers)
//! budgets.rs  w_i = (100·p_i)²,  ŵ_i = w_i/Σw;  scale_weights(ŵ, max_value) caps and redistributes
//!             n_i = budget of T_tot·ŵ_i  (largest remainder, or the source's trunc)
//!             grid(n): h = w = isqrt(n), grown by one row or column if it still fits
//! resize.rs   bilinear (align_corners = False) and adaptive average pooling of an H×W×C map
//! tome.rs     one ToMe bipartite soft-matching round (v4/v5)
//! ```
//!
//! The relevance scores `p_i ∈ [0, 1]` (a VLM's probability of "yes" per frame) are the
//! caller's. Not here: v3's token subsampling, and the loops of v4/v5 around the ToMe round
//! (repeat [`tome_bipartite_round`] with `r = t − n` until `t ≤ n`; along rows, then columns).
//!
//! These kernels work on one video or one frame's map (at most a few hundred frames, a
//! `27×27×C` map), so they take no [`Exec`](crate::Exec): callers parallelise over frames
//! \[library choice\].

mod budgets;
mod frames;
mod resize;
mod tome;

pub use budgets::{quota_frame_weights, quota_grid_for_budget, quota_scale_weights, quota_token_budgets, BudgetRule};
pub use frames::{quota_frame_count, quota_frame_indices};
pub use resize::{adaptive_avg_pool_hwc, bilinear_resize_hwc, bilinear_source_index};
pub use tome::{tome_bipartite_round, tome_scratch_len};
