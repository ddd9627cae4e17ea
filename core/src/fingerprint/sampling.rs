//! Audit sampling and detection-probability math.
//!
//! `m` committed leaves, `F` of them forged (`f = F/m`), `s` opened uniformly without
//! replacement, each opened forged leaf caught with probability `q` (`q = 1` for a hash or
//! exact-recomputation check, `q < 1` for semantic checks):
//!
//! ```text
//! P_detect = 1 − Σ_x Hyp(x; m, F, s)·(1 − q)^x
//! q = 1:     1 − C(m − F, s)/C(m, s) = 1 − Π_{i<s} (m − F − i)/(m − i)
//! bound:     P_detect ≥ 1 − (1 − q·f)^s
//! samples for confidence 1 − δ:  s ≥ ln δ / ln(1 − q·f)
//! ```
//!
//! Count inflation from `n₀` genuine to `n` billed tokens is `f = 1 − n₀/n`. Under the CoIn
//! padding flaw the duplicated leaves have `q = 0` for hash checks.
//!
//! Audit indices ([`audit_indices`]) come from a BLAKE3 XOF keyed by the signed head and a
//! fresh auditor nonce sent *after* the head is received \[library choice\]; a purely
//! non-interactive derivation from the head would let the prover re-salt and re-commit until
//! it likes the indices.

use super::hash::Digest;
use crate::TmError;

/// The `derive_key` context of the audit-index stream.
pub const AUDIT_CONTEXT: &str = "tokenmath v1 audit index sampling";

fn check_q(q: f64) -> Result<(), TmError> {
    if q.is_finite() && (0.0..=1.0).contains(&q) {
        Ok(())
    } else {
        Err(TmError::InvalidArgument("detection probability: q must be in [0, 1]"))
    }
}

/// Longest loop run exactly before switching to `lgamma`.
const EXACT_LOOP_MAX: u64 = 1 << 22;

/// `ln C(n, k)` via `lgamma` (for very large arguments).
fn ln_choose(n: u64, k: u64) -> f64 {
    libm::lgamma(n as f64 + 1.0) - libm::lgamma(k as f64 + 1.0) - libm::lgamma((n - k) as f64 + 1.0)
}

/// `ln Hyp(x_min; m, F, s)` where `x_min = max(0, s − (m − F))`.
fn ln_pmf_min(m: u64, forged: u64, s: u64) -> f64 {
    let good = m - forged;
    if s <= good {
        // x = 0: Π_{i<s} (m − F − i)/(m − i)
        if s <= EXACT_LOOP_MAX {
            (0..s).map(|i| libm::log1p(-(forged as f64) / (m - i) as f64)).sum()
        } else {
            ln_choose(good, s) - ln_choose(m, s)
        }
    } else {
        // x = s − good: every unsampled leaf is forged: C(F, m − s)/C(m, m − s)
        let u = m - s;
        if u <= EXACT_LOOP_MAX {
            (0..u).map(|i| libm::log((forged - i) as f64 / (m - i) as f64)).sum()
        } else {
            ln_choose(forged, u) - ln_choose(m, u)
        }
    }
}

/// Exact detection probability `1 − Σ_x Hyp(x; m, F, s)(1 − q)^x` (`s > m` is clamped to
/// `m`). `F = 0 → 0`; `q = 1, s > m − F → 1`.
pub fn detect_prob_hypergeom(m: u64, forged: u64, s: u64, q: f64) -> Result<f64, TmError> {
    check_q(q)?;
    if forged > m {
        return Err(TmError::InvalidArgument("detection probability: more forged leaves than leaves"));
    }
    let s = s.min(m);
    if forged == 0 || s == 0 || q == 0.0 {
        return Ok(0.0);
    }
    let good = m - forged;
    if q == 1.0 {
        if s > good {
            return Ok(1.0);
        }
        return Ok(-libm::expm1(ln_pmf_min(m, forged, s)));
    }
    // E[(1 − q)^X] by the pmf recurrence from x_min upward.
    let x_min = s.saturating_sub(good);
    let x_max = s.min(forged);
    let lq = libm::log1p(-q);
    let mut ln_p = ln_pmf_min(m, forged, s);
    let mut acc = 0.0f64;
    let mut x = x_min;
    loop {
        let term = libm::exp(ln_p + x as f64 * lq);
        acc += term;
        if x == x_max {
            break;
        }
        // Hyp(x+1)/Hyp(x) = (F − x)(s − x) / ((x + 1)(m − F − s + x + 1))
        let num = (forged - x) as f64 * (s - x) as f64;
        let den = (x + 1) as f64 * (good + x + 1 - s) as f64;
        let ratio = num / den;
        // Past the mode the terms only shrink: stop once they no longer change the sum.
        if ratio < 1.0 && term <= acc * 1e-18 {
            break;
        }
        ln_p += libm::log(ratio);
        x += 1;
    }
    Ok((1.0 - acc).clamp(0.0, 1.0))
}

/// The binomial lower bound `1 − (1 − q·f)^s`.
pub fn detect_prob_bound(forged_frac: f64, s: u64, q: f64) -> Result<f64, TmError> {
    check_q(q)?;
    if !(forged_frac.is_finite() && (0.0..=1.0).contains(&forged_frac)) {
        return Err(TmError::InvalidArgument("detection probability: forged fraction must be in [0, 1]"));
    }
    Ok(-libm::expm1(s as f64 * libm::log1p(-q * forged_frac)))
}

/// Samples needed for detection with confidence `1 − δ` under the binomial bound:
/// `⌈ln δ / ln(1 − q·f)⌉` (0 for `δ ≥ 1`, 1 for `q·f = 1`). `q·f = 0` is an error (no
/// number of samples suffices).
pub fn samples_for_confidence(forged_frac: f64, q: f64, delta: f64) -> Result<u64, TmError> {
    check_q(q)?;
    if !(forged_frac.is_finite() && (0.0..=1.0).contains(&forged_frac)) {
        return Err(TmError::InvalidArgument("samples: forged fraction must be in [0, 1]"));
    }
    if !(delta.is_finite() && delta > 0.0) {
        return Err(TmError::InvalidArgument("samples: delta must be finite and > 0"));
    }
    if delta >= 1.0 {
        return Ok(0);
    }
    let qf = q * forged_frac;
    if qf == 0.0 {
        return Err(TmError::InvalidArgument("samples: q·f = 0, no number of samples detects anything"));
    }
    if qf >= 1.0 {
        return Ok(1);
    }
    let s = libm::ceil(libm::log(delta) / libm::log1p(-qf));
    if s >= u64::MAX as f64 {
        return Err(TmError::SizeOverflow { what: "samples" });
    }
    Ok(s as u64)
}

/// The exact minimal `s` with hypergeometric detection probability (`q = 1`) at least
/// `1 − δ`: the smallest `s` with `C(m − F, s)/C(m, s) ≤ δ`. `F = 0` is an error.
pub fn samples_needed_exact(m: u64, forged: u64, delta: f64) -> Result<u64, TmError> {
    if forged == 0 || forged > m {
        return Err(TmError::InvalidArgument("samples: need 0 < forged <= m"));
    }
    if !(delta.is_finite() && delta > 0.0) {
        return Err(TmError::InvalidArgument("samples: delta must be finite and > 0"));
    }
    if delta >= 1.0 {
        return Ok(0);
    }
    let ln_delta = libm::log(delta);
    let mut ln_miss = 0.0f64;
    for i in 0..m - forged {
        ln_miss += libm::log1p(-(forged as f64) / (m - i) as f64);
        if ln_miss <= ln_delta {
            return Ok(i + 1);
        }
    }
    Ok(m - forged + 1)
}

/// The audit-index stream: BLAKE3 `derive_key` mode with [`AUDIT_CONTEXT`] over
/// `root ‖ le64(n) ‖ nonce`, read as `u64` little-endian words.
pub struct AuditStream {
    xof: blake3::OutputReader,
}

impl AuditStream {
    /// The stream for a signed head `(n, root)` and the auditor's nonce.
    pub fn new(root: &Digest, n: u64, nonce: &[u8]) -> Self {
        let mut h = blake3::Hasher::new_derive_key(AUDIT_CONTEXT);
        h.update(root);
        h.update(&n.to_le_bytes());
        h.update(nonce);
        AuditStream { xof: h.finalize_xof() }
    }

    /// The next 8 XOF bytes as a little-endian `u64`.
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.xof.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// An unbiased draw in `[0, bound)` by rejection (`bound ≥ 1`).
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound >= 1);
        let lo = bound.wrapping_neg() % bound;
        loop {
            let x = self.next_u64();
            if x >= lo {
                return x % bound;
            }
        }
    }
}

/// Samples `min(s, n)` distinct leaf indices of `[0, n)` (Floyd's algorithm on the
/// [`AuditStream`]) into `out`, sorted ascending; returns how many were written. `out` must
/// hold `min(s, n)` entries. `O(s²)` time, no allocation.
pub fn audit_indices(root: &Digest, n: u64, nonce: &[u8], s: u64, out: &mut [u64]) -> Result<usize, TmError> {
    let s = s.min(n);
    let need = usize::try_from(s).map_err(|_| TmError::SizeOverflow { what: "audit sample" })?;
    if out.len() < need {
        return Err(TmError::LengthMismatch { what: "audit index buffer", expected: need, got: out.len() });
    }
    if s == n {
        for (i, o) in out[..need].iter_mut().enumerate() {
            *o = i as u64;
        }
        return Ok(need);
    }
    let mut stream = AuditStream::new(root, n, nonce);
    let mut len = 0usize;
    for j in n - s..n {
        let t = stream.below(j + 1);
        // The set is kept sorted; every member is < j, so adding j appends.
        match out[..len].binary_search(&t) {
            Ok(_) => out[len] = j,
            Err(pos) => {
                out.copy_within(pos..len, pos + 1);
                out[pos] = t;
            }
        }
        len += 1;
    }
    Ok(len)
}
