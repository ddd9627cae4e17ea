//! Canonical fingerprint encodings and the leaf record.
//!
//! Fingerprint bytes must be identical on the prover's and the verifier's machines, so every
//! encoding is a named, versioned, bit-exact function of its input:
//!
//! | [`FpKind`] | code | name | bytes per dim | rule |
//! |---|---|---|---|---|
//! | `None` | 0 | `none-v1` | – | no fingerprint (token id only) |
//! | `F32Canonical` | 1 | `f32-canonical-v1` | 4 | NaN/±inf rejected, `−0 → +0`, subnormals → `+0`, IEEE binary32 LE, dimension order |
//! | `I8Unit` | 2 | `i8-unit-v1` | 1 | `‖x‖₂` in `f64` (sequential); `q = clamp(round_half_even((127·x)/‖x‖), −127, 127)` in `f64`; all 0 when `‖x‖ = 0` |
//! | `Bf16` | 3 | `bf16-v1` | 2 | subnormal/−0 → `+0`, round-to-nearest-even, LE; NaN/±inf (also after rounding) rejected |
//! | `SimHash` | 4 | `simhash-v1` | – | signature words ‖ guard words, `u64` LE ([`super::simhash`]) |
//!
//! The CoIn layout (`block embedding ‖ token embedding`) is [`encode_coin_layout`]: the
//! chosen float encoding applied to the concatenation, i.e. one vector of `2d` dimensions
//! (for `I8Unit` the norm is taken over the concatenation) \[library choice\].
//!
//! Never hash a value the verifier is expected to recompute approximately: the hash is
//! checked on the committed bytes, and a tolerant comparison with a recomputation happens
//! afterwards (e.g. [`i8_codes_close`]).
//!
//! # Leaf record (version 1)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | `version = 0x01` |
//! | 1 | 1 | `fp_kind` |
//! | 2 | 8 | `index` (`u64` LE) |
//! | 10 | 16 | `salt` |
//! | 26 | 4 | `token_id` (`u32` LE) |
//! | 30 | 4 | `fp_len` (`u32` LE) |
//! | 34 | `fp_len` | fingerprint bytes |
//!
//! `leaf_hash = H(0x00 ‖ record)`.

use half::bf16;

use super::hash::{Digest, Hash32, LEAF_PREFIX};
use crate::TmError;

/// The fingerprint encoding of a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FpKind {
    /// No fingerprint.
    None = 0,
    /// Exact `f32` bytes, canonicalised.
    F32Canonical = 1,
    /// L2-normalised `i8` codes.
    I8Unit = 2,
    /// `bf16`, round-to-nearest-even.
    Bf16 = 3,
    /// SimHash signature and guard bits.
    SimHash = 4,
}

impl FpKind {
    /// The code stored in the leaf record.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind for a record code.
    pub fn from_code(code: u8) -> Option<FpKind> {
        Some(match code {
            0 => FpKind::None,
            1 => FpKind::F32Canonical,
            2 => FpKind::I8Unit,
            3 => FpKind::Bf16,
            4 => FpKind::SimHash,
            _ => return None,
        })
    }

    /// The versioned name (`"f32-canonical-v1"`, …).
    pub fn name(self) -> &'static str {
        match self {
            FpKind::None => "none-v1",
            FpKind::F32Canonical => "f32-canonical-v1",
            FpKind::I8Unit => "i8-unit-v1",
            FpKind::Bf16 => "bf16-v1",
            FpKind::SimHash => "simhash-v1",
        }
    }

    /// Bytes per dimension of a float encoding (`None` for `None` and `SimHash`).
    pub fn bytes_per_dim(self) -> Option<usize> {
        match self {
            FpKind::F32Canonical => Some(4),
            FpKind::I8Unit => Some(1),
            FpKind::Bf16 => Some(2),
            FpKind::None | FpKind::SimHash => None,
        }
    }
}

/// Byte length of the float encoding `kind` of a `dim`-dimensional vector.
pub fn encoded_len(kind: FpKind, dim: usize) -> Result<usize, TmError> {
    let per = kind.bytes_per_dim().ok_or(TmError::InvalidArgument("encoding: not a float fingerprint kind"))?;
    dim.checked_mul(per).ok_or(TmError::SizeOverflow { what: "fingerprint" })
}

fn check_finite(what: &'static str, x: &[f32]) -> Result<(), TmError> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(TmError::NonFinite { what, index }),
        None => Ok(()),
    }
}

fn check_out(expected: usize, got: usize) -> Result<(), TmError> {
    if got == expected {
        Ok(())
    } else {
        Err(TmError::LengthMismatch { what: "fingerprint bytes", expected, got })
    }
}

/// `−0.0 → +0.0`, subnormals → `+0.0`; other finite values unchanged.
#[inline]
pub fn canonical_f32(v: f32) -> f32 {
    if v.is_normal() {
        v
    } else {
        0.0
    }
}

/// `F32Canonical`: writes `4·x.len()` bytes into `out` (exactly that long). On
/// [`TmError::NonFinite`] the contents of `out` are unspecified.
pub fn encode_f32_canonical(x: &[f32], out: &mut [u8]) -> Result<(), TmError> {
    check_out(x.len() * 4, out.len())?;
    // One pass: encode, and note whether anything was non-finite (then find it).
    let mut all_finite = true;
    for (v, o) in x.iter().zip(out.chunks_exact_mut(4)) {
        all_finite &= v.is_finite();
        o.copy_from_slice(&canonical_f32(*v).to_le_bytes());
    }
    if all_finite {
        Ok(())
    } else {
        check_finite("fingerprint", x)
    }
}

/// `‖x‖₂` in `f64`, summed sequentially in dimension order.
pub fn l2_norm_f64(x: &[f32]) -> f64 {
    let mut s = 0.0f64;
    for &v in x {
        let v = v as f64;
        s += v * v;
    }
    libm::sqrt(s)
}

/// `clamp(round_half_even(v), −127, 127)` for `|v| ≤ 128` (always the case here, since
/// `|x_i| ≤ ‖x‖`): adding and subtracting `1.5·2^52` rounds to an integer in the default
/// round-to-nearest-even mode, exactly like `rint`, without a library call.
#[inline]
fn i8_code(v: f64) -> i8 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
    let r = (v + MAGIC) - MAGIC;
    r.clamp(-127.0, 127.0) as i8
}

/// `I8Unit` codes: `clamp(round_half_even(127·x_i/‖x‖), −127, 127)`, all 0 for a zero
/// vector. `out.len()` must equal `x.len()`.
pub fn quantize_i8_unit(x: &[f32], out: &mut [i8]) -> Result<(), TmError> {
    if out.len() != x.len() {
        return Err(TmError::LengthMismatch { what: "i8 codes", expected: x.len(), got: out.len() });
    }
    check_finite("fingerprint", x)?;
    let norm = l2_norm_f64(x);
    if norm == 0.0 {
        out.fill(0);
        return Ok(());
    }
    // Evaluated as written in the spec, (127·x_i)/‖x‖, so every implementation gets the
    // same bits at half-way points.
    for (v, o) in x.iter().zip(out.iter_mut()) {
        *o = i8_code(127.0 * *v as f64 / norm);
    }
    Ok(())
}

/// `I8Unit` as bytes (two's complement), `out.len() == x.len()`.
pub fn encode_i8_unit(x: &[f32], out: &mut [u8]) -> Result<(), TmError> {
    check_out(x.len(), out.len())?;
    quantize_i8_unit(x, bytemuck::cast_slice_mut(out))
}

/// The tolerant check for `I8Unit` codes: `max_i |a_i − b_i| ≤ tol` (default `tol = 1`).
pub fn i8_codes_close(a: &[u8], b: &[u8], tol: u8) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| (x as i8 as i16 - y as i8 as i16).unsigned_abs() <= tol as u16)
}

/// `Bf16`: writes `2·x.len()` bytes into `out`.
pub fn encode_bf16(x: &[f32], out: &mut [u8]) -> Result<(), TmError> {
    check_out(x.len() * 2, out.len())?;
    check_finite("fingerprint", x)?;
    for (i, (v, o)) in x.iter().zip(out.chunks_exact_mut(2)).enumerate() {
        let b = bf16::from_f32(canonical_f32(*v));
        if !b.is_finite() {
            return Err(TmError::NonFinite { what: "fingerprint (rounded to bf16)", index: i });
        }
        o.copy_from_slice(&b.to_bits().to_le_bytes());
    }
    Ok(())
}

/// The float encoding `kind` of `x` into `out` (exactly [`encoded_len`] bytes).
pub fn encode(kind: FpKind, x: &[f32], out: &mut [u8]) -> Result<(), TmError> {
    match kind {
        FpKind::F32Canonical => encode_f32_canonical(x, out),
        FpKind::I8Unit => encode_i8_unit(x, out),
        FpKind::Bf16 => encode_bf16(x, out),
        FpKind::None | FpKind::SimHash => Err(TmError::InvalidArgument("encoding: not a float fingerprint kind")),
    }
}

/// The CoIn layout `block ‖ token` encoded with `kind` as one vector of
/// `block.len() + token.len()` dimensions.
pub fn encode_coin_layout(kind: FpKind, block: &[f32], token: &[f32], out: &mut [u8]) -> Result<(), TmError> {
    let per = kind.bytes_per_dim().ok_or(TmError::InvalidArgument("encoding: not a float fingerprint kind"))?;
    let d = block.len() + token.len();
    check_out(d * per, out.len())?;
    match kind {
        FpKind::I8Unit => {
            check_finite("block embedding", block)?;
            check_finite("token embedding", token)?;
            // Sequential f64 sum over the concatenation, block first.
            let mut sum = 0.0f64;
            for &v in block.iter().chain(token) {
                sum += v as f64 * v as f64;
            }
            let norm = libm::sqrt(sum);
            for (v, o) in block.iter().chain(token).zip(out.iter_mut()) {
                *o = if norm == 0.0 { 0 } else { i8_code(127.0 * *v as f64 / norm) as u8 };
            }
            Ok(())
        }
        _ => {
            let split = block.len() * per;
            encode(kind, block, &mut out[..split])?;
            encode(kind, token, &mut out[split..]).map_err(|e| match e {
                TmError::NonFinite { index, .. } => TmError::NonFinite { what: "token embedding", index },
                e => e,
            })
        }
    }
}

/// The leaf record format version.
pub const LEAF_VERSION: u8 = 0x01;
/// Bytes of the record before the fingerprint.
pub const LEAF_HEADER_LEN: usize = 34;

/// One committed token (see the module docs for the byte layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRecord<'a> {
    /// Position in the stream.
    pub index: u64,
    /// Secret per-leaf salt (all zero only when hiding is not needed).
    pub salt: [u8; 16],
    /// The token id.
    pub token_id: u32,
    /// Encoding of `fp`.
    pub kind: FpKind,
    /// Fingerprint bytes.
    pub fp: &'a [u8],
}

impl<'a> LeafRecord<'a> {
    /// Bytes of the encoded record.
    pub fn encoded_len(&self) -> usize {
        LEAF_HEADER_LEN + self.fp.len()
    }

    /// The 34 bytes before the fingerprint.
    pub fn header(&self) -> Result<[u8; LEAF_HEADER_LEN], TmError> {
        let fp_len = u32::try_from(self.fp.len()).map_err(|_| TmError::SizeOverflow { what: "fingerprint" })?;
        let mut h = [0u8; LEAF_HEADER_LEN];
        h[0] = LEAF_VERSION;
        h[1] = self.kind.code();
        h[2..10].copy_from_slice(&self.index.to_le_bytes());
        h[10..26].copy_from_slice(&self.salt);
        h[26..30].copy_from_slice(&self.token_id.to_le_bytes());
        h[30..34].copy_from_slice(&fp_len.to_le_bytes());
        Ok(h)
    }

    /// Writes the record into `out` (at least [`Self::encoded_len`] bytes); returns the
    /// length written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, TmError> {
        let header = self.header()?;
        let total = self.encoded_len();
        if out.len() < total {
            return Err(TmError::LengthMismatch { what: "leaf record buffer", expected: total, got: out.len() });
        }
        out[..LEAF_HEADER_LEN].copy_from_slice(&header);
        out[LEAF_HEADER_LEN..total].copy_from_slice(self.fp);
        Ok(total)
    }

    /// `H(0x00 ‖ record)`, hashed without copying the fingerprint.
    #[inline]
    pub fn leaf_hash<H: Hash32 + ?Sized>(&self, h: &H) -> Result<Digest, TmError> {
        let header = self.header()?;
        Ok(h.hash(&[&[LEAF_PREFIX], &header, self.fp]))
    }

    /// Parses an encoded record strictly (version, known kind, exact length).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, TmError> {
        if bytes.len() < LEAF_HEADER_LEN {
            return Err(TmError::InvalidArgument("leaf record: shorter than the 34-byte header"));
        }
        if bytes[0] != LEAF_VERSION {
            return Err(TmError::InvalidArgument("leaf record: unsupported version"));
        }
        let kind = FpKind::from_code(bytes[1]).ok_or(TmError::InvalidArgument("leaf record: unknown fp_kind"))?;
        let mut i = [0u8; 8];
        i.copy_from_slice(&bytes[2..10]);
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&bytes[10..26]);
        let mut t = [0u8; 4];
        t.copy_from_slice(&bytes[26..30]);
        let mut l = [0u8; 4];
        l.copy_from_slice(&bytes[30..34]);
        let fp_len = u32::from_le_bytes(l) as usize;
        if bytes.len() - LEAF_HEADER_LEN != fp_len {
            return Err(TmError::InvalidArgument("leaf record: length does not match fp_len"));
        }
        Ok(LeafRecord {
            index: u64::from_le_bytes(i),
            salt,
            token_id: u32::from_le_bytes(t),
            kind,
            fp: &bytes[LEAF_HEADER_LEN..],
        })
    }
}

/// The `derive_key` context of salt keys.
pub const SALT_KEY_CONTEXT: &str = "tokenmath v1 leaf salt key";

/// A salt key from arbitrary secret material: `derive_key(SALT_KEY_CONTEXT, material)`.
pub fn salt_key(material: &[u8]) -> [u8; 32] {
    blake3::derive_key(SALT_KEY_CONTEXT, material)
}

/// `salt_i` = first 16 bytes of `keyed_hash(secret_key, "salt" ‖ le64(i))`.
pub fn derive_salt(secret_key: &[u8; 32], index: u64) -> [u8; 16] {
    let mut h = blake3::Hasher::new_keyed(secret_key);
    h.update(b"salt");
    h.update(&index.to_le_bytes());
    let full = h.finalize();
    let mut s = [0u8; 16];
    s.copy_from_slice(&full.as_bytes()[..16]);
    s
}

#[cfg(test)]
mod tests {
    use super::i8_code;

    /// The add-and-subtract rounding equals `rint` (and the clamp) over the whole range,
    /// including every half-way point.
    #[test]
    fn i8_code_is_rint() {
        for k in -260_000i32..=260_000 {
            let v = k as f64 / 1024.0;
            assert_eq!(i8_code(v), libm::rint(v).clamp(-127.0, 127.0) as i8, "{v}");
        }
        for v in [0.5, 1.5, 2.5, -0.5, -1.5, 126.5, -126.5, 127.49, 128.0, -128.0, 1e-300, -0.0] {
            assert_eq!(i8_code(v), libm::rint(v).clamp(-127.0, 127.0) as i8, "{v}");
        }
    }
}
