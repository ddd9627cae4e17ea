//! Combining the episodic and the global bonus (`src/algos/e3b_noveld.py::learn` of
//! `facebookresearch/e3b`):
//!
//! ```text
//! Mult (default):  b = b_e·b_g
//! Add:             b = b_e + κ·b_g          κ = global_bonus_coeff (source default 1.0)
//! ```

use crate::exploration::check_finite;
use crate::TmError;

/// How [`combine_bonuses`] combines the two bonuses.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Combine {
    /// `b_e·b_g` (the source's default) \[code\].
    #[default]
    Mult,
    /// `b_e + coeff·b_g` \[code\]; `coeff` finite (source 1.0).
    Add {
        /// `κ`, the source's `global_bonus_coeff`.
        coeff: f32,
    },
}

/// `out[i]` = the combination of `episodic[i]` and `global[i]` under `mode`, computed in
/// `f64` and rounded once. Inputs must be finite; a result that overflows `f32` is
/// [`TmError::NonFinite`] (`what = "out"`) and nothing is written.
pub fn combine_bonuses(episodic: &[f32], global: &[f32], mode: Combine, out: &mut [f32]) -> Result<(), TmError> {
    if let Combine::Add { coeff } = mode {
        if !coeff.is_finite() {
            return Err(TmError::InvalidArgument("the Add combination's coefficient must be finite"));
        }
    }
    crate::error::check_len("episodic", out.len(), episodic.len())?;
    crate::error::check_len("global", out.len(), global.len())?;
    check_finite("episodic", episodic)?;
    check_finite("global", global)?;
    let f = |e: f32, g: f32| -> f32 {
        match mode {
            Combine::Mult => (e as f64 * g as f64) as f32,
            Combine::Add { coeff } => (e as f64 + coeff as f64 * g as f64) as f32,
        }
    };
    if let Some(index) = episodic.iter().zip(global).position(|(&e, &g)| !f(e, g).is_finite()) {
        return Err(TmError::NonFinite { what: "out", index });
    }
    for ((o, &e), &g) in out.iter_mut().zip(episodic).zip(global) {
        *o = f(e, g);
    }
    Ok(())
}
