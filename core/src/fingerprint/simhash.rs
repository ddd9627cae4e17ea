//! SimHash (random-hyperplane LSH) fingerprints with guard bands.
//!
//! With `k` hyperplanes `r_j ∈ R^d` (Charikar, STOC 2002):
//!
//! ```text
//! p_j = r_j·x   (f64, summed sequentially in dimension order)
//! h_j = 1[p_j ≥ 0]                                 signature bit
//! μ_j = |p_j| / (‖r_j‖·‖x‖)                        normalised margin
//! g_j = 1[μ_j < τ]                                 guard bit
//! Pr[h_j(x) = h_j(y)] = 1 − θ(x, y)/π   (Gaussian planes);   θ ≈ π·Hamming/k
//! ```
//!
//! **Guard-band guarantee** \[derived\]: a bit with `μ_j ≥ τ` cannot flip under any
//! perturbation `‖δ‖ < τ‖x‖` (Cauchy–Schwarz: `|r_j·δ| ≤ ‖r_j‖‖δ‖ < τ‖r_j‖‖x‖ ≤ |r_j·x|`).
//! Acceptance of a verifier's recomputed signature `sig'`: `popcount(g) ≤ g_max` and
//! `Hamming((sig ⊕ sig') ∧ ¬g) ≤ t` ([`simhash_accept`]); the cap `g_max` stops a prover
//! from guarding every bit. Defaults \[library choice\]: `k = 256`, `τ = 0.005`, `t = 0`,
//! `g_max = 64`.
//!
//! **Planes from a seed** (no global RNG): the XOF of BLAKE3 in `derive_key` mode with
//! context [`PLANES_CONTEXT`] over the 32-byte seed.
//! * [`Planes::Rademacher`] (default): entry `(j, i)` is `+1` if bit `j·d + i` of the stream
//!   is 1, else `−1` (bit `b` = bit `b mod 64` of little-endian XOF word `b/64`). Bit-exact
//!   everywhere; collision probability only approximately `1 − θ/π`.
//! * [`Planes::Gaussian`]: Box–Muller on XOF uniforms. Entry `e = j·d + i` takes the pair of
//!   words `(w_{2⌊e/2⌋}, w_{2⌊e/2⌋+1})`, `u1 = ((w_a >> 11) + 1)·2^-53 ∈ (0, 1]`,
//!   `u2 = (w_b >> 11)·2^-53`, `ρ = sqrt(−2 ln u1)`, entry `= ρ cos(2πu2)` for even `e` and
//!   `ρ sin(2πu2)` for odd `e`. Computed with the pure-Rust `libm` crate, so reproducible
//!   on every platform running this code; a verifier in another language needs the same
//!   `log`/`cos`/`sin` bits.
//!
//! A zero vector has `p_j = 0` for every plane: all signature bits are 1 and all bits are
//! guarded (`μ_j := 0`).

use super::hash::Digest;
use crate::TmError;

/// The `derive_key` context of the plane stream.
pub const PLANES_CONTEXT: &str = "tokenmath v1 simhash planes";

/// Default number of hyperplanes.
pub const DEFAULT_K: usize = 256;
/// Default guard threshold `τ`.
pub const DEFAULT_TAU: f64 = 0.005;
/// Default Hamming tolerance on unguarded bits.
pub const DEFAULT_T: u32 = 0;
/// Default cap on guarded bits.
pub const DEFAULT_G_MAX: u32 = 64;

/// How plane entries are drawn from the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Planes {
    /// `±1` entries, one XOF bit each (bit-exact everywhere).
    #[default]
    Rademacher,
    /// Standard normal entries by Box–Muller (needs identical `libm` results).
    Gaussian,
}

/// A sequential reader of the plane stream.
struct PlaneStream {
    xof: blake3::OutputReader,
    planes: Planes,
    word: u64,
    bits_left: u32,
    spare: Option<f64>,
}

impl PlaneStream {
    fn new(seed: &Digest, planes: Planes) -> Self {
        let mut h = blake3::Hasher::new_derive_key(PLANES_CONTEXT);
        h.update(seed);
        PlaneStream { xof: h.finalize_xof(), planes, word: 0, bits_left: 0, spare: None }
    }

    fn next_word(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.xof.fill(&mut b);
        u64::from_le_bytes(b)
    }

    #[inline]
    fn next_entry(&mut self) -> f64 {
        match self.planes {
            Planes::Rademacher => {
                if self.bits_left == 0 {
                    self.word = self.next_word();
                    self.bits_left = 64;
                }
                let bit = self.word & 1;
                self.word >>= 1;
                self.bits_left -= 1;
                if bit == 1 {
                    1.0
                } else {
                    -1.0
                }
            }
            Planes::Gaussian => {
                if let Some(z) = self.spare.take() {
                    return z;
                }
                let wa = self.next_word();
                let wb = self.next_word();
                let u1 = ((wa >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
                let u2 = (wb >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
                let rho = libm::sqrt(-2.0 * libm::log(u1));
                let t = 2.0 * core::f64::consts::PI * u2;
                self.spare = Some(rho * libm::sin(t));
                rho * libm::cos(t)
            }
        }
    }
}

/// Writes plane `j`'s entries for every `j < k` into `out` (`k·d` values, plane-major);
/// for inspection and tests, the signature itself never materialises the planes.
pub fn planes_into(seed: &Digest, planes: Planes, d: usize, out: &mut [f64]) -> Result<(), TmError> {
    if d == 0 || !out.len().is_multiple_of(d) {
        return Err(TmError::InvalidArgument("simhash planes: the buffer is not a whole number of planes"));
    }
    let mut s = PlaneStream::new(seed, planes);
    for v in out.iter_mut() {
        *v = s.next_entry();
    }
    Ok(())
}

/// SimHash of `x` with `k = 64·sig.len()` planes from `seed`, and its guard bits at
/// threshold `tau`. Bit `j` lives in `sig[j / 64]` at bit `j mod 64`.
pub fn simhash(
    x: &[f32],
    seed: &Digest,
    planes: Planes,
    tau: f64,
    sig: &mut [u64],
    guard: &mut [u64],
) -> Result<(), TmError> {
    if x.is_empty() {
        return Err(TmError::InvalidArgument("simhash: empty vector"));
    }
    if sig.is_empty() {
        return Err(TmError::InvalidArgument("simhash: need at least one 64-bit signature word"));
    }
    if guard.len() != sig.len() {
        return Err(TmError::LengthMismatch { what: "guard", expected: sig.len(), got: guard.len() });
    }
    if !(tau.is_finite() && tau >= 0.0) {
        return Err(TmError::InvalidArgument("simhash: tau must be finite and >= 0"));
    }
    if let Some(index) = x.iter().position(|v| !v.is_finite()) {
        return Err(TmError::NonFinite { what: "simhash input", index });
    }
    let xnorm = super::encoding::l2_norm_f64(x);
    let mut s = PlaneStream::new(seed, planes);
    sig.fill(0);
    guard.fill(0);
    for j in 0..sig.len() * 64 {
        let (mut p, mut rr) = (0.0f64, 0.0f64);
        for &xi in x {
            let r = s.next_entry();
            p += r * xi as f64;
            rr += r * r;
        }
        let (w, b) = (j / 64, j % 64);
        if p >= 0.0 {
            sig[w] |= 1 << b;
        }
        let denom = libm::sqrt(rr) * xnorm;
        let mu = if denom > 0.0 { p.abs() / denom } else { 0.0 };
        if mu < tau {
            guard[w] |= 1 << b;
        }
    }
    Ok(())
}

/// `popcount(a ⊕ b)`.
pub fn hamming(a: &[u64], b: &[u64]) -> Result<u32, TmError> {
    if a.len() != b.len() {
        return Err(TmError::LengthMismatch { what: "signature", expected: a.len(), got: b.len() });
    }
    Ok(a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum())
}

/// `popcount((a ⊕ b) ∧ ¬guard)`: the Hamming distance on unguarded bits.
pub fn masked_hamming(a: &[u64], b: &[u64], guard: &[u64]) -> Result<u32, TmError> {
    if a.len() != b.len() || guard.len() != a.len() {
        return Err(TmError::LengthMismatch {
            what: "signature/guard",
            expected: a.len(),
            got: b.len().min(guard.len()),
        });
    }
    Ok(a.iter().zip(b).zip(guard).map(|((x, y), g)| ((x ^ y) & !g).count_ones()).sum())
}

/// The angle estimate `θ ≈ π·hamming/bits` (radians) from a Hamming distance over `bits`
/// compared bits (`bits = k`, or `k − popcount(guard)` for a masked distance).
pub fn angle_estimate(hamming: u32, bits: u32) -> Result<f64, TmError> {
    if bits == 0 || hamming > bits {
        return Err(TmError::InvalidArgument("angle estimate: need 0 <= hamming <= bits and bits > 0"));
    }
    Ok(core::f64::consts::PI * hamming as f64 / bits as f64)
}

/// Acceptance of a committed `(sig, guard)` against the verifier's own `sig_verifier`:
/// `popcount(guard) ≤ g_max` and `masked_hamming ≤ t`.
pub fn simhash_accept(sig: &[u64], guard: &[u64], sig_verifier: &[u64], t: u32, g_max: u32) -> Result<bool, TmError> {
    let d = masked_hamming(sig, sig_verifier, guard)?;
    let guarded: u32 = guard.iter().map(|g| g.count_ones()).sum();
    Ok(guarded <= g_max && d <= t)
}

/// `fp_kind = 4` bytes: signature words then guard words, each `u64` little-endian
/// (`16·sig.len()` bytes).
pub fn encode_simhash(sig: &[u64], guard: &[u64], out: &mut [u8]) -> Result<(), TmError> {
    if guard.len() != sig.len() {
        return Err(TmError::LengthMismatch { what: "guard", expected: sig.len(), got: guard.len() });
    }
    let need = 16 * sig.len();
    if out.len() != need {
        return Err(TmError::LengthMismatch { what: "simhash bytes", expected: need, got: out.len() });
    }
    for (w, o) in sig.iter().chain(guard).zip(out.chunks_exact_mut(8)) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    Ok(())
}

/// Inverse of [`encode_simhash`]: `bytes.len()` must be `16·sig.len()`.
pub fn decode_simhash(bytes: &[u8], sig: &mut [u64], guard: &mut [u64]) -> Result<(), TmError> {
    if guard.len() != sig.len() || bytes.len() != 16 * sig.len() {
        return Err(TmError::LengthMismatch { what: "simhash bytes", expected: 16 * sig.len(), got: bytes.len() });
    }
    for (w, c) in sig.iter_mut().chain(guard.iter_mut()).zip(bytes.chunks_exact(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        *w = u64::from_le_bytes(a);
    }
    Ok(())
}
