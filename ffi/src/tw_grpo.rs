//! TW-GRPO (`tokenmath_core::seed::tw_grpo` documents the math): token weights streamed over
//! the vocabulary, the weighted loss, and the soft multi-choice, exact multi-choice and format
//! rewards.

use core::ffi::c_void;

use half::{bf16, f16};
use tokenmath_core::seed::tw_grpo::{self, SavedLogSoftmax, TwGrpoCfg};
use tokenmath_core::Mat;

use crate::exec::{exec_from, tkm_exec_options};
use crate::logits::with_dtype;
use crate::status::*;
use crate::util::{guard, init_options, input, matrix_len, options, read_options, utf8, Out};
use crate::{tkm_dtype, TKM_DTYPE_BF16, TKM_DTYPE_F16, TKM_DTYPE_F32};

/// TW-GRPO options. Initialise with `tkm_tw_grpo_options_init` (group size 8, `alpha = 1.70`
/// as TW-GRPO's training script, `clamp = 11`), then change fields. NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_tw_grpo_options {
    /// `sizeof(tkm_tw_grpo_options)` as the caller compiled it.
    pub struct_size: usize,
    /// Rollouts per group `G` (1..=512; groups are `G` contiguous responses).
    pub group_size: u32,
    /// Maximum weight `alpha` (finite).
    pub alpha: f32,
    /// Clamp of the log-prob deviation (finite, in (0, 80]).
    pub clamp: f32,
}

options!(tkm_tw_grpo_options {
    let c = TwGrpoCfg::default();
    group_size: c.group_size as u32,
    alpha: c.alpha,
    clamp: c.clamp,
});

/// Writes the default TW-GRPO options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_tw_grpo_options_init(opts: *mut tkm_tw_grpo_options) -> tkm_status {
    init_options(opts)
}

/// TW-GRPO token weights, streamed over the vocabulary (no `[B, T, V]` tensor).
///
/// * `logits`: `[rows, vocab]` of `dtype` (row `b*T + t`, row stride `row_stride >= vocab`),
///   temperature 1; `rows = B*T`.
/// * `max`, `log_sum`: `rows` floats, the `max` and `log_sum` outputs of `tkm_logits_fwd` on
///   the same logits (temperature 1; row-masked or not).
/// * `mask`: `rows` bytes (0 = padding: its logits and statistics are not read); `t`: `T > 0`.
/// * `weights`: `rows` floats, written on success; `nonfinite_positions`: NULL or receives the
///   number of (group, position) pairs whose dispersion is NaN (their valid weights are NaN).
///
/// Errors: `TKM_STATUS_EMPTY_VOCAB`, `_BAD_STRIDE`, `_BAD_DTYPE`, `_LENGTH_MISMATCH` (`rows`
/// not a multiple of `t`), `_INVALID_ARGUMENT` (`t = 0`, `B` not a multiple of the group size,
/// options out of range), `_BAD_STRUCT_SIZE`, and the generic pointer/size/options statuses.
///
/// # Safety
/// Every non-NULL pointer must be valid for the element counts above.
#[no_mangle]
pub unsafe extern "C" fn tkm_tw_grpo_token_weights(
    exec: *const tkm_exec_options,
    dtype: tkm_dtype,
    logits: *const c_void,
    rows: usize,
    vocab: usize,
    row_stride: usize,
    max: *const f32,
    log_sum: *const f32,
    mask: *const u8,
    t: usize,
    opts: *const tkm_tw_grpo_options,
    weights: *mut f32,
    nonfinite_positions: *mut usize,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let o = read_options(opts)?;
        let cfg = TwGrpoCfg { group_size: o.group_size as usize, alpha: o.alpha, clamp: o.clamp };
        let len = matrix_len(rows, vocab, row_stride)?;
        let saved = SavedLogSoftmax { max: input(max, rows)?, log_sum: input(log_sum, rows)? };
        let mask = input(mask, rows)?;
        if !nonfinite_positions.is_null() && !(nonfinite_positions as usize).is_multiple_of(align_of::<usize>()) {
            return Err(TKM_STATUS_MISALIGNED);
        }
        let mut out = Out::new(weights, rows)?;
        let st = with_dtype!(dtype, T, {
            let x = Mat::new(input(logits as *const T, len)?, rows, vocab, row_stride)?;
            Ok(tw_grpo::tw_grpo_token_weights(exec, x, saved, mask, t, &cfg, &mut out.buf)?)
        })?;
        out.commit();
        if !nonfinite_positions.is_null() {
            *nonfinite_positions = st.nonfinite_positions;
        }
        Ok(())
    })
}

/// The TW-GRPO loss `sum(w * loss * mask) / sum(mask)` (0 for an empty mask) into `*loss_out`,
/// and, unless `grad` is NULL, its gradient w.r.t. the per-token loss (`w * mask / sum(mask)`,
/// `n` floats). `mask`, `per_token_loss`, `weights`: `n` elements each; padding never
/// contributes (NaN there cannot leak).
///
/// # Safety
/// Every non-NULL pointer must be valid for the element counts above.
#[no_mangle]
pub unsafe extern "C" fn tkm_tw_grpo_loss(
    exec: *const tkm_exec_options,
    mask: *const u8,
    per_token_loss: *const f32,
    weights: *const f32,
    n: usize,
    loss_out: *mut f32,
    grad: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let (mask, l, w) = (input(mask, n)?, input(per_token_loss, n)?, input(weights, n)?);
        let mut l_out = Out::new(loss_out, 1)?;
        let mut g = Out::optional(grad, n)?;
        l_out.buf[0] = tw_grpo::tw_grpo_loss(exec, mask, l, w, g.as_mut().map(|g| &mut g.buf[..]))?;
        l_out.commit();
        if let Some(g) = g {
            g.commit();
        }
        Ok(())
    })
}

/// Which reward [`reward`] computes.
enum Reward {
    Soft,
    Exact,
}

unsafe fn reward(
    which: Reward,
    completion: *const u8,
    completion_len: usize,
    solution: *const u8,
    solution_len: usize,
    verifier_ok: u32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let (c, s) = (utf8(completion, completion_len)?, utf8(solution, solution_len)?);
        let ok = crate::util::flag(verifier_ok)?;
        let mut o = Out::new(out, 1)?;
        o.buf[0] = match which {
            Reward::Soft => tw_grpo::soft_multichoice_reward(c, s, ok),
            Reward::Exact => tw_grpo::exact_multichoice_reward(c, s, ok),
        };
        o.commit();
        Ok(())
    })
}

/// TW-GRPO's soft multi-choice accuracy reward: 1 if `verifier_ok` (an external verifier's
/// verdict, 0 or 1), else `|S|/|GT|` when the completion's option set `S` (from its first
/// `<answer>...</answer>`, comma-separated, ASCII spaces removed, stripped) is a subset of the
/// solution's `GT`, else 0. Strings are UTF-8 (`*_len` bytes, no NUL needed).
///
/// # Safety
/// The string pointers must be valid for their lengths; `out` for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_tw_grpo_soft_multichoice_reward(
    completion: *const u8,
    completion_len: usize,
    solution: *const u8,
    solution_len: usize,
    verifier_ok: u32,
    out: *mut f32,
) -> tkm_status {
    reward(Reward::Soft, completion, completion_len, solution, solution_len, verifier_ok, out)
}

/// The binary variant (`origin_accuracy_reward`): 1 iff `verifier_ok` or `S == GT`, else 0.
///
/// # Safety
/// As `tkm_tw_grpo_soft_multichoice_reward`.
#[no_mangle]
pub unsafe extern "C" fn tkm_tw_grpo_exact_multichoice_reward(
    completion: *const u8,
    completion_len: usize,
    solution: *const u8,
    solution_len: usize,
    verifier_ok: u32,
    out: *mut f32,
) -> tkm_status {
    reward(Reward::Exact, completion, completion_len, solution, solution_len, verifier_ok, out)
}

/// TW-GRPO's format reward: 1 iff the completion has `<think>` and `<answer>` at most once each
/// and matches `<think>.*?</think>\s*<answer>.*?</answer>[\s!]*$` (search, dot matches
/// newline, Unicode whitespace), else 0. UTF-8, `completion_len` bytes.
///
/// # Safety
/// `completion` must be valid for `completion_len` bytes; `out` for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_tw_grpo_format_reward(
    completion: *const u8,
    completion_len: usize,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let c = utf8(completion, completion_len)?;
        let mut o = Out::new(out, 1)?;
        o.buf[0] = tw_grpo::format_reward_think_answer(c);
        o.commit();
        Ok(())
    })
}
