//! The policy losses with their gradients (`tkm_ppo_clip_loss`, `tkm_ppo_clip_kl_loss`,
//! `tkm_ppo_clip_kl_step`, `tkm_gspo_loss`, `tkm_cispo_loss`, `tkm_sapo_loss`,
//! `tkm_kl_loss`, `tkm_tis_weights`), the aggregation (`tkm_agg_loss`, `tkm_agg_weights`,
//! `tkm_agg_chain_inplace`) and the upstreams of the logits backward (`tkm_logp_upstream`,
//! `tkm_entropy_upstream`), on validated `[rows, cols]` CPU arrays. Options arrive from the
//! Python layer as plain tuples of the option structs' fields, in field order.

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tokenmath::*;

use crate::error::{check, error, OrRaise};
use crate::exec::{nogil, Settings};
use crate::tensor::{import, import_opt, Kind, Tensor};

/// `(valid_tokens, clipped_high, clipped_low, clipped_dual, neg_log_ratio_sum)`.
type PolicyStats = (u64, u64, u64, u64, f64);
/// `(valid_tokens, kl_sum)`.
type KlStats = (u64, f64);

fn policy_stats(s: &tkm_policy_stats) -> PolicyStats {
    (s.valid_tokens, s.clipped_high, s.clipped_low, s.clipped_dual, s.neg_log_ratio_sum)
}

fn kl_stats(s: &tkm_kl_stats) -> KlStats {
    (s.valid_tokens, s.kl_sum)
}

/// The `[rows, cols]` token arrays of a loss call, imported and validated.
struct Tokens {
    _keep: Vec<Tensor>,
    logp: *const f32,
    old_logp: *const f32,
    adv: *const f32,
    mask: *const u8,
    is_weights: *const f32,
    loss: *mut f32,
    dloss: *mut f32,
    rows: usize,
    cols: usize,
}

impl Tokens {
    #[allow(clippy::too_many_arguments)]
    fn import(
        py: Python<'_>,
        f: &str,
        logp: &Bound<'_, PyAny>,
        old_logp: &Bound<'_, PyAny>,
        adv: &Bound<'_, PyAny>,
        mask: &Bound<'_, PyAny>,
        is_weights: Option<&Bound<'_, PyAny>>,
        loss: &Bound<'_, PyAny>,
        dloss: &Bound<'_, PyAny>,
    ) -> PyResult<Tokens> {
        let lp = import(logp, "logp", None)?;
        let (lpp, rows, cols) = lp.matrix(Kind::F32).or_raise(py, f)?;
        let m = |t: &Tensor, k: Kind| t.matrix_of(k, rows, cols).or_raise(py, f);
        let (ol, ad, mk) =
            (import(old_logp, "old_logp", None)?, import(adv, "adv", None)?, import(mask, "mask", None)?);
        let isw = import_opt(is_weights, "is_weights", None)?;
        let (lo, dl) = (import(loss, "loss", None)?, import(dloss, "dloss_dlogp", None)?);
        let t = Tokens {
            logp: lpp as *const f32,
            old_logp: m(&ol, Kind::F32)? as *const f32,
            adv: m(&ad, Kind::F32)? as *const f32,
            mask: m(&mk, Kind::Mask)? as *const u8,
            is_weights: match &isw {
                Some(w) => m(w, Kind::F32)? as *const f32,
                None => core::ptr::null(),
            },
            loss: m(&lo, Kind::F32)? as *mut f32,
            dloss: m(&dl, Kind::F32)? as *mut f32,
            rows,
            cols,
            _keep: [Some(lp), Some(ol), Some(ad), Some(mk), isw, Some(lo), Some(dl)].into_iter().flatten().collect(),
        };
        Ok(t)
    }
}

/// The signature `tkm_ppo_clip_loss`, `tkm_gspo_loss`, `tkm_cispo_loss` and `tkm_sapo_loss`
/// share (they differ in the options struct only).
type LossFn<O> = unsafe extern "C" fn(
    *const tkm_exec_options,
    *const f32,
    *const f32,
    *const f32,
    *const u8,
    *const f32,
    usize,
    usize,
    *const O,
    *mut f32,
    *mut f32,
    *mut tkm_policy_stats,
) -> tkm_status;

impl Tokens {
    /// Runs one of the [`LossFn`] losses on these arrays with `opts`.
    fn run<O>(&self, py: Python<'_>, f: &str, threads: u32, loss: LossFn<O>, opts: O) -> PyResult<PolicyStats> {
        let exec = Settings::new(threads, None).options();
        let mut stats = tkm_policy_stats::default();
        let sp = &mut stats as *mut tkm_policy_stats;
        // SAFETY: validated live arrays of `rows * cols` elements; locals for the structs.
        let st = nogil(py, || unsafe {
            loss(
                &exec,
                self.logp,
                self.old_logp,
                self.adv,
                self.mask,
                self.is_weights,
                self.rows,
                self.cols,
                &opts,
                self.loss,
                self.dloss,
                sp,
            )
        });
        check(py, st, f)?;
        Ok(policy_stats(&stats))
    }
}

/// `tkm_agg_norm` from `(global_tokens, global_seqs, dp_size, scale_factor)`.
fn agg_norm(n: (u64, u64, u32, f32)) -> tkm_agg_norm {
    tkm_agg_norm { global_tokens: n.0, global_seqs: n.1, dp_size: n.2, scale_factor: n.3, ..tkm_agg_norm::default() }
}

fn clip_opts(c: (f32, f32, f32, f32)) -> tkm_ppo_clip_options {
    tkm_ppo_clip_options {
        eps_low: c.0,
        eps_high: c.1,
        dual_clip_c: c.2,
        log_ratio_clamp: c.3,
        ..tkm_ppo_clip_options::default()
    }
}

fn kl_opts(kind: u32, verl_clamps: bool) -> tkm_kl_options {
    tkm_kl_options { kind, verl_clamps: verl_clamps as u32, ..tkm_kl_options::default() }
}

#[pyfunction]
#[pyo3(signature = (logp, old_logp, adv, mask, is_weights, clip, loss, dloss_dlogp, threads))]
#[allow(clippy::too_many_arguments)]
fn ppo_clip_loss(
    py: Python<'_>,
    logp: &Bound<'_, PyAny>,
    old_logp: &Bound<'_, PyAny>,
    adv: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    is_weights: Option<&Bound<'_, PyAny>>,
    clip: (f32, f32, f32, f32),
    loss: &Bound<'_, PyAny>,
    dloss_dlogp: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<PolicyStats> {
    const F: &str = "tkm_ppo_clip_loss";
    let t = Tokens::import(py, F, logp, old_logp, adv, mask, is_weights, loss, dloss_dlogp)?;
    t.run(py, F, threads, tkm_ppo_clip_loss, clip_opts(clip))
}

#[pyfunction]
#[pyo3(signature = (logp, old_logp, adv, mask, is_weights, ref_logp, clip, kl_kind, verl_clamps, kl_coef, loss, dloss_dlogp, threads))]
#[allow(clippy::too_many_arguments)]
fn ppo_clip_kl_loss(
    py: Python<'_>,
    logp: &Bound<'_, PyAny>,
    old_logp: &Bound<'_, PyAny>,
    adv: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    is_weights: Option<&Bound<'_, PyAny>>,
    ref_logp: &Bound<'_, PyAny>,
    clip: (f32, f32, f32, f32),
    kl_kind: u32,
    verl_clamps: bool,
    kl_coef: f32,
    loss: &Bound<'_, PyAny>,
    dloss_dlogp: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<(PolicyStats, KlStats)> {
    const F: &str = "tkm_ppo_clip_kl_loss";
    let t = Tokens::import(py, F, logp, old_logp, adv, mask, is_weights, loss, dloss_dlogp)?;
    let r = import(ref_logp, "ref_logp", None)?;
    let rp = r.matrix_of(Kind::F32, t.rows, t.cols).or_raise(py, F)? as *const f32;
    let (exec, opts, kl) = (Settings::new(threads, None).options(), clip_opts(clip), kl_opts(kl_kind, verl_clamps));
    let (mut stats, mut kls) = (tkm_policy_stats::default(), tkm_kl_stats::default());
    let (sp, kp) = (&mut stats as *mut tkm_policy_stats, &mut kls as *mut tkm_kl_stats);
    // SAFETY: as in `ppo_clip_loss`.
    let st = nogil(py, || unsafe {
        tkm_ppo_clip_kl_loss(
            &exec,
            t.logp,
            t.old_logp,
            t.adv,
            t.mask,
            t.is_weights,
            rp,
            t.rows,
            t.cols,
            &opts,
            &kl,
            kl_coef,
            t.loss,
            t.dloss,
            sp,
            kp,
        )
    });
    check(py, st, F)?;
    Ok((policy_stats(&stats), kl_stats(&kls)))
}

#[pyfunction]
#[pyo3(signature = (logp, old_logp, adv, mask, is_weights, ref_logp, clip, kl_kind, verl_clamps, kl_coef, mode, norm, loss, g_logp, threads))]
#[allow(clippy::too_many_arguments)]
fn ppo_clip_kl_step(
    py: Python<'_>,
    logp: &Bound<'_, PyAny>,
    old_logp: &Bound<'_, PyAny>,
    adv: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    is_weights: Option<&Bound<'_, PyAny>>,
    ref_logp: &Bound<'_, PyAny>,
    clip: (f32, f32, f32, f32),
    kl_kind: u32,
    verl_clamps: bool,
    kl_coef: f32,
    mode: u32,
    norm: (u64, u64, u32, f32),
    loss: &Bound<'_, PyAny>,
    g_logp: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<(f32, PolicyStats, KlStats)> {
    const F: &str = "tkm_ppo_clip_kl_step";
    let t = Tokens::import(py, F, logp, old_logp, adv, mask, is_weights, loss, g_logp)?;
    let r = import(ref_logp, "ref_logp", None)?;
    let rp = r.matrix_of(Kind::F32, t.rows, t.cols).or_raise(py, F)? as *const f32;
    let (exec, opts, kl, nm) =
        (Settings::new(threads, None).options(), clip_opts(clip), kl_opts(kl_kind, verl_clamps), agg_norm(norm));
    let (mut stats, mut kls, mut total) = (tkm_policy_stats::default(), tkm_kl_stats::default(), 0f32);
    let (sp, kp, tp) = (&mut stats as *mut tkm_policy_stats, &mut kls as *mut tkm_kl_stats, &mut total as *mut f32);
    // SAFETY: as in `ppo_clip_loss`.
    let st = nogil(py, || unsafe {
        tkm_ppo_clip_kl_step(
            &exec,
            t.logp,
            t.old_logp,
            t.adv,
            t.mask,
            t.is_weights,
            rp,
            t.rows,
            t.cols,
            &opts,
            &kl,
            kl_coef,
            mode,
            &nm,
            t.loss,
            t.dloss,
            tp,
            sp,
            kp,
        )
    });
    check(py, st, F)?;
    Ok((total, policy_stats(&stats), kl_stats(&kls)))
}

/// GSPO, CISPO, SAPO: the same arrays, a three-float options struct.
#[pyfunction]
#[pyo3(signature = (which, logp, old_logp, adv, mask, is_weights, opts, loss, dloss_dlogp, threads))]
#[allow(clippy::too_many_arguments)]
fn seq_loss(
    py: Python<'_>,
    which: &str,
    logp: &Bound<'_, PyAny>,
    old_logp: &Bound<'_, PyAny>,
    adv: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    is_weights: Option<&Bound<'_, PyAny>>,
    opts: (f32, f32, f32),
    loss: &Bound<'_, PyAny>,
    dloss_dlogp: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<PolicyStats> {
    let f = match which {
        "gspo" => "tkm_gspo_loss",
        "cispo" => "tkm_cispo_loss",
        "sapo" => "tkm_sapo_loss",
        _ => return Err(pyo3::exceptions::PyValueError::new_err(format!("unknown loss {which:?}"))),
    };
    let t = Tokens::import(py, f, logp, old_logp, adv, mask, is_weights, loss, dloss_dlogp)?;
    let (a, b, c) = opts;
    match which {
        "gspo" => {
            let o = tkm_gspo_options { eps_low: a, eps_high: b, seq_log_ratio_cap: c, ..tkm_gspo_options::default() };
            t.run(py, f, threads, tkm_gspo_loss, o)
        }
        "cispo" => {
            let o = tkm_cispo_options { w_min: a, w_max: b, log_ratio_clamp: c, ..tkm_cispo_options::default() };
            t.run(py, f, threads, tkm_cispo_loss, o)
        }
        _ => {
            let o = tkm_sapo_options { tau_pos: a, tau_neg: b, log_ratio_clamp: c, ..tkm_sapo_options::default() };
            t.run(py, f, threads, tkm_sapo_loss, o)
        }
    }
}

#[pyfunction]
#[pyo3(signature = (logp, ref_logp, mask, kind, verl_clamps, loss, dloss_dlogp, threads))]
#[allow(clippy::too_many_arguments)]
fn kl_loss(
    py: Python<'_>,
    logp: &Bound<'_, PyAny>,
    ref_logp: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    kind: u32,
    verl_clamps: bool,
    loss: &Bound<'_, PyAny>,
    dloss_dlogp: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<KlStats> {
    const F: &str = "tkm_kl_loss";
    let lp = import(logp, "logp", None)?;
    let (lpp, rows, cols) = lp.matrix(Kind::F32).or_raise(py, F)?;
    let m = |t: &Tensor, k: Kind| t.matrix_of(k, rows, cols).or_raise(py, F);
    let (r, mk) = (import(ref_logp, "ref_logp", None)?, import(mask, "mask", None)?);
    let (lo, dl) = (import(loss, "loss", None)?, import(dloss_dlogp, "dloss_dlogp", None)?);
    let (rp, mp, lop, dlp) = (
        m(&r, Kind::F32)? as *const f32,
        m(&mk, Kind::Mask)? as *const u8,
        m(&lo, Kind::F32)? as *mut f32,
        m(&dl, Kind::F32)? as *mut f32,
    );
    let (exec, opts, mut stats) =
        (Settings::new(threads, None).options(), kl_opts(kind, verl_clamps), tkm_kl_stats::default());
    let sp = &mut stats as *mut tkm_kl_stats;
    // SAFETY: as in `ppo_clip_loss`.
    let st = nogil(py, || unsafe { tkm_kl_loss(&exec, lpp as *const f32, rp, mp, rows, cols, &opts, lop, dlp, sp) });
    check(py, st, F)?;
    Ok(kl_stats(&stats))
}

#[pyfunction]
#[pyo3(signature = (old_logp, rollout_logp, mask, level, cap, out, threads))]
#[allow(clippy::too_many_arguments)]
fn tis_weights(
    py: Python<'_>,
    old_logp: &Bound<'_, PyAny>,
    rollout_logp: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    level: u32,
    cap: f32,
    out: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<()> {
    const F: &str = "tkm_tis_weights";
    let ol = import(old_logp, "old_logp", None)?;
    let (olp, rows, cols) = ol.matrix(Kind::F32).or_raise(py, F)?;
    let m = |t: &Tensor, k: Kind| t.matrix_of(k, rows, cols).or_raise(py, F);
    let (r, mk, o) =
        (import(rollout_logp, "rollout_logp", None)?, import(mask, "mask", None)?, import(out, "out", None)?);
    let (rp, mp, op) =
        (m(&r, Kind::F32)? as *const f32, m(&mk, Kind::Mask)? as *const u8, m(&o, Kind::F32)? as *mut f32);
    let exec = Settings::new(threads, None).options();
    // SAFETY: as in `ppo_clip_loss`.
    let st = nogil(py, || unsafe { tkm_tis_weights(&exec, olp as *const f32, rp, mp, rows, cols, level, cap, op) });
    check(py, st, F)
}

#[pyfunction]
#[pyo3(signature = (loss, mask, mode, norm, threads))]
fn agg_loss(
    py: Python<'_>,
    loss: &Bound<'_, PyAny>,
    mask: &Bound<'_, PyAny>,
    mode: u32,
    norm: (u64, u64, u32, f32),
    threads: u32,
) -> PyResult<f32> {
    const F: &str = "tkm_agg_loss";
    let (l, mk) = (import(loss, "loss", None)?, import(mask, "mask", None)?);
    let (lp, rows, cols) = l.matrix(Kind::F32).or_raise(py, F)?;
    let mp = mk.matrix_of(Kind::Mask, rows, cols).or_raise(py, F)?;
    let (exec, nm, mut out) = (Settings::new(threads, None).options(), agg_norm(norm), 0f32);
    // SAFETY: as in `ppo_clip_loss`.
    let st = unsafe { tkm_agg_loss(&exec, lp as *const f32, mp as *const u8, rows, cols, mode, &nm, &mut out) };
    check(py, st, F)?;
    Ok(out)
}

/// `tkm_agg_weights` into `out` (`inplace = false`) or `tkm_agg_chain_inplace` over `out`.
#[pyfunction]
#[pyo3(signature = (mask, mode, norm, out, inplace, threads))]
fn agg_weights(
    py: Python<'_>,
    mask: &Bound<'_, PyAny>,
    mode: u32,
    norm: (u64, u64, u32, f32),
    out: &Bound<'_, PyAny>,
    inplace: bool,
    threads: u32,
) -> PyResult<()> {
    let f = if inplace { "tkm_agg_chain_inplace" } else { "tkm_agg_weights" };
    let (mk, o) = (import(mask, "mask", None)?, import(out, if inplace { "d" } else { "out" }, None)?);
    let (mp, rows, cols) = mk.matrix(Kind::Mask).or_raise(py, f)?;
    let op = o.matrix_of(Kind::F32, rows, cols).or_raise(py, f)? as *mut f32;
    if inplace {
        o.writable().or_raise(py, f)?;
    }
    let (exec, nm) = (Settings::new(threads, None).options(), agg_norm(norm));
    // SAFETY: as in `ppo_clip_loss`.
    let st = unsafe {
        if inplace {
            tkm_agg_chain_inplace(&exec, mp as *const u8, rows, cols, mode, &nm, op)
        } else {
            tkm_agg_weights(&exec, mp as *const u8, rows, cols, mode, &nm, op)
        }
    };
    check(py, st, f)
}

#[pyfunction]
#[pyo3(signature = (w, coefs, terms, out, threads))]
fn logp_upstream(
    py: Python<'_>,
    w: &Bound<'_, PyAny>,
    coefs: Vec<f32>,
    terms: &Bound<'_, PyTuple>,
    out: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<()> {
    const F: &str = "tkm_logp_upstream";
    let (wt, o) = (import(w, "w", None)?, import(out, "out", None)?);
    let wc = wt.cpu(Kind::F32, None).or_raise(py, F)?;
    let n = wc.numel();
    let same = |t: &Tensor| -> PyResult<*mut core::ffi::c_void> {
        let c = t.cpu(Kind::F32, None).or_raise(py, F)?;
        if c.shape != wc.shape {
            let d = format!("`{}` has shape {:?}; `w` has {:?}", t.name, c.shape, wc.shape);
            return Err(error(py, tkm_status::TKM_STATUS_LENGTH_MISMATCH, F, Some(d)));
        }
        Ok(c.ptr)
    };
    let op = same(&o)? as *mut f32;
    let mut kept = Vec::with_capacity(terms.len());
    let mut ptrs: Vec<*const f32> = Vec::with_capacity(terms.len());
    for term in terms.iter() {
        let t = import(&term, "terms[k]", None)?;
        ptrs.push(same(&t)? as *const f32);
        kept.push(t);
    }
    if coefs.len() != ptrs.len() {
        let d = format!("{} coefficients for {} terms", coefs.len(), ptrs.len());
        return Err(error(py, tkm_status::TKM_STATUS_LENGTH_MISMATCH, F, Some(d)));
    }
    let exec = Settings::new(threads, None).options();
    // SAFETY: every pointer is a validated live array of `n` floats.
    let st =
        unsafe { tkm_logp_upstream(&exec, wc.ptr as *const f32, n, coefs.as_ptr(), ptrs.as_ptr(), ptrs.len(), op) };
    check(py, st, F)
}

#[pyfunction]
#[pyo3(signature = (w, coef, out, threads))]
fn entropy_upstream(
    py: Python<'_>,
    w: &Bound<'_, PyAny>,
    coef: f32,
    out: &Bound<'_, PyAny>,
    threads: u32,
) -> PyResult<()> {
    const F: &str = "tkm_entropy_upstream";
    let (wt, o) = (import(w, "w", None)?, import(out, "out", None)?);
    let wc = wt.cpu(Kind::F32, None).or_raise(py, F)?;
    let oc = o.cpu(Kind::F32, None).or_raise(py, F)?;
    if oc.shape != wc.shape {
        let d = format!("`out` has shape {:?}; `w` has {:?}", oc.shape, wc.shape);
        return Err(error(py, tkm_status::TKM_STATUS_LENGTH_MISMATCH, F, Some(d)));
    }
    let exec = Settings::new(threads, None).options();
    // SAFETY: validated live arrays of `numel` floats.
    let st = unsafe { tkm_entropy_upstream(&exec, wc.ptr as *const f32, wc.numel(), coef, oc.ptr as *mut f32) };
    check(py, st, F)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ppo_clip_loss, m)?)?;
    m.add_function(wrap_pyfunction!(ppo_clip_kl_loss, m)?)?;
    m.add_function(wrap_pyfunction!(ppo_clip_kl_step, m)?)?;
    m.add_function(wrap_pyfunction!(seq_loss, m)?)?;
    m.add_function(wrap_pyfunction!(kl_loss, m)?)?;
    m.add_function(wrap_pyfunction!(tis_weights, m)?)?;
    m.add_function(wrap_pyfunction!(agg_loss, m)?)?;
    m.add_function(wrap_pyfunction!(agg_weights, m)?)?;
    m.add_function(wrap_pyfunction!(logp_upstream, m)?)?;
    m.add_function(wrap_pyfunction!(entropy_upstream, m)?)?;
    for (name, v) in [
        ("AGG_TOKEN_MEAN", TKM_AGG_TOKEN_MEAN),
        ("AGG_SEQ_MEAN_TOKEN_SUM", TKM_AGG_SEQ_MEAN_TOKEN_SUM),
        ("AGG_SEQ_MEAN_TOKEN_MEAN", TKM_AGG_SEQ_MEAN_TOKEN_MEAN),
        ("AGG_SEQ_MEAN_TOKEN_SUM_NORM", TKM_AGG_SEQ_MEAN_TOKEN_SUM_NORM),
        ("KL_K1", TKM_KL_K1),
        ("KL_ABS", TKM_KL_ABS),
        ("KL_K2", TKM_KL_K2),
        ("KL_K3", TKM_KL_K3),
        ("KL_K1_PLUS", TKM_KL_K1_PLUS),
        ("KL_K3_PLUS", TKM_KL_K3_PLUS),
        ("TIS_TOKEN", TKM_TIS_TOKEN),
        ("TIS_SEQUENCE", TKM_TIS_SEQUENCE),
    ] {
        m.add(name, v)?;
    }
    // The option structs' defaults, from the C ABI (the Python signatures use them).
    let c = tkm_ppo_clip_options::default();
    m.add("PPO_CLIP_DEFAULTS", (c.eps_low, c.eps_high, c.dual_clip_c, c.log_ratio_clamp))?;
    let g = tkm_gspo_options::default();
    m.add("GSPO_DEFAULTS", (g.eps_low, g.eps_high, g.seq_log_ratio_cap))?;
    let c = tkm_cispo_options::default();
    m.add("CISPO_DEFAULTS", (c.w_min, c.w_max, c.log_ratio_clamp))?;
    let s = tkm_sapo_options::default();
    m.add("SAPO_DEFAULTS", (s.tau_pos, s.tau_neg, s.log_ratio_clamp))?;
    Ok(())
}
