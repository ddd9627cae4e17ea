//! Exploration bonuses (E3B, arXiv 2210.05805; the study of global and episodic bonuses,
//! arXiv 2306.03236): count bonuses and a count table over caller storage, E3B's elliptical
//! bonus with the rank-1 (Sherman–Morrison) inverse update, RND's prediction error and
//! NovelD's bonus, their combination, and running reward normalisation with the assembly
//! of the total reward. `tokenmath_core::exploration` documents the math and every choice.

use tokenmath_core::exploration::{
    self as ex, AssembleCfg, Combine, CountTable, E3bCfg, EpisodicForm, MomentsCompat, RewardNorm, RunningMoments,
};

use crate::exec::{exec_from, tkm_exec_options};
use crate::status::*;
use crate::util::{flag, guard, init_options, inout, input, mul, opt_input, options, overlaps, read_options, Out, Res};

/// The episodic bonus `1[N_e = 1]` (the source's learner; default).
pub const TKM_EPISODIC_FIRST_VISIT: u32 = 0;
/// The episodic bonus `1/sqrt(N_e)` (the source's actor).
pub const TKM_EPISODIC_INV_SQRT: u32 = 1;

/// Count bonuses of `n` transitions: `b_g = 1/sqrt(n_global[i])` and the episodic bonus of
/// `n_episodic[i]` (`episodic_form`, `TKM_EPISODIC_*`), their product when both are given;
/// either array may be NULL (absent), not both. Counts are taken after the visit's
/// increment (>= 1).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (both NULL, a count of 0, an unknown form).
///
/// # Safety
/// Non-NULL arrays valid for `n` elements; `out` for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_count_bonuses(
    n_global: *const u64,
    n_episodic: *const u64,
    n: usize,
    episodic_form: u32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let g = opt_input(n_global, n)?;
        let e = opt_input(n_episodic, n)?;
        let form = match episodic_form {
            TKM_EPISODIC_FIRST_VISIT => EpisodicForm::FirstVisit,
            TKM_EPISODIC_INV_SQRT => EpisodicForm::InvSqrt,
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let mut dst = Out::new(out, n)?;
        ex::count_bonuses(g, e, form, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Visits `n` keys in order in a count table held in the caller's `keys`/`counts` arrays
/// (`capacity` slots each, a power of two; a new table is all-zero counts, clear one by
/// zeroing `counts`), writing each key's count after its increment to `counts_out`. Any
/// `uint64_t` is a key. The table's contents depend only on the visits made.
///
/// Refused, with the table unchanged, unless it has a free slot for every visit
/// (occupied + n <= capacity): size it for the distinct keys plus one batch.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (capacity not a power of two, no room),
/// `_OVERLAP` (`counts_out` overlaps the table).
///
/// # Safety
/// `keys` and `counts` valid for reads and writes of `capacity` elements, `visit_keys` for
/// `n` reads, `counts_out` for `n` writes.
#[no_mangle]
pub unsafe extern "C" fn tkm_count_table_visit(
    keys: *mut u64,
    counts: *mut u64,
    capacity: usize,
    visit_keys: *const u64,
    n: usize,
    counts_out: *mut u64,
) -> tkm_status {
    guard(|| {
        if overlaps(keys, capacity, counts, capacity) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let k = inout(keys, capacity)?;
        let c = inout(counts, capacity)?;
        let v = input(visit_keys, n)?;
        let mut dst = Out::new(counts_out, n)?;
        let mut table = CountTable::new(k, c)?;
        table.visit(v, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// E3B options. Initialise with `tkm_e3b_options_init` (the source's values: ridge 0.1,
/// first step of an episode reports 0; the library's symmetrisation every 64 updates),
/// then change fields. NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_e3b_options {
    /// `sizeof(tkm_e3b_options)` as the caller compiled it.
    pub struct_size: usize,
    /// Ridge `lambda` of `C = lambda I + sum phi phi^T`: finite, > 0, finite `1/lambda`.
    pub ridge: f32,
    /// Symmetrise `C^-1` every this many updates (0 = never).
    pub sym_every: u32,
    /// 1 = the first step after a reset reports bonus 0 (default), 0 = report it.
    pub zero_first_step: u32,
}

options!(tkm_e3b_options { let c = E3bCfg::default(); ridge: c.ridge, sym_every: c.sym_every, zero_first_step: 1 });

/// Writes the default E3B options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_e3b_options_init(opts: *mut tkm_e3b_options) -> tkm_status {
    init_options(opts)
}

unsafe fn e3b_cfg(p: *const tkm_e3b_options) -> Res<E3bCfg> {
    let o = read_options(p)?;
    Ok(E3bCfg { ridge: o.ridge, sym_every: o.sym_every, zero_first_step: flag(o.zero_first_step)? })
}

/// Resets `n_env` E3B inverses (`c_inv`, `n_env * d * d` floats, row-major) to
/// `(1/lambda) I` (episode start; never for the lifelong variant).
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (`d == 0`, a bad ridge), `_SIZE_OVERFLOW`.
///
/// # Safety
/// `c_inv` valid for writes of `n_env * d * d` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_e3b_reset(
    opts: *const tkm_e3b_options,
    n_env: usize,
    d: usize,
    c_inv: *mut f32,
) -> tkm_status {
    guard(|| {
        let cfg = e3b_cfg(opts)?;
        if d == 0 {
            return Err(TKM_STATUS_INVALID_ARGUMENT);
        }
        let dd = mul(d, d)?;
        let c = inout(c_inv, mul(n_env, dd)?)?;
        for k in 0..n_env {
            ex::e3b_reset(&cfg, d, &mut c[k * dd..(k + 1) * dd])?;
        }
        Ok(())
    })
}

/// One E3B step for each of `n_env` environments: with `u = C^-1 phi`, writes
/// `bonus[k] = phi^T u` (0 when `steps[k] == 0` and `zero_first_step`) and updates
/// `C^-1 <- C^-1 - u u^T / (1 + b)` in place, `O(d^2)` per environment, no allocation.
/// `c_inv` is `[n_env, d, d]`, `phi` `[n_env, d]`, `steps[k]` the updates since
/// environment `k`'s reset (the caller increments it), `scratch` `n_env * d` floats.
/// Environments are split over `exec`'s threads; the bits do not depend on them.
///
/// On any error no inverse and no bonus changes.
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf feature, or a bonus that overflows),
/// `_INVALID_ARGUMENT` (`d == 0`, a bad option), `_OVERLAP` (arrays that overlap),
/// `_SIZE_OVERFLOW`.
///
/// # Safety
/// Every array valid for its length as above (`c_inv`, `scratch`, `bonus` writable).
#[no_mangle]
pub unsafe extern "C" fn tkm_e3b_step(
    exec: *const tkm_exec_options,
    opts: *const tkm_e3b_options,
    n_env: usize,
    d: usize,
    c_inv: *mut f32,
    phi: *const f32,
    steps: *const u64,
    scratch: *mut f32,
    bonus: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let cfg = e3b_cfg(opts)?;
        if d == 0 {
            return Err(TKM_STATUS_INVALID_ARGUMENT);
        }
        let (nc, nd) = (mul(n_env, mul(d, d)?)?, mul(n_env, d)?);
        let writable: [(*const f32, usize); 3] = [(c_inv, nc), (scratch, nd), (bonus, n_env)];
        let all = [(c_inv as *const f32, nc), (scratch as *const f32, nd), (bonus as *const f32, n_env), (phi, nd)];
        for (i, &(p, n)) in writable.iter().enumerate() {
            if all.iter().enumerate().any(|(j, &(q, m))| i != j && overlaps(p, n, q, m)) {
                return Err(TKM_STATUS_OVERLAP);
            }
        }
        if overlaps(steps, n_env, c_inv, nc)
            || overlaps(steps, n_env, scratch, nd)
            || overlaps(steps, n_env, bonus, n_env)
        {
            return Err(TKM_STATUS_OVERLAP);
        }
        let c = inout(c_inv, nc)?;
        let p = input(phi, nd)?;
        let s = input(steps, n_env)?;
        let u = inout(scratch, nd)?;
        let b = inout(bonus, n_env)?;
        // The core computes and checks every environment before it writes anything.
        ex::e3b_step_batch(&exec, &cfg, d, c, p, s, u, b)?;
        Ok(())
    })
}

/// RND's prediction error `out[r] = ||pred[r] - target[r]||_2` (L2 norm, not squared) of
/// `rows` rows of `dim` floats (contiguous), accumulated in double precision.
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf input, or a norm that overflows float),
/// `_SIZE_OVERFLOW`.
///
/// # Safety
/// `pred` and `target` valid for `rows * dim` floats, `out` for `rows`.
#[no_mangle]
pub unsafe extern "C" fn tkm_rnd_error(
    exec: *const tkm_exec_options,
    rows: usize,
    dim: usize,
    pred: *const f32,
    target: *const f32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let exec = exec_from(exec)?;
        let n = mul(rows, dim)?;
        let p = input(pred, n)?;
        let t = input(target, n)?;
        let mut dst = Out::new(out, rows)?;
        ex::rnd_error(&exec, dim, p, t, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// NovelD's bonus `out[i] = max(err_next[i] - alpha * err_curr[i], 0)` (`alpha = 0` is RND,
/// the source's `scale_fac` default is 0.1).
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf error), `_INVALID_ARGUMENT` (a negative
/// error, `alpha` negative or not finite).
///
/// # Safety
/// `err_next`, `err_curr` and `out` valid for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_noveld_bonus(
    n: usize,
    err_next: *const f32,
    err_curr: *const f32,
    alpha: f32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let a = input(err_next, n)?;
        let b = input(err_curr, n)?;
        let mut dst = Out::new(out, n)?;
        ex::noveld_bonus(a, b, alpha, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Combine by product `b_e * b_g` (the source's default).
pub const TKM_COMBINE_MULT: u32 = 0;
/// Combine by sum `b_e + coeff * b_g` (`coeff` = the source's `global_bonus_coeff`, 1.0).
pub const TKM_COMBINE_ADD: u32 = 1;

/// Combines the episodic and global bonuses of `n` transitions (`TKM_COMBINE_*`; `coeff`
/// is read by `TKM_COMBINE_ADD` only).
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf input, or a result that overflows float),
/// `_INVALID_ARGUMENT` (an unknown mode, a non-finite `coeff`).
///
/// # Safety
/// `episodic`, `global` and `out` valid for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkm_combine_bonuses(
    n: usize,
    episodic: *const f32,
    global: *const f32,
    mode: u32,
    coeff: f32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let e = input(episodic, n)?;
        let g = input(global, n)?;
        let mode = match mode {
            TKM_COMBINE_MULT => Combine::Mult,
            TKM_COMBINE_ADD => Combine::Add { coeff },
            _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
        };
        let mut dst = Out::new(out, n)?;
        ex::combine_bonuses(e, g, mode, &mut dst.buf)?;
        dst.commit();
        Ok(())
    })
}

/// Running moments of a reward stream in the source's form: `count`, `sum`, and `m2` (sum of
/// squared deviations), all double; `std = sqrt(m2/count)`. A fresh state is all zeros
/// (the library) or `count = 1e-8` (`TKM_MOMENTS_E3B`, the source). 24 bytes of plain data:
/// ranks all-gather batch partials (`tkm_reward_norm_batch_moments`) and merge them with
/// `tkm_running_moments_merge`, in rank order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct tkm_running_moments {
    /// Values seen.
    pub count: f64,
    /// Their sum.
    pub sum: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl From<RunningMoments> for tkm_running_moments {
    fn from(m: RunningMoments) -> Self {
        tkm_running_moments { count: m.count, sum: m.sum, m2: m.m2 }
    }
}

impl From<tkm_running_moments> for RunningMoments {
    fn from(m: tkm_running_moments) -> Self {
        RunningMoments { count: m.count, sum: m.sum, m2: m.m2 }
    }
}

/// `*out = a` merged with `b` (Chan et al., in the source's operation order). `out` may
/// alias `a` or `b`.
///
/// Errors: `TKM_STATUS_INVALID_ARGUMENT` (a negative or non-finite count or m2, a
/// non-finite sum).
///
/// # Safety
/// `a`, `b` valid for reading one struct, `out` for writing one.
#[no_mangle]
pub unsafe extern "C" fn tkm_running_moments_merge(
    a: *const tkm_running_moments,
    b: *const tkm_running_moments,
    out: *mut tkm_running_moments,
) -> tkm_status {
    guard(|| {
        let a: RunningMoments = input(a, 1)?[0].into();
        let b: RunningMoments = input(b, 1)?[0].into();
        let mut dst = Out::<tkm_running_moments>::new(out, 1)?;
        for m in [a, b] {
            let ok = m.count.is_finite() && m.count >= 0.0 && m.sum.is_finite() && m.m2.is_finite() && m.m2 >= 0.0;
            if !ok {
                return Err(TKM_STATUS_INVALID_ARGUMENT);
            }
        }
        dst.buf[0] = a.merge(b).into();
        dst.commit();
        Ok(())
    })
}

/// No normalisation.
pub const TKM_REWARD_NORM_NONE: u32 = 0;
/// Normalise the intrinsic rewards (the source's default).
pub const TKM_REWARD_NORM_INT: u32 = 1;
/// Normalise the extrinsic rewards.
pub const TKM_REWARD_NORM_EXT: u32 = 2;
/// Normalise the total after assembly.
pub const TKM_REWARD_NORM_ALL: u32 = 3;

/// Count every element of a batch (the library; default).
pub const TKM_MOMENTS_LIBRARY: u32 = 0;
/// The source's arithmetic: a `[T, B]` batch counts `time_steps = T` (single process only).
pub const TKM_MOMENTS_E3B: u32 = 1;

/// Reward assembly options. Initialise with `tkm_assemble_options_init` (the source's
/// values: `TKM_REWARD_NORM_INT`, `intrinsic_coef = 1`, clip on, extrinsic on; the library's
/// `TKM_MOMENTS_LIBRARY`), then change fields. NULL means the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct tkm_assemble_options {
    /// `sizeof(tkm_assemble_options)` as the caller compiled it.
    pub struct_size: usize,
    /// `TKM_REWARD_NORM_*`.
    pub norm: u32,
    /// `eta` of `r = r_ext + eta * r_int` (finite).
    pub intrinsic_coef: f32,
    /// 1 = clamp the total to [-1, 1] (default), 0 = no clamp.
    pub clip: u32,
    /// 1 = add the extrinsic reward (default), 0 = `r = eta * r_int` (`r_ext` may be NULL).
    pub use_extrinsic: u32,
    /// `TKM_MOMENTS_*`.
    pub compat: u32,
    /// `T` for `TKM_MOMENTS_E3B` (the batch length must be a non-zero multiple of it).
    pub time_steps: usize,
}

options!(tkm_assemble_options {
    norm: TKM_REWARD_NORM_INT,
    intrinsic_coef: 1.0,
    clip: 1,
    use_extrinsic: 1,
    compat: TKM_MOMENTS_LIBRARY,
    time_steps: 0,
});

/// Writes the default assembly options into `*opts`.
///
/// # Safety
/// `opts` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_assemble_options_init(opts: *mut tkm_assemble_options) -> tkm_status {
    init_options(opts)
}

unsafe fn assemble_cfg(p: *const tkm_assemble_options) -> Res<AssembleCfg> {
    let o = read_options(p)?;
    let norm = match o.norm {
        TKM_REWARD_NORM_NONE => RewardNorm::None,
        TKM_REWARD_NORM_INT => RewardNorm::Int,
        TKM_REWARD_NORM_EXT => RewardNorm::Ext,
        TKM_REWARD_NORM_ALL => RewardNorm::All,
        _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
    };
    let compat = match o.compat {
        TKM_MOMENTS_LIBRARY => MomentsCompat::Library,
        TKM_MOMENTS_E3B => MomentsCompat::E3b { time_steps: o.time_steps },
        _ => return Err(TKM_STATUS_INVALID_ARGUMENT),
    };
    Ok(AssembleCfg {
        norm,
        intrinsic_coef: o.intrinsic_coef,
        clip: flag(o.clip)?,
        use_extrinsic: flag(o.use_extrinsic)?,
        compat,
    })
}

unsafe fn rewards<'a>(
    cfg: &AssembleCfg,
    n: usize,
    r_ext: *const f32,
    r_int: *const f32,
) -> Res<(&'a [f32], &'a [f32])> {
    let e = if cfg.use_extrinsic { input(r_ext, n)? } else { &[] };
    Ok((e, input(r_int, n)?))
}

/// The batch partial `(count, sum, m2)` of the stream `opts->norm` normalises (all zeros
/// under `TKM_REWARD_NORM_NONE`): what each rank contributes to the merge.
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf reward), `_INVALID_ARGUMENT` (a bad option).
///
/// # Safety
/// `r_ext` (unless `use_extrinsic == 0`, then it may be NULL) and `r_int` valid for `n`
/// floats, `out` for writing one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_reward_norm_batch_moments(
    n: usize,
    r_ext: *const f32,
    r_int: *const f32,
    opts: *const tkm_assemble_options,
    out: *mut tkm_running_moments,
) -> tkm_status {
    guard(|| {
        let cfg = assemble_cfg(opts)?;
        let (e, i) = rewards(&cfg, n, r_ext, r_int)?;
        let mut dst = Out::<tkm_running_moments>::new(out, 1)?;
        dst.buf[0] = ex::norm_batch_moments(e, i, &cfg)?.into();
        dst.commit();
        Ok(())
    })
}

/// Assembles `out[i] = r_ext[i] + eta * r_int[i]` with the normalisation and clipping of
/// `opts`. `moments` is the running state: with `update = 1` this batch is folded into it
/// first (single process; `*moments` is updated on success); with `update = 0` it is used
/// as given (multi-rank: it already holds the merged partials of every rank).
///
/// Errors: `TKM_STATUS_NON_FINITE` (a NaN/inf reward), `_INVALID_ARGUMENT` (a bad option or
/// state), `_OVERLAP` (`out` overlaps an input).
///
/// # Safety
/// `r_ext` (unless `use_extrinsic == 0`), `r_int` and `out` valid for `n` floats,
/// `moments` for reading (and, with `update`, writing) one struct.
#[no_mangle]
pub unsafe extern "C" fn tkm_assemble_rewards(
    n: usize,
    r_ext: *const f32,
    r_int: *const f32,
    opts: *const tkm_assemble_options,
    moments: *mut tkm_running_moments,
    update: u32,
    out: *mut f32,
) -> tkm_status {
    guard(|| {
        let cfg = assemble_cfg(opts)?;
        let update = flag(update)?;
        let (e, i) = rewards(&cfg, n, r_ext, r_int)?;
        if overlaps(out, n, r_int, n) || (cfg.use_extrinsic && overlaps(out, n, r_ext, n)) {
            return Err(TKM_STATUS_OVERLAP);
        }
        let m = inout(moments, 1)?;
        let mut rm: RunningMoments = m[0].into();
        let mut dst = Out::new(out, n)?;
        if update {
            ex::assemble_rewards(e, i, &cfg, &mut rm, &mut dst.buf)?;
        } else {
            ex::assemble_rewards_with(e, i, &cfg, &rm, &mut dst.buf)?;
        }
        m[0] = rm.into();
        dst.commit();
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Options;

    /// The options' field tables (what an older caller's `struct_size` may end at).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn option_field_tables() {
        assert_eq!(tkm_e3b_options::FIELD_ENDS, &[8, 12, 16, 20]);
        assert_eq!(tkm_assemble_options::FIELD_ENDS, &[8, 12, 16, 20, 24, 28, 40]);
        // A caller that knows only `norm` and `intrinsic_coef` gets the other defaults.
        let mut o = tkm_assemble_options {
            struct_size: 16,
            norm: TKM_REWARD_NORM_ALL,
            intrinsic_coef: 2.0,
            clip: 7,
            ..Default::default()
        };
        o.use_extrinsic = 7;
        let cfg = unsafe { assemble_cfg(&o) }.unwrap();
        assert_eq!((cfg.norm, cfg.intrinsic_coef, cfg.clip, cfg.use_extrinsic), (RewardNorm::All, 2.0, true, true));
    }
}
