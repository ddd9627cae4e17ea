//! Test helpers shared by the tokenmath crates (a dev-dependency only, never published):
//!
//! * [`Rng`] and [`rand_f32`]: the deterministic xorshift generator of the C ABI tests, one
//!   seeding rule; [`unit_hash`]: a pseudo-random `f32` addressed by index (inputs that do
//!   not shift when a test grows);
//! * [`hostile_logit`]: the proptest strategy of hostile values (NaN, ±inf, `−inf` masks,
//!   denormals of both signs, signed zeros, huge magnitudes, the `exp` edges `±88`, `87`);
//! * [`POISON`]: the NaN payload every test writes into outputs before a call, with
//!   [`poisoned`], [`all_written`] and [`untouched`];
//! * [`bits`] and [`nan_bits`]: bit patterns for exact comparisons;
//! * [`close`] and [`ulps`]: tolerances.
//!
//! It depends on no tokenmath crate, so every crate (`core` included) can use it in its own
//! unit tests.

use proptest::prelude::*;

/// Written into every output before a kernel call: a quiet NaN with a payload no kernel
/// produces, so an element the kernel did not write is caught by a bitwise comparison, and
/// one it wrote is never mistaken for it (the README's promise: outputs are poisoned with a
/// NaN payload).
pub const POISON: f32 = f32::from_bits(0x7FC0_DEAD);

/// `n` poisoned elements.
pub fn poisoned(n: usize) -> Vec<f32> {
    vec![POISON; n]
}

/// Whether every element was written (none holds [`POISON`]'s bits).
pub fn all_written(v: &[f32]) -> bool {
    v.iter().all(|x| x.to_bits() != POISON.to_bits())
}

/// Whether no element was written (all hold [`POISON`]'s bits).
pub fn untouched(v: &[f32]) -> bool {
    v.iter().all(|x| x.to_bits() == POISON.to_bits())
}

/// The bit patterns (so `NaN == NaN` and `−0.0 != +0.0`).
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The bit patterns with every NaN but [`POISON`] as one pattern: Rust leaves the sign and
/// payload of a NaN result unspecified (LLVM may commute `a + b`, x86 returns the first
/// operand's NaN), so two paths "agree bitwise" when every non-NaN bit agrees and NaN stands
/// where NaN stands; an unwritten element still shows as [`POISON`].
pub fn nan_bits(v: &[f32]) -> Vec<u32> {
    v.iter()
        .map(|x| if x.is_nan() && x.to_bits() != POISON.to_bits() { f32::NAN.to_bits() } else { x.to_bits() })
        .collect()
}

/// The xorshift64 generator of the tests: deterministic, seeded by [`Rng::new`].
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator for `seed` (any value; the seed is mixed so that small seeds differ).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        self.0 = s;
        s
    }

    /// A uniform `f32` in `[−1, 1)` (24 random bits).
    pub fn symmetric(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// `n` uniform values in `[−scale, scale)` from [`Rng::new`]`(seed)`.
pub fn rand_f32(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.symmetric() * scale).collect()
}

/// A pseudo-random `f32` in `[0, 1)` addressed by index `i` and stream `k` (a hash, not a
/// sequence: element `i` does not depend on how many came before).
pub fn unit_hash(i: usize, k: u32) -> f32 {
    (((i as u32) ^ k.wrapping_mul(0x9E37_79B9)).wrapping_mul(2_654_435_761).rotate_left(13).wrapping_mul(0x85EB_CA6B)
        >> 8) as f32
        / (1u32 << 24) as f32
}

/// One hostile logit: mostly ordinary values, with NaN, ±inf, `−inf` masks, denormals of
/// both signs, signed zeros, huge magnitudes and the `exp` edges (`±88`, `87`, `−87.5`) mixed
/// in at low rates.
pub fn hostile_logit() -> impl Strategy<Value = f32> {
    prop_oneof![
        40 => -20.0f32..20.0,
        4 => Just(f32::NEG_INFINITY),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        2 => Just(0.0f32),
        2 => Just(-0.0f32),
        2 => (1u32..0x0080_0000).prop_map(f32::from_bits),
        2 => (1u32..0x0080_0000).prop_map(|b| -f32::from_bits(b)),
        2 => -1e30f32..1e30,
        2 => prop_oneof![Just(88.0f32), Just(-88.0f32), Just(87.0f32), Just(-87.5f32)],
    ]
}

/// Asserts `|got − want| ≤ tol` (`want` in `f64`, from an oracle).
#[track_caller]
pub fn close(got: f32, want: f64, tol: f64) {
    assert!((got as f64 - want).abs() <= tol, "got {got:e}, want {want:e} (tol {tol:e})");
}

/// The distance in units in the last place between two finite `f32` of the same sign (0 for
/// equal values).
pub fn ulps(a: f32, b: f32) -> u32 {
    if a == b {
        return 0;
    }
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_is_a_nan_that_nan_bits_keeps_apart() {
        assert!(POISON.is_nan());
        let v = [POISON, f32::NAN, -f32::NAN, 1.0];
        assert_eq!(nan_bits(&v), [POISON.to_bits(), f32::NAN.to_bits(), f32::NAN.to_bits(), 1.0f32.to_bits()]);
        assert!(untouched(&poisoned(3)) && !all_written(&[1.0, POISON]) && all_written(&[f32::NAN]));
    }

    #[test]
    fn the_generators_are_deterministic() {
        assert_eq!(bits(&rand_f32(5, 7, 2.0)), bits(&rand_f32(5, 7, 2.0)));
        assert_ne!(bits(&rand_f32(5, 7, 2.0)), bits(&rand_f32(5, 8, 2.0)));
        assert!(rand_f32(1000, 1, 3.0).iter().all(|x| (-3.0..3.0).contains(x)));
        assert!((0..1000).map(|i| unit_hash(i, 3)).all(|x| (0.0..1.0).contains(&x)));
        assert_eq!(ulps(1.0, f32::from_bits(1.0f32.to_bits() + 2)), 2);
    }
}
