//! [`SplitMix64`], the one generator of the generated (non-test) data: the `tokenmath`
//! command's default batch and the benchmark problems.
//!
//! It lives here, not in `tokenmath-testutil`, because the CLI and the benchmarks use it in
//! their normal code and `tokenmath-testutil` is a dev-dependency only; this crate is already
//! a normal dependency of both. (The tests' own generator is `tokenmath_testutil::Rng`.)
//! Every method is fixed: the default batch's bits, and so the command's golden output,
//! depend on them.

/// The SplitMix64 generator (Steele, Lea and Flood 2014): tiny, fast, deterministic for a
/// given seed on every platform.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// The splitmix64 output function: a bijective 64-bit mixer.
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// An independent stream for `row` of a batch seeded with `seed`.
    pub fn for_row(seed: u64, row: usize) -> SplitMix64 {
        SplitMix64(Self::mix(seed ^ Self::mix(row as u64 ^ Self::GAMMA)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        Self::mix(self.0)
    }

    /// A uniform `f32` in `[0, 1)` (24 random bits).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `[0, n)` (multiply-shift; the bias is below `n / 2^64`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// An integer in `[0, n)` (`n > 0`) by `next_u64() % n`: the benchmarks' draw, kept for
    /// their data (its modulo bias is irrelevant there); new code takes [`SplitMix64::below`].
    pub fn below_mod(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A standard normal deviate (Box–Muller, one of the pair).
    pub fn gaussian(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_and_uniform_are_sane() {
        let mut rng = SplitMix64::for_row(1, 0);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.gaussian()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
        assert!((0..1000).all(|_| rng.below(3) < 3 && rng.below_mod(3) < 3));
    }

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs for seed 0 (Vigna's reference implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }
}
