//! Outcome advantage estimators: GRPO (library, verl loop/vectorised, TRL), Dr. GRPO, RLOO,
//! and the masked broadcast of per-response values to tokens.
//! `tokenmath_core::advantages` documents the math and every flavor.

use core::mem::{offset_of, size_of};

use tokenmath_core::advantages::{
    self, Groups, GrpoCfg, GrpoFlavor, NanPolicy, RlooFlavor, SingletonPolicy, StdKind, TrlScale,
};

use crate::status::*;
use crate::util::{flag, guard, input, mul, opt_input, read_options, Out, Res};

/// GRPO, the library form: `(R - mean) / (std + eps)` with Welford group moments
/// (`std_kind`, `singleton` apply).
pub const TKM_GRPO_STANDARD: u32 = 0;
/// GRPO as verl's `compute_grpo_outcome_advantage` (unbiased std, a singleton gets
/// mean 0, std 1).
pub const TKM_GRPO_VERL_LOOP: u32 = 1;
/// GRPO as verl's vectorised form (`sqrt(max(var, eps)) + eps`).
pub const TKM_GRPO_VERL_VECTORIZED: u32 = 2;
/// GRPO as TRL (contiguous groups only; `trl_scale` applies).
pub const TKM_GRPO_TRL: u32 = 3;

/// Unbiased (Bessel-corrected) standard deviation, `M2/(n-1)` (default).
pub const TKM_STD_UNBIASED: u32 = 0;
/// Population standard deviation, `M2/n`.
pub const TKM_STD_POPULATION: u32 = 1;

/// A group with fewer than two scorable rewards gets advantage 0 (default).
pub const TKM_SINGLETON_ZERO: u32 = 0;
/// A group with fewer than two scorable rewards uses mean 0, std 1 (verl's loop).
pub const TKM_SINGLETON_MEAN_ZERO_STD_ONE: u32 = 1;

/// TRL `scale_rewards="group"`: divide by the group's std (default).
pub const TKM_TRL_SCALE_GROUP: u32 = 0;
/// TRL `scale_rewards="batch"`: divide by the whole batch's std.
pub const TKM_TRL_SCALE_BATCH: u32 = 1;
/// TRL `scale_rewards="none"`: no division.
pub const TKM_TRL_SCALE_NONE: u32 = 2;

/// A NaN reward is an error, `TKM_STATUS_NON_FINITE` (default).
pub const TKM_NAN_ERROR: u32 = 0;
/// TRL's semantics: a NaN reward is unscorable, left out of the statistics, advantage 0.
pub const TKM_NAN_IGNORE_AND_ZERO: u32 = 1;

/// RLOO, the library form `n/(n-1) (R - mean)`; a singleton gets 0.
pub const TKM_RLOO_STANDARD: u32 = 0;
/// RLOO as verl's loop form (a singleton keeps `A = R`).
pub const TKM_RLOO_VERL_LOOP: u32 = 1;
/// RLOO as verl's vectorised form.
pub const TKM_RLOO_VERL_VECTORIZED: u32 = 2;
/// RLOO as TRL (contiguous groups of size >= 2), without advantage normalisation.
pub const TKM_RLOO_TRL: u32 = 3;
/// RLOO as TRL with `normalize_advantages=True`.
pub const TKM_RLOO_TRL_NORMALIZED: u32 = 4;

/// GRPO options. Initialise with `tkm_grpo_options_init` (the library defaults:
/// `TKM_GRPO_STANDARD`, unbiased std, singletons 0, std normalisation on, `eps = 1e-6`,
/// NaN rewards rejected), then change fields. NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_grpo_options {
    /// `sizeof(tkm_grpo_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `TKM_GRPO_*`.
    pub flavor: u32,
    /// `TKM_STD_*` (`TKM_GRPO_STANDARD` only).
    pub std_kind: u32,
    /// `TKM_SINGLETON_*` (`TKM_GRPO_STANDARD` only).
    pub singleton: u32,
    /// `TKM_TRL_SCALE_*` (`TKM_GRPO_TRL` only).
    pub trl_scale: u32,
    /// 1 = divide by the std (default), 0 = `A = R - mean` (Dr. GRPO).
    pub norm_by_std: u32,
    /// `TKM_NAN_*`.
    pub nan_policy: u32,
    /// The epsilon of the denominator: finite and >= 0 (default 1e-6, verl's; TRL uses 1e-4).
    pub eps: f32,
    /// Must be 0.
    pub reserved: u32,
}

impl Default for tkm_grpo_options {
    fn default() -> Self {
        tkm_grpo_options {
            struct_size: size_of::<tkm_grpo_options>(),
            flavor: TKM_GRPO_STANDARD,
            std_kind: TKM_STD_UNBIASED,
            singleton: TKM_SINGLETON_ZERO,
            trl_scale: TKM_TRL_SCALE_GROUP,
            norm_by_std: 1,
            nan_policy: TKM_NAN_ERROR,
            eps: 1e-6,
            reserved: 0,
        }
    }
}

const GRPO_FIELD_ENDS: [usize; 9] = [
    size_of::<usize>(),
    offset_of!(tkm_grpo_options, flavor) + 4,
    offset_of!(tkm_grpo_options, std_kind) + 4,
    offset_of!(tkm_grpo_options, singleton) + 4,
    offset_of!(tkm_grpo_options, trl_scale) + 4,
    offset_of!(tkm_grpo_options, norm_by_std) + 4,
    offset_of!(tkm_grpo_options, nan_policy) + 4,
    offset_of!(tkm_grpo_options, eps) + 4,
    offset_of!(tkm_grpo_options, reserved) + 4,
];

fn grpo_cfg(o: &tkm_grpo_options) -> Res<GrpoCfg> {
    let bad = TKM_STATUS_INVALID_ARGUMENT;
    let std = match o.std_kind {
        TKM_STD_UNBIASED => StdKind::Unbiased,
        TKM_STD_POPULATION => StdKind::Population,
        _ => return Err(bad),
    };
    let singleton = match o.singleton {
        TKM_SINGLETON_ZERO => SingletonPolicy::Zero,
        TKM_SINGLETON_MEAN_ZERO_STD_ONE => SingletonPolicy::MeanZeroStdOne,
        _ => return Err(bad),
    };
    let scale = match o.trl_scale {
        TKM_TRL_SCALE_GROUP => TrlScale::Group,
        TKM_TRL_SCALE_BATCH => TrlScale::Batch,
        TKM_TRL_SCALE_NONE => TrlScale::None,
        _ => return Err(bad),
    };
    let flavor = match o.flavor {
        TKM_GRPO_STANDARD => GrpoFlavor::Standard { std, singleton },
        TKM_GRPO_VERL_LOOP => GrpoFlavor::VerlLoop,
        TKM_GRPO_VERL_VECTORIZED => GrpoFlavor::VerlVectorized,
        TKM_GRPO_TRL => GrpoFlavor::Trl { scale },
        _ => return Err(bad),
    };
    let nan_policy = match o.nan_policy {
        TKM_NAN_ERROR => NanPolicy::Error,
        TKM_NAN_IGNORE_AND_ZERO => NanPolicy::IgnoreAndZero,
        _ => return Err(bad),
    };
    if o.reserved != 0 {
        return Err(bad);
    }
    Ok(GrpoCfg { flavor, norm_by_std: flag(o.norm_by_std)?, eps: o.eps, nan_policy })
}

/// The grouping: `group_ids` (NULL = none; else `n` arbitrary `uint32_t` labels, verl's
/// `uid`) or `group_size` (TRL's layout: consecutive blocks of `group_size`). Exactly one
/// must be given: ids with `group_size == 0`, or NULL ids with `group_size > 0`.
unsafe fn groups<'a>(n: usize, group_ids: *const u32, group_size: usize) -> Res<Groups<'a>> {
    match (opt_input(group_ids, n)?, group_size) {
        (Some(ids), 0) => Ok(Groups::Ids(ids)),
        (None, size) if size > 0 => Ok(Groups::Contiguous { size }),
        _ => Err(TKM_STATUS_INVALID_ARGUMENT),
    }
}

/// Writes the default GRPO options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one `tkm_grpo_options`.
#[no_mangle]
pub unsafe extern "C" fn tkm_grpo_options_init(opts: *mut tkm_grpo_options) -> tkm_status {
    guard(|| {
        if opts.is_null() {
            return Err(TKM_STATUS_NULL_POINTER);
        }
        if (opts as usize) % core::mem::align_of::<tkm_grpo_options>() != 0 {
            return Err(TKM_STATUS_MISALIGNED);
        }
        opts.write(tkm_grpo_options::default());
        Ok(())
    })
}

/// GRPO advantages, one per response: `out[b]` from `rewards` (`n` floats) grouped by
/// `group_ids`/`group_size` (see `groups` rule in the header), with `opts` (NULL = defaults).
/// Statistics accumulate in f64 in a fixed order; each advantage is rounded to f32 once.
///
/// Errors: `TKM_STATUS_NON_FINITE` (an infinite reward, or NaN under `TKM_NAN_ERROR`),
/// `_INVALID_ARGUMENT` (grouping, `n` not a multiple of `group_size`, `eps` negative or not
/// finite, `TKM_GRPO_TRL` with `group_ids`, unknown enum values).
///
/// # Safety
/// `rewards` and `out` must be valid for `n` floats, `group_ids` NULL or valid for `n`.
#[no_mangle]
pub unsafe extern "C" fn tkm_grpo_advantage(
    rewards: *const f32,
    n: usize,
    group_ids: *const u32,
    group_size: usize,
    opts: *const tkm_grpo_options,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let o = read_options(opts, tkm_grpo_options::default(), &GRPO_FIELD_ENDS)?;
        let cfg = grpo_cfg(&o)?;
        let r = input(rewards, n)?;
        let g = groups(n, group_ids, group_size)?;
        let mut dst = Out::new(out, n)?;
        advantages::grpo_advantage(r, g, &cfg, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Dr. GRPO advantages `A = R - mean_group(R)` (the library form: groups of fewer than two
/// get 0, NaN rewards are `TKM_STATUS_NON_FINITE`).
///
/// # Safety
/// As `tkm_grpo_advantage`.
#[no_mangle]
pub unsafe extern "C" fn tkm_dr_grpo_advantage(
    rewards: *const f32,
    n: usize,
    group_ids: *const u32,
    group_size: usize,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let r = input(rewards, n)?;
        let g = groups(n, group_ids, group_size)?;
        let mut dst = Out::new(out, n)?;
        advantages::dr_grpo_advantage(r, g, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// RLOO advantages `A_b = R_b - mean of the other rewards of b's group`, in the flavor
/// `TKM_RLOO_*`. Rewards must be finite. The TRL flavors need `group_size >= 2`.
///
/// # Safety
/// As `tkm_grpo_advantage`.
#[no_mangle]
pub unsafe extern "C" fn tkm_rloo_advantage(
    rewards: *const f32,
    n: usize,
    group_ids: *const u32,
    group_size: usize,
    flavor: u32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let flavor = match flavor {
            TKM_RLOO_STANDARD => RlooFlavor::Standard,
            TKM_RLOO_VERL_LOOP => RlooFlavor::VerlLoop,
            TKM_RLOO_VERL_VECTORIZED => RlooFlavor::VerlVectorized,
            TKM_RLOO_TRL => RlooFlavor::Trl { normalize: false },
            TKM_RLOO_TRL_NORMALIZED => RlooFlavor::Trl { normalize: true },
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let r = input(rewards, n)?;
        let g = groups(n, group_ids, group_size)?;
        let mut dst = Out::new(out, n)?;
        advantages::rloo_advantage(r, g, flavor, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Broadcasts one value per response to its tokens: `out[b*t + j] = a_seq[b]` where
/// `mask[b*t + j] != 0`, else 0 (a NaN `a_seq[b]` never reaches padding). `a_seq` has
/// `rows` floats; `mask` and `out` are `[rows, t]`.
///
/// # Safety
/// `a_seq` valid for `rows` floats, `mask` and `out` for `rows * t` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_broadcast_masked(
    a_seq: *const f32,
    rows: usize,
    mask: *const u8,
    t: usize,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let len = mul(rows, t)?;
        let a = input(a_seq, rows)?;
        let m = input(mask, len)?;
        let mut dst = Out::new(out, len)?;
        advantages::broadcast_masked(a, m, t, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}
