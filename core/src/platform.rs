//! The one place that decides which instruction set a kernel runs on.
//!
//! Every backend computes the same canonical operation order (see [`crate::logits`]), so
//! they produce **identical bits**; choosing one is purely a matter of speed. Tests and
//! benchmarks construct each backend explicitly; everything else calls [`Backend::detect`].

/// An instruction-set backend for the CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Plain Rust, one lane at a time (FMA through `libm::fmaf`, which uses the hardware
    /// instruction where the CPU has one). Runs everywhere.
    Portable,
    /// x86-64 AVX2 + FMA + F16C, 8 lanes per instruction.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// x86-64 AVX-512 (F, BW, DQ, VL) on top of [`Backend::Avx2Fma`]'s features: 16 lanes and
    /// mask registers where a kernel family has an AVX-512 path (the logits statistics, the
    /// policy step, TW-GRPO's weights, the cDPO scores), the AVX2 code elsewhere.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Backend {
    /// The fastest backend this CPU supports.
    ///
    /// With the `std` feature this is a runtime check (cached by the standard library);
    /// without it, the choice is made at compile time from `-C target-feature`.
    pub fn detect() -> Backend {
        #[cfg(target_arch = "x86_64")]
        if let Some(b) = Backend::avx512().or_else(Backend::avx2_fma) {
            return b;
        }
        Backend::Portable
    }

    /// The AVX2+FMA+F16C backend if this CPU supports it.
    #[cfg(target_arch = "x86_64")]
    pub fn avx2_fma() -> Option<Backend> {
        if avx2_fma_supported() {
            Some(Backend::Avx2Fma)
        } else {
            None
        }
    }

    /// The AVX-512 backend if this CPU supports it (AVX-512 F, BW, DQ, VL, and AVX2, FMA, F16C).
    #[cfg(target_arch = "x86_64")]
    pub fn avx512() -> Option<Backend> {
        if avx512_supported() {
            Some(Backend::Avx512)
        } else {
            None
        }
    }

    /// Whether this backend can run on the current CPU.
    pub fn is_supported(self) -> bool {
        match self {
            Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2Fma => avx2_fma_supported(),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => avx512_supported(),
        }
    }

    /// A short lowercase name (`"portable"`, `"avx2-fma"`, `"avx512"`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2Fma => "avx2-fma",
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => "avx512",
        }
    }

    /// The backend with this [`Backend::name`] (`"portable"`, `"avx2-fma"`, `"avx512"`), if it exists on
    /// this target (it may still be unsupported by this CPU: see [`Backend::is_supported`]).
    pub fn from_name(name: &str) -> Option<Backend> {
        match name {
            "portable" => Some(Backend::Portable),
            #[cfg(target_arch = "x86_64")]
            "avx2-fma" => Some(Backend::Avx2Fma),
            #[cfg(target_arch = "x86_64")]
            "avx512" => Some(Backend::Avx512),
            _ => None,
        }
    }

    /// Every backend the current CPU supports, slowest first (for tests and benchmarks).
    pub fn all_supported() -> impl Iterator<Item = Backend> {
        let all = [
            Some(Backend::Portable),
            #[cfg(target_arch = "x86_64")]
            Backend::avx2_fma(),
            #[cfg(target_arch = "x86_64")]
            Backend::avx512(),
        ];
        all.into_iter().flatten()
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn avx2_fma_supported() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
}

#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn avx2_fma_supported() -> bool {
    cfg!(all(target_feature = "avx2", target_feature = "fma", target_feature = "f16c"))
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn avx512_supported() -> bool {
    avx2_fma_supported()
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx512vl")
}

#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn avx512_supported() -> bool {
    avx2_fma_supported()
        && cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512dq",
            target_feature = "avx512vl"
        ))
}

/// Tests: says that `what` did not run because this CPU lacks `feature`, on the terminal (a
/// direct write to stderr, which the test harness does not capture), so that a skipped SIMD
/// test is never mistaken for a passed one.
#[cfg(test)]
pub(crate) fn report_skip(what: &str, feature: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}: this CPU has no {feature}");
}

/// Defines `name(backend, args…)`: `body` compiled three times — with AVX-512 (F, BW, DQ, VL),
/// with AVX2 + FMA, and for the baseline target — and run in the build of `backend`, so that
/// plain loops written for the compiler to vectorise do so 16 or 8 lanes wide. The same source
/// of IEEE operations gives the same bits in every build (Rust never contracts `a·b + c` into
/// an FMA). Callers must have checked the backend ([`Exec::check_backend`]).
macro_rules! isa_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident $(<$(const $g:ident: $gt:ty),+>)?
        ($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name $(<$(const $g: $gt),+>)? (backend: $crate::platform::Backend, $($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body $(<$(const $g: $gt),+>)? ($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn avx512 $(<$(const $g: $gt),+>)? ($($arg: $ty),*) -> $ret {
                    body $(::<$($g),+>)? ($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2 $(<$(const $g: $gt),+>)? ($($arg: $ty),*) -> $ret {
                    body $(::<$($g),+>)? ($($arg),*)
                }
                match backend {
                    // SAFETY: the caller checked that the backend is supported.
                    $crate::platform::Backend::Avx512 => return unsafe { avx512 $(::<$($g),+>)? ($($arg),*) },
                    // SAFETY: as above.
                    $crate::platform::Backend::Avx2Fma => return unsafe { avx2 $(::<$($g),+>)? ($($arg),*) },
                    $crate::platform::Backend::Portable => {}
                }
            }
            let _ = backend;
            body $(::<$($g),+>)? ($($arg),*)
        }
    };
}
pub(crate) use isa_dispatch;

/// How a kernel call is executed: which backend, how many threads.
///
/// Results are bitwise identical for every `Exec` (every backend, every thread count);
/// `Exec` only changes speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exec {
    pub(crate) backend: Backend,
    pub(crate) threads: usize,
}

impl Default for Exec {
    fn default() -> Self {
        Exec::new()
    }
}

impl Exec {
    /// The detected backend, one thread.
    pub fn new() -> Exec {
        Exec { backend: Backend::detect(), threads: 1 }
    }

    /// Use `backend` (must be supported: check with [`Backend::is_supported`]; kernels return
    /// [`crate::TmError::BackendUnavailable`] otherwise).
    pub fn with_backend(self, backend: Backend) -> Exec {
        Exec { backend, ..self }
    }

    /// Split rows over `threads` OS threads (`0` is read as 1). Rows are independent and every
    /// row is computed by the same code whatever thread runs it, so the result does not depend
    /// on the thread count. Each call starts its threads afresh (scoped threads, no pool), so
    /// threads pay off for calls of at least a few milliseconds of work.
    #[cfg(feature = "std")]
    pub fn with_threads(self, threads: usize) -> Exec {
        Exec { threads: threads.max(1), ..self }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The thread count in use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// [`crate::TmError::BackendUnavailable`] if this CPU lacks the backend: the check every
    /// kernel makes before reading its inputs.
    pub(crate) fn check_backend(&self) -> Result<(), crate::TmError> {
        crate::logits::check_backend(self.backend)
    }
}
