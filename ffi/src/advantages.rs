//! Outcome advantage estimators: GRPO (library, verl loop/vectorised, TRL), Dr. GRPO, RLOO,
//! REINFORCE++ (and its group baseline), returns-to-go, GAE, masked whitening, DAPO's
//! overlong shaping and dynamic-sampling filter, and the masked broadcast of per-response
//! values to tokens.
//! `tokenmath_core::advantages` documents the math and every flavor.

use tokenmath_core::advantages::{
    self, Compat, Groups, GrpoCfg, GrpoFlavor, Moments, NanPolicy, OverlongCfg, RlooFlavor, SingletonPolicy, StdKind,
    TrlScale,
};

use crate::status::*;
use crate::util::{
    check_out, flag, guard, init_options, input, mul, opt_input, options, read_options, scratch, Out, Res,
};

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

options!(tkm_grpo_options {
    flavor: TKM_GRPO_STANDARD,
    std_kind: TKM_STD_UNBIASED,
    singleton: TKM_SINGLETON_ZERO,
    trl_scale: TKM_TRL_SCALE_GROUP,
    norm_by_std: 1,
    nan_policy: TKM_NAN_ERROR,
    eps: 1e-6,
    reserved: 0,
});

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
pub(crate) unsafe fn groups<'a>(n: usize, group_ids: *const u32, group_size: usize) -> Res<Groups<'a>> {
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
    init_options(opts)
}

/// GRPO advantages, one per response: `out[b]` from `rewards` (`n` floats) grouped by
/// `group_ids`/`group_size` (rule 13 of the header: exactly one of `group_ids` or
/// `group_size > 0`), with `opts` (NULL = defaults).
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
        let o = read_options(opts)?;
        let cfg = grpo_cfg(&o)?;
        let r = input(rewards, n)?;
        let g = groups(n, group_ids, group_size)?;
        let mut dst = Out::new(out, n)?;
        advantages::grpo_advantage(r, g, &cfg, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Mergeable moments of one group's values (Chan et al.): count (or total weight) `n`, mean
/// and `m2`, the sum of squared deviations from the mean, all in double precision. 24 bytes
/// of plain data that a data-parallel trainer all-gathers as raw bytes; merge them with
/// `tkm_group_moments_merge`, never by hand, so that every rank uses the same order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct tkm_moments {
    /// Number of values (or total weight).
    pub n: f64,
    /// Mean (0 when `n == 0`).
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl From<Moments> for tkm_moments {
    fn from(m: Moments) -> Self {
        tkm_moments { n: m.n, mean: m.mean, m2: m.m2 }
    }
}

impl From<tkm_moments> for Moments {
    fn from(m: tkm_moments) -> Self {
        Moments { n: m.n, mean: m.mean, m2: m.m2 }
    }
}

/// A table of moments in the core's type (scratch).
unsafe fn moments_table(p: *const tkm_moments, len: usize) -> Res<Vec<Moments>> {
    let src = input(p, len)?;
    let mut v = scratch::<Moments>(len)?;
    for (d, s) in v.iter_mut().zip(src) {
        *d = (*s).into();
    }
    Ok(v)
}

/// Writes a `K`-entry table (`ids`, `moments`) and `K` to the caller's outputs.
unsafe fn commit_table(
    ids: &[u32],
    moments: &[Moments],
    ids_out: *mut u32,
    moments_out: *mut tkm_moments,
    groups_out: *mut usize,
) -> Res {
    let k = ids.len();
    let mut i = Out::new(ids_out, k)?;
    let mut m = Out::new(moments_out, k)?;
    let mut g = Out::<usize>::new(groups_out, 1)?;
    i.buf.copy_from_slice(ids);
    for (d, s) in m.buf.iter_mut().zip(moments) {
        *d = (*s).into();
    }
    g.buf[0] = k;
    i.commit();
    m.commit();
    g.commit();
    Ok(())
}

/// Per-group moments of `x` (`n` floats) grouped by `group_ids`/`group_size` (as
/// `tkm_grpo_advantage`), one entry per distinct group in order of first appearance: the
/// group's id (its label; the block index `b / group_size` for contiguous groups) into
/// `ids_out`, its moments into `moments_out`, and the number of groups `K` into
/// `*groups_out`. Members are pushed in ascending row order; `weight` (NULL = every row 1;
/// else `n` finite, non-negative floats, e.g. token counts) gives the weighted form, and a
/// row of weight 0 is left out (use it for unscorable rows).
///
/// For data parallelism, give every rank's rows their global group ids (`uid`): contiguous
/// block indices are local to the call. `capacity` is the length of `ids_out` and
/// `moments_out`; `K <= n`, so `capacity = n` always suffices.
///
/// Errors: `TKM_STATUS_LENGTH_MISMATCH` (`capacity < K`), `_NON_FINITE` (a weight, or an `x`
/// of non-zero weight, that is NaN or infinite), `_INVALID_ARGUMENT` (a negative weight, or
/// the grouping rule of `tkm_grpo_advantage`).
///
/// # Safety
/// `x` (and `group_ids`, `weight` unless NULL) valid for `n` elements; `ids_out` and
/// `moments_out` for `capacity`; `groups_out` for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_group_moments(
    x: *const f32,
    n: usize,
    group_ids: *const u32,
    group_size: usize,
    weight: *const f32,
    ids_out: *mut u32,
    moments_out: *mut tkm_moments,
    capacity: usize,
    groups_out: *mut usize,
) -> tkm_status {
    guard(|| {
        let x = input(x, n)?;
        let g = groups(n, group_ids, group_size)?;
        let w = opt_input(weight, n)?;
        // Validate the destinations before computing; K is only known afterwards.
        check_out(ids_out, capacity)?;
        check_out(moments_out, capacity)?;
        check_out(groups_out, 1)?;
        let cap = capacity.min(n);
        let (mut ids, mut ms) = (scratch::<u32>(cap)?, scratch::<Moments>(cap)?);
        let k = advantages::group_moments(x, g, w, &mut ids, &mut ms)?;
        commit_table(&ids[..k], &ms[..k], ids_out, moments_out, groups_out)
    })
}

/// Merges gathered group-moment tables: `ids`/`moments` (`entries` each) are every rank's
/// `tkm_group_moments` table concatenated in ascending rank order (what an all-gather
/// leaves). Entries with equal ids are merged in entry order (so in ascending rank order);
/// the `K` merged groups go to `ids_out`/`moments_out` (`capacity` entries; `K <= entries`)
/// in order of each id's first entry, `K` to `*groups_out`.
///
/// The result depends only on the tables and their order. A group whose rows all live on
/// one rank gets exactly the moments one `tkm_group_moments` call on the whole batch gives;
/// a group split across ranks agrees with that within the merge's rounding (relative
/// `~n 2^-52`), bitwise reproducible for the same split. `O(entries * K)`.
///
/// Errors: `TKM_STATUS_LENGTH_MISMATCH` (`capacity < K`), `_INVALID_ARGUMENT` (an entry with
/// `n` or `m2` negative or not finite, or a non-finite mean).
///
/// # Safety
/// `ids` and `moments` valid for `entries` elements, `ids_out` and `moments_out` for
/// `capacity`, `groups_out` for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_group_moments_merge(
    ids: *const u32,
    moments: *const tkm_moments,
    entries: usize,
    ids_out: *mut u32,
    moments_out: *mut tkm_moments,
    capacity: usize,
    groups_out: *mut usize,
) -> tkm_status {
    guard(|| {
        let ids = input(ids, entries)?;
        let table = moments_table(moments, entries)?;
        check_out(ids_out, capacity)?;
        check_out(moments_out, capacity)?;
        check_out(groups_out, 1)?;
        let cap = capacity.min(entries);
        let (mut ids_m, mut ms) = (scratch::<u32>(cap)?, scratch::<Moments>(cap)?);
        let k = advantages::merge_group_moments(ids, &table, &mut ids_m, &mut ms)?;
        commit_table(&ids_m[..k], &ms[..k], ids_out, moments_out, groups_out)
    })
}

/// GRPO advantages of `n` responses from group moments computed elsewhere (the
/// data-parallel form of `tkm_grpo_advantage`): response `b` with reward `rewards[b]` and
/// group id `group_ids[b]` (required) uses the entry of `table_ids`/`table` (`table_len`
/// entries, e.g. the output of `tkm_group_moments_merge`) with that id. `opts` as
/// `tkm_grpo_advantage`; only `TKM_GRPO_STANDARD` and `TKM_GRPO_VERL_LOOP` are defined by
/// moments. With the table of the whole batch this is bitwise `tkm_grpo_advantage` with
/// `group_ids`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (another flavor, an id missing from the table, a
/// repeated table id, an invalid table entry, or the option errors of
/// `tkm_grpo_advantage`), `_NON_FINITE` (rewards, as `tkm_grpo_advantage`).
///
/// # Safety
/// `rewards`, `group_ids` and `out` valid for `n` elements; `table_ids` and `table` for
/// `table_len`.
#[no_mangle]
pub unsafe extern "C" fn tkm_grpo_advantage_from_moments(
    rewards: *const f32,
    n: usize,
    group_ids: *const u32,
    table_ids: *const u32,
    table: *const tkm_moments,
    table_len: usize,
    opts: *const tkm_grpo_options,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let o = read_options(opts)?;
        let cfg = grpo_cfg(&o)?;
        let r = input(rewards, n)?;
        let g = input(group_ids, n)?;
        let ids = input(table_ids, table_len)?;
        let t = moments_table(table, table_len)?;
        let mut dst = Out::new(out, n)?;
        advantages::grpo_advantage_from_moments(r, g, ids, &t, &cfg, &mut dst.buf)?;
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

/// Token-level estimators, the library form: fewer than two valid tokens whiten to 0, padding
/// outputs are 0 (default).
pub const TKM_COMPAT_LIBRARY: u32 = 0;
/// Token-level estimators exactly as verl `torch_functional.py`: `sum(mask) + 1e-8` mean
/// denominators, `TKM_STATUS_INVALID_ARGUMENT` for fewer than two valid tokens, whitened
/// values written into padding too (where the function says so).
pub const TKM_COMPAT_VERL: u32 = 1;

fn compat(c: u32) -> Res<Compat> {
    match c {
        TKM_COMPAT_LIBRARY => Ok(Compat::Library),
        TKM_COMPAT_VERL => Ok(Compat::Verl),
        _ => Err(TKM_STATUS_INVALID_ARGUMENT),
    }
}

fn singleton(s: u32) -> Res<SingletonPolicy> {
    match s {
        TKM_SINGLETON_ZERO => Ok(SingletonPolicy::Zero),
        TKM_SINGLETON_MEAN_ZERO_STD_ONE => Ok(SingletonPolicy::MeanZeroStdOne),
        _ => Err(TKM_STATUS_INVALID_ARGUMENT),
    }
}

/// Discounted returns-to-go with EOS reset, verl's REINFORCE++ recurrence, per row of the
/// `[rows, t]` token rewards `r`: `G_t = r_t + gamma * carry`, `carry = mask_t ? G_t : 0`
/// (in f64). `out` (`[rows, t]`) is not masked (as verl).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for `gamma` negative or not finite;
/// `TKM_STATUS_NON_FINITE` for a non-finite reward at a valid position.
///
/// # Safety
/// `r`, `mask`, `out` valid for `rows * t` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_returns_to_go(
    r: *const f32,
    mask: *const u8,
    rows: usize,
    t: usize,
    gamma: f32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let n = mul(rows, t)?;
        let (r, m) = (input(r, n)?, input(mask, n)?);
        let mut dst = Out::new(out, n)?;
        advantages::returns_to_go(r, m, t, gamma, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// REINFORCE++ (verl `compute_reinforce_plus_plus_outcome_advantage`): the returns-to-go `G`
/// of the `[rows, t]` token rewards `r` (into `ret`, NULL = not wanted) and
/// `adv = masked_whiten(G)` over all valid tokens of the batch (eps 1e-8; 0 at padding).
/// `compat_mode` is `TKM_COMPAT_*`.
///
/// Errors: as `tkm_returns_to_go`; under `TKM_COMPAT_VERL`, fewer than two valid tokens are
/// `TKM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `r`, `mask`, `adv` (and `ret` unless NULL) valid for `rows * t` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_reinforce_pp_advantage(
    r: *const f32,
    mask: *const u8,
    rows: usize,
    t: usize,
    gamma: f32,
    compat_mode: u32,
    adv: *mut f32,
    ret: *mut f32,
) -> tkm_status {
    guard(|| {
        let c = compat(compat_mode)?;
        let n = mul(rows, t)?;
        let (r, m) = (input(r, n)?, input(mask, n)?);
        let mut a = Out::new(adv, n)?;
        let mut g = Out::optional(ret, n)?;
        let mut unwanted: Vec<f32>;
        let ret_buf = match g.as_mut() {
            Some(o) => &mut o.buf,
            None => {
                unwanted = scratch(n)?;
                &mut unwanted
            }
        };
        advantages::reinforce_pp_advantage(r, m, t, gamma, c, &mut a.buf, ret_buf)?;
        a.commit();
        if let Some(g) = g {
            g.commit();
        }
        Ok(())
    })
}

/// REINFORCE++-baseline (verl `compute_reinforce_plus_plus_baseline_outcome_advantage`):
/// `A_b = R_b - mean of b's group` of the `rows` per-response `rewards` (grouped by
/// `group_ids`/`group_size` as `tkm_grpo_advantage`), tiled over the valid tokens of row `b`
/// of the `[rows, t]` `mask`, whitened over all valid tokens (eps 1e-8), 0 at padding, into
/// `out` (`[rows, t]`). `singleton_policy` (`TKM_SINGLETON_*`) is what a group of one gets
/// before whitening (verl: `TKM_SINGLETON_MEAN_ZERO_STD_ONE`, `A = R`); `compat_mode` is
/// `TKM_COMPAT_*`. Rewards must be finite.
///
/// # Safety
/// `rewards` (and `group_ids` unless NULL) valid for `rows` elements, `mask` and `out` for
/// `rows * t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_reinforce_pp_baseline_advantage(
    rewards: *const f32,
    rows: usize,
    group_ids: *const u32,
    group_size: usize,
    mask: *const u8,
    t: usize,
    singleton_policy: u32,
    compat_mode: u32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let sp = singleton(singleton_policy)?;
        let c = compat(compat_mode)?;
        let n = mul(rows, t)?;
        let r = input(rewards, rows)?;
        let g = groups(rows, group_ids, group_size)?;
        let m = input(mask, n)?;
        let mut dst = Out::new(out, n)?;
        advantages::reinforce_pp_baseline_advantage(r, g, m, t, sp, c, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Generalised advantage estimation (verl `compute_gae_advantage_return`) per row of the
/// `[rows, t]` token rewards `r` and `values`: the backward recurrence over valid tokens
/// (masked positions are skipped, in f64), `ret = A + V` (into `ret`, NULL = not wanted,
/// written everywhere as verl) and `adv = masked_whiten(A)` over all valid tokens (eps 1e-8;
/// `compat_mode` `TKM_COMPAT_*` as `tkm_reinforce_pp_advantage`).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for `gamma` or `lam` negative or not finite;
/// `TKM_STATUS_NON_FINITE` for a non-finite reward or value at a valid position.
///
/// # Safety
/// `r`, `values`, `mask`, `adv` (and `ret` unless NULL) valid for `rows * t` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_gae(
    r: *const f32,
    values: *const f32,
    mask: *const u8,
    rows: usize,
    t: usize,
    gamma: f32,
    lam: f32,
    compat_mode: u32,
    adv: *mut f32,
    ret: *mut f32,
) -> tkm_status {
    guard(|| {
        let c = compat(compat_mode)?;
        let n = mul(rows, t)?;
        let (r, v, m) = (input(r, n)?, input(values, n)?, input(mask, n)?);
        let mut a = Out::new(adv, n)?;
        let mut g = Out::optional(ret, n)?;
        let mut unwanted: Vec<f32>;
        let ret_buf = match g.as_mut() {
            Some(o) => &mut o.buf,
            None => {
                unwanted = scratch(n)?;
                &mut unwanted
            }
        };
        advantages::gae(
            r,
            v,
            m,
            t,
            &advantages::GaeCfg { gamma, lam, compat: c },
            advantages::GaeOut { adv: &mut a.buf, ret: ret_buf },
        )?;
        a.commit();
        if let Some(g) = g {
            g.commit();
        }
        Ok(())
    })
}

/// Masked whitening of `n` values: `out = (x - mean) * rsqrt(var_unbiased + eps)` with the
/// moments over positions where `mask != 0` (in f64); padding gets 0 (`TKM_COMPAT_LIBRARY`)
/// or the same formula (`TKM_COMPAT_VERL`, which also rejects fewer than two valid values).
/// `eps` (verl: 1e-8) must be finite and >= 0. `out` may alias `x`.
///
/// # Safety
/// `x`, `mask`, `out` valid for `n` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_masked_whiten(
    x: *const f32,
    mask: *const u8,
    n: usize,
    eps: f32,
    compat_mode: u32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let c = compat(compat_mode)?;
        let (x, m) = (input(x, n)?, input(mask, n)?);
        let mut dst = Out::new(out, n)?;
        advantages::masked_whiten(x, m, eps, c, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// DAPO overlong reward shaping (verl `reward_manager/dapo.py`). Initialise with
/// `tkm_overlong_options_init` (the DAPO paper: `max_len = 20480`, `buffer_len = 4096`,
/// factor 1), then change fields. NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_overlong_options {
    /// `sizeof(tkm_overlong_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `L_max`, the maximum response length.
    pub max_len: usize,
    /// `L_buf`, the soft-punishment buffer (`1 <= buffer_len <= max_len`).
    pub buffer_len: usize,
    /// The penalty at `L_max` (finite, >= 0).
    pub penalty_factor: f32,
}

options!(tkm_overlong_options {
    let c = OverlongCfg::default();
    max_len: c.max_len,
    buffer_len: c.buffer_len,
    penalty_factor: c.penalty_factor,
});

unsafe fn overlong_cfg(p: *const tkm_overlong_options) -> Res<OverlongCfg> {
    let o = read_options(p)?;
    Ok(OverlongCfg { max_len: o.max_len, buffer_len: o.buffer_len, penalty_factor: o.penalty_factor })
}

/// Writes the default overlong options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_overlong_options_init(opts: *mut tkm_overlong_options) -> tkm_status {
    init_options(opts)
}

/// The overlong penalty of a response of `len` valid tokens into `*out`:
/// `min(-(len - (max_len - buffer_len)) / buffer_len * penalty_factor, 0)` (in f64, rounded
/// once): 0 up to `max_len - buffer_len`, `-penalty_factor` at `max_len`, no lower clamp.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` for `buffer_len` 0 or above `max_len`, or a factor
/// negative or not finite.
///
/// # Safety
/// `opts` NULL or a valid options struct, `out` valid for one float.
#[no_mangle]
pub unsafe extern "C" fn tkm_overlong_penalty(
    len: usize,
    opts: *const tkm_overlong_options,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let cfg = overlong_cfg(opts)?;
        let mut dst = Out::new(out, 1)?;
        dst.buf[0] = advantages::overlong_penalty(len, &cfg)?;
        dst.commit();
        Ok(())
    })
}

/// DAPO's token rewards (`[rows, t]`, into `out`): row `b` is 0 except at column `L_b - 1`,
/// which holds `scores[b] + overlong_penalty(L_b)` with `L_b` the number of valid tokens of
/// row `b` of `mask`; a row without valid tokens stays 0. `scores` (`rows` floats) must be
/// finite (`TKM_STATUS_NON_FINITE`).
///
/// # Safety
/// `scores` valid for `rows` floats, `mask` and `out` for `rows * t` elements.
#[no_mangle]
pub unsafe extern "C" fn tkm_overlong_shaped_token_rewards(
    scores: *const f32,
    rows: usize,
    mask: *const u8,
    t: usize,
    opts: *const tkm_overlong_options,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let cfg = overlong_cfg(opts)?;
        let n = mul(rows, t)?;
        let (s, m) = (input(scores, rows)?, input(mask, n)?);
        let mut dst = Out::new(out, n)?;
        advantages::overlong_shaped_token_rewards(s, m, t, &cfg, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// DAPO's dynamic-sampling filter: `keep[b] = 1` for every response of a group whose `metric`
/// values (`n` floats, grouped as `tkm_grpo_advantage`) are not all bitwise equal (`-0`
/// equals `+0`; singleton groups are kept), else 0; `*kept_groups` (NULL = not wanted) the
/// number of kept groups. A NaN metric is `TKM_STATUS_NON_FINITE`.
///
/// # Safety
/// `metric` and `keep` (and `group_ids` unless NULL) valid for `n` elements, `kept_groups`
/// NULL or valid for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tkm_dynamic_sampling_keep(
    metric: *const f32,
    n: usize,
    group_ids: *const u32,
    group_size: usize,
    keep: *mut u8,
    kept_groups: *mut usize,
) -> tkm_status {
    guard(|| {
        let m = input(metric, n)?;
        let g = groups(n, group_ids, group_size)?;
        let mut dst = Out::new(keep, n)?;
        let kg = Out::<usize>::optional(kept_groups, 1)?;
        let k = advantages::dynamic_sampling_keep(m, g, &mut dst.buf)?;
        dst.commit();
        if let Some(mut kg) = kg {
            kg.buf[0] = k;
            kg.commit();
        }
        Ok(())
    })
}
