//! The advantage estimators (`tkm_grpo_advantage`, `tkm_dr_grpo_advantage`,
//! `tkm_rloo_advantage`, `tkm_broadcast_masked`, `tkm_returns_to_go`,
//! `tkm_reinforce_pp_advantage`, `tkm_reinforce_pp_baseline_advantage`, `tkm_gae`,
//! `tkm_masked_whiten`, `tkm_overlong_penalty`, `tkm_overlong_shaped_token_rewards`,
//! `tkm_dynamic_sampling_keep`) on validated CPU arrays (`tensor::Tensor::cpu`). Outputs are
//! the caller-allocated tensors `out` / `adv` / `ret` / `keep`; the C ABI writes them only on
//! success. Grouping (rule 13 of `tokenmath.h`) is passed through unchanged: `group_ids`
//! (`uint32[n]`) or `group_size > 0`, exactly one.

use core::ffi::c_void;

use pyo3::prelude::*;
use tokenmath::*;

use crate::error::{check, OrRaise};
use crate::tensor::{import, import_opt, Kind, Tensor};

/// The group labels as a `const uint32_t*` (NULL = absent) for `n` responses.
fn group_ptr(py: Python<'_>, g: &Option<Tensor>, n: usize, f: &str) -> PyResult<*const u32> {
    Ok(match g {
        Some(g) => g.vector_of(Kind::U32, n).or_raise(py, f)? as *const u32,
        None => core::ptr::null(),
    })
}

/// An optional `[rows, t]` float32 output (NULL = not wanted).
fn out_matrix(py: Python<'_>, o: &Option<Tensor>, rows: usize, t: usize, f: &str) -> PyResult<*mut f32> {
    Ok(match o {
        Some(o) => o.matrix_of(Kind::F32, rows, t).or_raise(py, f)? as *mut f32,
        None => core::ptr::null_mut(),
    })
}

#[pyfunction]
#[pyo3(signature = (rewards, group_ids, group_size, flavor, std_kind, singleton, trl_scale, norm_by_std, nan_policy, eps, out))]
#[allow(clippy::too_many_arguments)]
fn grpo_advantage(
    py: Python<'_>,
    rewards: &Bound<'_, PyAny>,
    group_ids: Option<&Bound<'_, PyAny>>,
    group_size: usize,
    flavor: u32,
    std_kind: u32,
    singleton: u32,
    trl_scale: u32,
    norm_by_std: bool,
    nan_policy: u32,
    eps: f32,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    const F: &str = "tkm_grpo_advantage";
    let (r, g, o) =
        (import(rewards, "rewards", None)?, import_opt(group_ids, "group_ids", None)?, import(out, "out", None)?);
    let (rp, n) = r.vector(Kind::F32).or_raise(py, F)?;
    let gp = group_ptr(py, &g, n, F)?;
    let op = o.vector_of(Kind::F32, n).or_raise(py, F)?;
    let opts = tkm_grpo_options {
        flavor,
        std_kind,
        singleton,
        trl_scale,
        norm_by_std: norm_by_std as u32,
        nan_policy,
        eps,
        ..tkm_grpo_options::default()
    };
    // SAFETY: the pointers come from validated, live tensors of the stated lengths.
    let st = unsafe { tkm_grpo_advantage(rp as *const f32, n, gp, group_size, &opts, op as *mut f32) };
    check(py, st, F)
}

#[pyfunction]
fn dr_grpo_advantage(
    py: Python<'_>,
    rewards: &Bound<'_, PyAny>,
    group_ids: Option<&Bound<'_, PyAny>>,
    group_size: usize,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    const F: &str = "tkm_dr_grpo_advantage";
    let (r, g, o) =
        (import(rewards, "rewards", None)?, import_opt(group_ids, "group_ids", None)?, import(out, "out", None)?);
    let (rp, n) = r.vector(Kind::F32).or_raise(py, F)?;
    let gp = group_ptr(py, &g, n, F)?;
    let op = o.vector_of(Kind::F32, n).or_raise(py, F)?;
    // SAFETY: as in `grpo_advantage`.
    let st = unsafe { tkm_dr_grpo_advantage(rp as *const f32, n, gp, group_size, op as *mut f32) };
    check(py, st, F)
}

#[pyfunction]
fn rloo_advantage(
    py: Python<'_>,
    rewards: &Bound<'_, PyAny>,
    group_ids: Option<&Bound<'_, PyAny>>,
    group_size: usize,
    flavor: u32,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    const F: &str = "tkm_rloo_advantage";
    let (r, g, o) =
        (import(rewards, "rewards", None)?, import_opt(group_ids, "group_ids", None)?, import(out, "out", None)?);
    let (rp, n) = r.vector(Kind::F32).or_raise(py, F)?;
    let gp = group_ptr(py, &g, n, F)?;
    let op = o.vector_of(Kind::F32, n).or_raise(py, F)?;
    // SAFETY: as in `grpo_advantage`.
    let st = unsafe { tkm_rloo_advantage(rp as *const f32, n, gp, group_size, flavor, op as *mut f32) };
    check(py, st, F)
}

#[pyfunction]
fn broadcast_masked(
    py: Python<'_>,
    a_seq: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    const F: &str = "tkm_broadcast_masked";
    let (a, m, o) = (import(a_seq, "a_seq", None)?, import(mask, "mask", None)?, import(out, "out", None)?);
    let (mp, rows, t) = m.matrix(Kind::Mask).or_raise(py, F)?;
    let ap = a.vector_of(Kind::F32, rows).or_raise(py, F)?;
    let op = o.matrix_of(Kind::F32, rows, t).or_raise(py, F)?;
    // SAFETY: as in `grpo_advantage`.
    let st = unsafe { tkm_broadcast_masked(ap as *const f32, rows, mp as *const u8, t, op as *mut f32) };
    check(py, st, F)
}

/// `[rows, t]` token rewards and mask: `(r, mask, rows, t)`.
fn token_inputs(py: Python<'_>, r: &Tensor, m: &Tensor, f: &str) -> PyResult<(*const f32, *const u8, usize, usize)> {
    let (rp, rows, t) = r.matrix(Kind::F32).or_raise(py, f)?;
    let mp = m.matrix_of(Kind::Mask, rows, t).or_raise(py, f)?;
    Ok((rp as *const f32, mp as *const u8, rows, t))
}

#[pyfunction]
fn returns_to_go(
    py: Python<'_>,
    r: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    gamma: f32,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    const F: &str = "tkm_returns_to_go";
    let (r, m, o) = (import(r, "r", None)?, import(mask, "mask", None)?, import(out, "out", None)?);
    let (rp, mp, rows, t) = token_inputs(py, &r, &m, F)?;
    let op = o.matrix_of(Kind::F32, rows, t).or_raise(py, F)?;
    // SAFETY: as in `grpo_advantage`.
    let st = unsafe { tkm_returns_to_go(rp, mp, rows, t, gamma, op as *mut f32) };
    check(py, st, F)
}

#[pyfunction]
#[pyo3(signature = (r, mask, gamma, compat, adv, ret))]
fn reinforce_pp_advantage(
    py: Python<'_>,
    r: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    gamma: f32,
    compat: u32,
    adv: &Bound<'_, PyAny>,
    ret: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    const F: &str = "tkm_reinforce_pp_advantage";
    let (r, m) = (import(r, "r", None)?, import(mask, "mask", None)?);
    let (a, g) = (import(adv, "adv", None)?, import_opt(ret, "ret", None)?);
    let (rp, mp, rows, t) = token_inputs(py, &r, &m, F)?;
    let ap = a.matrix_of(Kind::F32, rows, t).or_raise(py, F)?;
    let gp = out_matrix(py, &g, rows, t, F)?;
    // SAFETY: as in `grpo_advantage`.
    let st = unsafe { tkm_reinforce_pp_advantage(rp, mp, rows, t, gamma, compat, ap as *mut f32, gp) };
    check(py, st, F)
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn reinforce_pp_baseline_advantage(
    py: Python<'_>,
    rewards: &Bound<'_, PyAny>,
    group_ids: Option<&Bound<'_, PyAny>>,
    group_size: usize,
    mask: &Bound<'_, PyAny>,
    singleton: u32,
    compat: u32,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    const F: &str = "tkm_reinforce_pp_baseline_advantage";
    let (r, g) = (import(rewards, "rewards", None)?, import_opt(group_ids, "group_ids", None)?);
    let (m, o) = (import(mask, "mask", None)?, import(out, "out", None)?);
    let (mp, rows, t) = m.matrix(Kind::Mask).or_raise(py, F)?;
    let rp = r.vector_of(Kind::F32, rows).or_raise(py, F)?;
    let gp = group_ptr(py, &g, rows, F)?;
    let op = o.matrix_of(Kind::F32, rows, t).or_raise(py, F)?;
    // SAFETY: as in `grpo_advantage`.
    let st = unsafe {
        tkm_reinforce_pp_baseline_advantage(
            rp as *const f32,
            rows,
            gp,
            group_size,
            mp as *const u8,
            t,
            singleton,
            compat,
            op as *mut f32,
        )
    };
    check(py, st, F)
}

#[pyfunction]
#[pyo3(signature = (r, values, mask, gamma, lam, compat, adv, ret))]
#[allow(clippy::too_many_arguments)]
fn gae(
    py: Python<'_>,
    r: &Bound<'_, PyAny>,
    values: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    gamma: f32,
    lam: f32,
    compat: u32,
    adv: &Bound<'_, PyAny>,
    ret: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    const F: &str = "tkm_gae";
    let (r, v, m) = (import(r, "r", None)?, import(values, "values", None)?, import(mask, "mask", None)?);
    let (a, g) = (import(adv, "adv", None)?, import_opt(ret, "ret", None)?);
    let (rp, mp, rows, t) = token_inputs(py, &r, &m, F)?;
    let vp = v.matrix_of(Kind::F32, rows, t).or_raise(py, F)?;
    let ap = a.matrix_of(Kind::F32, rows, t).or_raise(py, F)?;
    let gp = out_matrix(py, &g, rows, t, F)?;
    // SAFETY: as in `grpo_advantage`.
    let st = unsafe { tkm_gae(rp, vp as *const f32, mp, rows, t, gamma, lam, compat, ap as *mut f32, gp) };
    check(py, st, F)
}

#[pyfunction]
fn masked_whiten(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    eps: f32,
    compat: u32,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    const F: &str = "tkm_masked_whiten";
    let (x, m, o) = (import(x, "x", None)?, import(mask, "mask", None)?, import(out, "out", None)?);
    // Any shape: the values are whitened as one flat array.
    let xc = x.cpu(Kind::F32, None).or_raise(py, F)?;
    let mc = m.cpu(Kind::Mask, Some(xc.shape.len())).or_raise(py, F)?;
    let oc = o.cpu(Kind::F32, Some(xc.shape.len())).or_raise(py, F)?;
    if mc.shape != xc.shape || oc.shape != xc.shape {
        return Err(crate::error::error(
            py,
            tkm_status::TKM_STATUS_LENGTH_MISMATCH,
            F,
            Some(format!("`mask` {:?} and `x` {:?} differ in shape", mc.shape, xc.shape)),
        ));
    }
    // SAFETY: as in `grpo_advantage`.
    let st = unsafe {
        tkm_masked_whiten(xc.ptr as *const f32, mc.ptr as *const u8, xc.numel(), eps, compat, oc.ptr as *mut f32)
    };
    check(py, st, F)
}

fn overlong_opts(max_len: usize, buffer_len: usize, penalty_factor: f32) -> tkm_overlong_options {
    tkm_overlong_options { max_len, buffer_len, penalty_factor, ..tkm_overlong_options::default() }
}

#[pyfunction]
fn overlong_penalty(
    py: Python<'_>,
    length: usize,
    max_len: usize,
    buffer_len: usize,
    penalty_factor: f32,
) -> PyResult<f32> {
    const F: &str = "tkm_overlong_penalty";
    let opts = overlong_opts(max_len, buffer_len, penalty_factor);
    let mut out = 0f32;
    // SAFETY: `opts` and `out` are locals.
    let st = unsafe { tkm_overlong_penalty(length, &opts, &mut out) };
    check(py, st, F)?;
    Ok(out)
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn overlong_shaped_token_rewards(
    py: Python<'_>,
    scores: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    max_len: usize,
    buffer_len: usize,
    penalty_factor: f32,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    const F: &str = "tkm_overlong_shaped_token_rewards";
    let (s, m, o) = (import(scores, "scores", None)?, import(mask, "mask", None)?, import(out, "out", None)?);
    let (mp, rows, t) = m.matrix(Kind::Mask).or_raise(py, F)?;
    let sp = s.vector_of(Kind::F32, rows).or_raise(py, F)?;
    let op = o.matrix_of(Kind::F32, rows, t).or_raise(py, F)?;
    let opts = overlong_opts(max_len, buffer_len, penalty_factor);
    // SAFETY: as in `grpo_advantage`.
    let st =
        unsafe { tkm_overlong_shaped_token_rewards(sp as *const f32, rows, mp as *const u8, t, &opts, op as *mut f32) };
    check(py, st, F)
}

#[pyfunction]
fn dynamic_sampling_keep(
    py: Python<'_>,
    metric: &Bound<'_, PyAny>,
    group_ids: Option<&Bound<'_, PyAny>>,
    group_size: usize,
    keep: &Bound<'_, PyAny>,
) -> PyResult<usize> {
    const F: &str = "tkm_dynamic_sampling_keep";
    let (x, g, k) =
        (import(metric, "metric", None)?, import_opt(group_ids, "group_ids", None)?, import(keep, "keep", None)?);
    let (xp, n) = x.vector(Kind::F32).or_raise(py, F)?;
    let gp = group_ptr(py, &g, n, F)?;
    let kp: *mut c_void = k.vector_of(Kind::Mask, n).or_raise(py, F)?;
    let mut kept = 0usize;
    // SAFETY: as in `grpo_advantage`.
    let st = unsafe { tkm_dynamic_sampling_keep(xp as *const f32, n, gp, group_size, kp as *mut u8, &mut kept) };
    check(py, st, F)?;
    Ok(kept)
}

/// A moments table `[capacity, 3]` float64 (`tkm_moments`: `n`, `mean`, `m2`).
fn moments_table(py: Python<'_>, t: &Tensor, f: &str) -> PyResult<(*mut tkm_moments, usize)> {
    let (p, k, three) = t.matrix(Kind::F64).or_raise(py, f)?;
    if three != 3 {
        let detail = format!("`{}` has {three} columns; expected 3 (n, mean, m2)", t.name);
        return Err(crate::error::error(py, tkm_status::TKM_STATUS_LENGTH_MISMATCH, f, Some(detail)));
    }
    Ok((p as *mut tkm_moments, k))
}

/// `tkm_group_moments` into `ids_out` (`[cap]` uint32) and `moments_out` (`[cap, 3]`
/// float64); returns the number of groups `K`.
#[pyfunction]
#[pyo3(signature = (x, group_ids, group_size, weight, ids_out, moments_out))]
fn group_moments(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    group_ids: Option<&Bound<'_, PyAny>>,
    group_size: usize,
    weight: Option<&Bound<'_, PyAny>>,
    ids_out: &Bound<'_, PyAny>,
    moments_out: &Bound<'_, PyAny>,
) -> PyResult<usize> {
    const F: &str = "tkm_group_moments";
    let (x, g, w) =
        (import(x, "x", None)?, import_opt(group_ids, "group_ids", None)?, import_opt(weight, "weight", None)?);
    let (io, mo) = (import(ids_out, "ids_out", None)?, import(moments_out, "moments_out", None)?);
    let (xp, n) = x.vector(Kind::F32).or_raise(py, F)?;
    let gp = group_ptr(py, &g, n, F)?;
    let wp = match &w {
        Some(w) => w.vector_of(Kind::F32, n).or_raise(py, F)? as *const f32,
        None => core::ptr::null(),
    };
    let (mp, cap) = moments_table(py, &mo, F)?;
    let ip = io.vector_of(Kind::U32, cap).or_raise(py, F)?;
    let mut k = 0usize;
    // SAFETY: as in `grpo_advantage`; the outputs hold `cap` entries.
    let st = unsafe { tkm_group_moments(xp as *const f32, n, gp, group_size, wp, ip as *mut u32, mp, cap, &mut k) };
    check(py, st, F)?;
    Ok(k)
}

/// `tkm_group_moments_merge` of the concatenated tables `ids` (`[e]` uint32) and `moments`
/// (`[e, 3]` float64) into `ids_out` / `moments_out` (`[cap]`, `[cap, 3]`); returns `K`.
#[pyfunction]
fn group_moments_merge(
    py: Python<'_>,
    ids: &Bound<'_, PyAny>,
    moments: &Bound<'_, PyAny>,
    ids_out: &Bound<'_, PyAny>,
    moments_out: &Bound<'_, PyAny>,
) -> PyResult<usize> {
    const F: &str = "tkm_group_moments_merge";
    let (i, m) = (import(ids, "ids", None)?, import(moments, "moments", None)?);
    let (io, mo) = (import(ids_out, "ids_out", None)?, import(moments_out, "moments_out", None)?);
    let (mp, e) = moments_table(py, &m, F)?;
    let ip = i.vector_of(Kind::U32, e).or_raise(py, F)?;
    let (mop, cap) = moments_table(py, &mo, F)?;
    let iop = io.vector_of(Kind::U32, cap).or_raise(py, F)?;
    let mut k = 0usize;
    // SAFETY: as in `group_moments`.
    let st = unsafe {
        tkm_group_moments_merge(ip as *const u32, mp as *const tkm_moments, e, iop as *mut u32, mop, cap, &mut k)
    };
    check(py, st, F)?;
    Ok(k)
}

/// `tkm_grpo_advantage_from_moments`: GRPO of `rewards` (`[n]`, labels `group_ids`) from
/// the table `table_ids` / `table`.
#[pyfunction]
#[pyo3(signature = (rewards, group_ids, table_ids, table, flavor, std_kind, singleton, norm_by_std, eps, out))]
#[allow(clippy::too_many_arguments)]
fn grpo_advantage_from_moments(
    py: Python<'_>,
    rewards: &Bound<'_, PyAny>,
    group_ids: &Bound<'_, PyAny>,
    table_ids: &Bound<'_, PyAny>,
    table: &Bound<'_, PyAny>,
    flavor: u32,
    std_kind: u32,
    singleton: u32,
    norm_by_std: bool,
    eps: f32,
    out: &Bound<'_, PyAny>,
) -> PyResult<()> {
    const F: &str = "tkm_grpo_advantage_from_moments";
    let (r, g, o) =
        (import(rewards, "rewards", None)?, import(group_ids, "group_ids", None)?, import(out, "out", None)?);
    let (ti, t) = (import(table_ids, "table_ids", None)?, import(table, "table", None)?);
    let (rp, n) = r.vector(Kind::F32).or_raise(py, F)?;
    let gp = g.vector_of(Kind::U32, n).or_raise(py, F)?;
    let (tp, k) = moments_table(py, &t, F)?;
    let tip = ti.vector_of(Kind::U32, k).or_raise(py, F)?;
    let op = o.vector_of(Kind::F32, n).or_raise(py, F)?;
    let opts = tkm_grpo_options {
        flavor,
        std_kind,
        singleton,
        norm_by_std: norm_by_std as u32,
        eps,
        ..tkm_grpo_options::default()
    };
    // SAFETY: as in `grpo_advantage`.
    let st = unsafe {
        tkm_grpo_advantage_from_moments(
            rp as *const f32,
            n,
            gp as *const u32,
            tip as *const u32,
            tp as *const tkm_moments,
            k,
            &opts,
            op as *mut f32,
        )
    };
    check(py, st, F)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(grpo_advantage, m)?)?;
    m.add_function(wrap_pyfunction!(dr_grpo_advantage, m)?)?;
    m.add_function(wrap_pyfunction!(rloo_advantage, m)?)?;
    m.add_function(wrap_pyfunction!(broadcast_masked, m)?)?;
    m.add_function(wrap_pyfunction!(returns_to_go, m)?)?;
    m.add_function(wrap_pyfunction!(reinforce_pp_advantage, m)?)?;
    m.add_function(wrap_pyfunction!(reinforce_pp_baseline_advantage, m)?)?;
    m.add_function(wrap_pyfunction!(gae, m)?)?;
    m.add_function(wrap_pyfunction!(masked_whiten, m)?)?;
    m.add_function(wrap_pyfunction!(overlong_penalty, m)?)?;
    m.add_function(wrap_pyfunction!(overlong_shaped_token_rewards, m)?)?;
    m.add_function(wrap_pyfunction!(dynamic_sampling_keep, m)?)?;
    m.add_function(wrap_pyfunction!(group_moments, m)?)?;
    m.add_function(wrap_pyfunction!(group_moments_merge, m)?)?;
    m.add_function(wrap_pyfunction!(grpo_advantage_from_moments, m)?)?;
    for (name, v) in [
        ("GRPO_STANDARD", TKM_GRPO_STANDARD),
        ("GRPO_VERL_LOOP", TKM_GRPO_VERL_LOOP),
        ("GRPO_VERL_VECTORIZED", TKM_GRPO_VERL_VECTORIZED),
        ("GRPO_TRL", TKM_GRPO_TRL),
        ("STD_UNBIASED", TKM_STD_UNBIASED),
        ("STD_POPULATION", TKM_STD_POPULATION),
        ("SINGLETON_ZERO", TKM_SINGLETON_ZERO),
        ("SINGLETON_MEAN_ZERO_STD_ONE", TKM_SINGLETON_MEAN_ZERO_STD_ONE),
        ("TRL_SCALE_GROUP", TKM_TRL_SCALE_GROUP),
        ("TRL_SCALE_BATCH", TKM_TRL_SCALE_BATCH),
        ("TRL_SCALE_NONE", TKM_TRL_SCALE_NONE),
        ("NAN_ERROR", TKM_NAN_ERROR),
        ("NAN_IGNORE_AND_ZERO", TKM_NAN_IGNORE_AND_ZERO),
        ("RLOO_STANDARD", TKM_RLOO_STANDARD),
        ("RLOO_VERL_LOOP", TKM_RLOO_VERL_LOOP),
        ("RLOO_VERL_VECTORIZED", TKM_RLOO_VERL_VECTORIZED),
        ("RLOO_TRL", TKM_RLOO_TRL),
        ("RLOO_TRL_NORMALIZED", TKM_RLOO_TRL_NORMALIZED),
        ("COMPAT_LIBRARY", TKM_COMPAT_LIBRARY),
        ("COMPAT_VERL", TKM_COMPAT_VERL),
    ] {
        m.add(name, v)?;
    }
    let d = tkm_overlong_options::default();
    m.add("OVERLONG_DEFAULTS", (d.max_len, d.buffer_len, d.penalty_factor))?;
    Ok(())
}
