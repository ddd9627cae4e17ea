//! The panic boundary, pointer checks, options-struct reading and scratch outputs shared
//! by every entry point.

use core::mem::{align_of, size_of};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::*;

/// Result type of an entry point's body.
pub(crate) type Res<T = ()> = Result<T, tkm_status>;

/// Runs `f` behind the panic boundary: its `Ok` is `TKM_STATUS_OK`, its `Err` the status, and
/// a panic becomes `TKM_STATUS_INTERNAL_PANIC` (the payload is dropped inside a second
/// boundary, so even a payload whose destructor panics cannot unwind into C).
pub(crate) fn guard(f: impl FnOnce() -> Res) -> tkm_status {
    guard_or(TKM_STATUS_INTERNAL_PANIC, || match f() {
        Ok(()) => TKM_STATUS_OK,
        Err(s) => s,
    })
}

/// Runs `f` behind the panic boundary, returning `fallback` if it panics.
pub(crate) fn guard_or<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            fallback
        }
    }
}

/// Checks that `len` elements of `T` starting at `p` can form a slice: non-NULL (unless
/// `len == 0`), aligned, and at most `isize::MAX` bytes.
fn check_ptr<T>(p: *const T, len: usize) -> Res {
    if p.is_null() {
        return if len == 0 { Ok(()) } else { Err(TKM_STATUS_NULL_POINTER) };
    }
    if !(p as usize).is_multiple_of(align_of::<T>()) {
        return Err(TKM_STATUS_MISALIGNED);
    }
    match len.checked_mul(size_of::<T>()) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(()),
        _ => Err(TKM_STATUS_SIZE_OVERFLOW),
    }
}

/// A required input array of `len` elements (NULL only when `len == 0`).
///
/// # Safety
/// `p` must be valid for reads of `len` elements for `'a`.
pub(crate) unsafe fn input<'a, T>(p: *const T, len: usize) -> Res<&'a [T]> {
    check_ptr(p, len)?;
    if len == 0 {
        return Ok(&[]);
    }
    Ok(core::slice::from_raw_parts(p, len))
}

/// An optional input array: NULL means absent.
///
/// # Safety
/// As [`input`] when `p` is not NULL.
pub(crate) unsafe fn opt_input<'a, T>(p: *const T, len: usize) -> Res<Option<&'a [T]>> {
    if p.is_null() {
        Ok(None)
    } else {
        input(p, len).map(Some)
    }
}

/// A required mutable array (for outputs computed in place).
///
/// # Safety
/// `p` must be valid for reads and writes of `len` elements for `'a`, and not aliased.
pub(crate) unsafe fn inout<'a, T>(p: *mut T, len: usize) -> Res<&'a mut [T]> {
    check_ptr(p, len)?;
    if len == 0 {
        return Ok(&mut []);
    }
    Ok(core::slice::from_raw_parts_mut(p, len))
}

/// A UTF-8 string of `len` bytes (NULL only when `len == 0`); invalid UTF-8 is
/// `TKM_STATUS_INVALID_ARGUMENT`.
pub(crate) unsafe fn utf8<'a>(p: *const u8, len: usize) -> Res<&'a str> {
    core::str::from_utf8(input(p, len)?).map_err(|_| TKM_STATUS_INVALID_ARGUMENT)
}

/// Writes one value through a required output pointer.
pub(crate) unsafe fn write<T>(p: *mut T, v: T) -> Res {
    let dst = inout(p, 1)?;
    dst[0] = v;
    Ok(())
}

/// Checks an output destination of `len` elements (non-NULL unless `len == 0`, aligned, size)
/// without allocating its scratch: for outputs whose written length is only known after the
/// kernel ran (at most `len`).
pub(crate) fn check_out<T>(p: *mut T, len: usize) -> Res {
    check_ptr(p, len)
}

/// An output array that is written only on success, by [`Out::commit`].
pub(crate) struct Out<T> {
    dst: *mut T,
    /// The scratch the kernel writes into.
    pub(crate) buf: Vec<T>,
}

impl<T: Copy + Default> Out<T> {
    /// Checks the destination (non-NULL, aligned, size) and allocates the scratch.
    pub(crate) fn new(dst: *mut T, len: usize) -> Res<Out<T>> {
        check_ptr(dst, len)?;
        Ok(Out { dst, buf: scratch(len)? })
    }

    /// An optional output: NULL means "not wanted".
    pub(crate) fn optional(dst: *mut T, len: usize) -> Res<Option<Out<T>>> {
        if dst.is_null() {
            Ok(None)
        } else {
            Out::new(dst, len).map(Some)
        }
    }

    /// Copies the scratch to the destination.
    ///
    /// # Safety
    /// The destination must be valid for writes of `buf.len()` elements.
    pub(crate) unsafe fn commit(self) {
        if !self.buf.is_empty() {
            core::ptr::copy(self.buf.as_ptr(), self.dst, self.buf.len());
        }
    }
}

/// A zero-initialised scratch vector; allocation failure is `TKM_STATUS_OUT_OF_MEMORY`.
pub(crate) fn scratch<T: Copy + Default>(len: usize) -> Res<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| TKM_STATUS_OUT_OF_MEMORY)?;
    v.resize(len, T::default());
    Ok(v)
}

/// Elements spanned by a `[rows, cols]` matrix with `row_stride`:
/// `(rows − 1)·row_stride + cols` (0 when `rows == 0`).
pub(crate) fn matrix_len(rows: usize, cols: usize, row_stride: usize) -> Res<usize> {
    if row_stride < cols {
        return Err(TKM_STATUS_BAD_STRIDE);
    }
    if rows == 0 {
        return Ok(0);
    }
    (rows - 1).checked_mul(row_stride).and_then(|n| n.checked_add(cols)).ok_or(TKM_STATUS_SIZE_OVERFLOW)
}

/// `a · b` or `TKM_STATUS_SIZE_OVERFLOW`.
pub(crate) fn mul(a: usize, b: usize) -> Res<usize> {
    a.checked_mul(b).ok_or(TKM_STATUS_SIZE_OVERFLOW)
}

/// Whether two byte ranges overlap.
pub(crate) fn overlaps<A, B>(a: *const A, a_len: usize, b: *const B, b_len: usize) -> bool {
    let (a0, b0) = (a as usize, b as usize);
    let end = |p: usize, n: usize, size: usize| p.saturating_add(n.saturating_mul(size));
    let (a1, b1) = (end(a0, a_len, size_of::<A>()), end(b0, b_len, size_of::<B>()));
    a_len > 0 && b_len > 0 && a0 < b1 && b0 < a1
}

/// An options struct of the C ABI: `#[repr(C)]`, `size_t struct_size` first, then its fields.
/// Implemented by [`options!`] only.
pub(crate) trait Options: Copy + Default {
    /// Every `struct_size` an older header's struct can have: `sizeof(size_t)` and the end of
    /// each field.
    const FIELD_ENDS: &'static [usize];
}

/// The size of the field that `_field` projects to (for the tables of [`options!`]).
pub(crate) const fn field_size<S, F>(_field: fn(&S) -> &F) -> usize {
    size_of::<F>()
}

/// Registers an options struct from one list of all its fields and their defaults:
///
/// ```text
/// options!(tkm_kl_options { kind: TKM_KL_K3, verl_clamps: 1 });
/// options!(tkm_ppo_clip_options { let c = ClipCfg::default(); eps_low: c.eps_low, … });
/// ```
///
/// gives its `Default` (`struct_size = sizeof`, the listed values: a struct literal, so a field
/// left out of the list does not compile) and its [`Options`] field table (computed from the
/// same list, so no end is written by hand). [`read_options`] and [`init_options`] take both
/// from the trait. The struct itself and its `extern "C" fn …_init` (a call to
/// [`init_options`]) stay written out next to the macro, because cbindgen reads the source
/// without expanding macros and the header must declare them.
macro_rules! options {
    ($name:ident { let $v:ident = $e:expr; $($field:ident: $default:expr),+ $(,)? }) => {
        options!(@impl $name, { let $v = $e; }, $($field: $default),+);
    };
    ($name:ident { $($field:ident: $default:expr),+ $(,)? }) => {
        options!(@impl $name, {}, $($field: $default),+);
    };
    (@impl $name:ident, { $($prelude:stmt;)? }, $($field:ident: $default:expr),+) => {
        impl Default for $name {
            fn default() -> Self {
                $($prelude)?
                $name { struct_size: core::mem::size_of::<$name>(), $($field: $default),+ }
            }
        }

        impl $crate::util::Options for $name {
            const FIELD_ENDS: &'static [usize] = &[
                core::mem::size_of::<usize>(),
                $(core::mem::offset_of!($name, $field) + $crate::util::field_size(|s: &$name| &s.$field)),+
            ];
        }
    };
}
pub(crate) use options;

/// Writes the defaults into a caller's options struct (the body of every `…_init`).
///
/// # Safety
/// `p` is NULL (`TKM_STATUS_NULL_POINTER`) or valid for writing one `T`.
pub(crate) unsafe fn init_options<T: Options>(p: *mut T) -> tkm_status {
    guard(|| {
        if p.is_null() {
            return Err(TKM_STATUS_NULL_POINTER);
        }
        if !(p as usize).is_multiple_of(align_of::<T>()) {
            return Err(TKM_STATUS_MISALIGNED);
        }
        p.write(T::default());
        Ok(())
    })
}

/// Reads a caller's options struct that starts with `size_t struct_size`.
///
/// * `p == NULL`: the defaults.
/// * `struct_size == sizeof(T)`: the struct as given.
/// * `struct_size < sizeof(T)` (a caller compiled against an older header): the fields that
///   lie entirely inside `struct_size` are read, the others keep their defaults;
///   `struct_size` must end exactly at a field boundary (one of `T::FIELD_ENDS`).
/// * `struct_size > sizeof(T)` (a caller compiled against a newer header): accepted only if
///   every byte past `sizeof(T)` is zero (the newer fields are at their "unset" value), as
///   Linux's `copy_struct_from_user`; at most 4096 bytes.
///
/// Any other size is `TKM_STATUS_BAD_STRUCT_SIZE`.
///
/// # Safety
/// `p` is NULL or points to at least `struct_size` readable bytes starting with a `size_t`.
pub(crate) unsafe fn read_options<T: Options>(p: *const T) -> Res<T> {
    let default = T::default();
    if p.is_null() {
        return Ok(default);
    }
    if !(p as usize).is_multiple_of(align_of::<T>()) {
        return Err(TKM_STATUS_MISALIGNED);
    }
    let size = core::ptr::read(p as *const usize);
    let full = size_of::<T>();
    if size == full {
        return Ok(core::ptr::read(p));
    }
    if size < full {
        if !T::FIELD_ENDS.contains(&size) {
            return Err(TKM_STATUS_BAD_STRUCT_SIZE);
        }
        let mut out = default;
        // Fields after `struct_size` up to `size` come from the caller; the size field
        // itself keeps the default (the full size).
        let skip = size_of::<usize>();
        core::ptr::copy_nonoverlapping(
            (p as *const u8).add(skip),
            (&mut out as *mut T as *mut u8).add(skip),
            size - skip,
        );
        return Ok(out);
    }
    if size > 4096 {
        return Err(TKM_STATUS_BAD_STRUCT_SIZE);
    }
    let tail = core::slice::from_raw_parts((p as *const u8).add(full), size - full);
    if tail.iter().any(|&b| b != 0) {
        return Err(TKM_STATUS_BAD_STRUCT_SIZE);
    }
    Ok(core::ptr::read(p))
}

/// A `uint32_t` boolean: 0 or 1, anything else is an invalid argument.
pub(crate) fn flag(v: u32) -> Res<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(TKM_STATUS_INVALID_ARGUMENT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field tables of [`options!`]: one end per field, in order, the first after
    /// `struct_size`, the last the end of the struct up to its trailing padding (the tables
    /// the C ABI accepted before they were generated, byte for byte).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn option_field_tables_end_every_field() {
        fn check<T: Options>(fields: usize, want: &[usize]) {
            let ends = T::FIELD_ENDS;
            assert_eq!(ends.len(), fields + 1, "{}", core::any::type_name::<T>());
            assert_eq!(ends, want, "{}", core::any::type_name::<T>());
            assert!(size_of::<T>() - ends[fields] < align_of::<T>());
        }
        use crate::advantages::{tkm_grpo_options, tkm_overlong_options};
        use crate::exec::tkm_exec_options;
        use crate::policy::*;
        check::<tkm_exec_options>(4, &[8, 12, 16, 24, 28]);
        check::<tkm_ppo_clip_options>(4, &[8, 12, 16, 20, 24]);
        check::<tkm_agg_norm>(4, &[8, 16, 24, 28, 32]);
        check::<tkm_kl_options>(2, &[8, 12, 16]);
        check::<tkm_gspo_options>(3, &[8, 12, 16, 20]);
        check::<tkm_cispo_options>(3, &[8, 12, 16, 20]);
        check::<tkm_sapo_options>(3, &[8, 12, 16, 20]);
        check::<tkm_grpo_options>(8, &[8, 12, 16, 20, 24, 28, 32, 36, 40]);
        check::<tkm_overlong_options>(3, &[8, 16, 24, 28]);
        check::<crate::dop::tkm_dop_options>(5, &[8, 12, 16, 20, 24, 32]);
    }

    #[test]
    fn a_panic_becomes_internal_panic_and_does_not_unwind() {
        let s = guard(|| panic!("boom"));
        assert_eq!(s, TKM_STATUS_INTERNAL_PANIC);
        // A payload whose destructor panics is dropped inside a second boundary.
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("payload destructor");
            }
        }
        let s = guard(|| std::panic::panic_any(Bomb));
        assert_eq!(s, TKM_STATUS_INTERNAL_PANIC);
        assert_eq!(guard_or(7u32, || panic!("x")), 7);
    }

    #[test]
    fn matrix_len_checks_stride_and_overflow() {
        assert_eq!(matrix_len(0, 5, 5), Ok(0));
        assert_eq!(matrix_len(3, 5, 8), Ok(21));
        assert_eq!(matrix_len(3, 5, 4), Err(TKM_STATUS_BAD_STRIDE));
        assert_eq!(matrix_len(usize::MAX, 2, 2), Err(TKM_STATUS_SIZE_OVERFLOW));
    }

    #[test]
    fn overlap_detection() {
        let v = [0u32; 8];
        assert!(overlaps(v.as_ptr(), 4, v[3..].as_ptr(), 1));
        assert!(!overlaps(v.as_ptr(), 4, v[4..].as_ptr(), 4));
        assert!(!overlaps(v.as_ptr(), 0, v.as_ptr(), 4));
    }
}
