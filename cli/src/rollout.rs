//! Reading a rollout dump for `tokenmath replay`: the tensors a trainer holds at the loss.
//!
//! | name | shape | dtype | |
//! |---|---|---|---|
//! | `logits` | `[B, T, V]` | F32, BF16, F16 | the policy's logits; `logits[b, t]` is the distribution `tokens[b, t]` was drawn from (already shifted: HF's `logits[:, :-1]` against `input_ids[:, 1:]`) |
//! | `logp` | `[B, T]` | float | instead of `logits`: precomputed `log π_θ(tokens)` |
//! | `entropy` | `[B, T]` | float | optional, with `logp`: precomputed entropies |
//! | `tokens` | `[B, T]` | I64, I32 | the response tokens (required with `logits`; `0 ≤ id < V` where the mask is set) |
//! | `mask` | `[B, T]` | BOOL, U8, I8, I32, I64, F32 (0 or 1) | the response mask |
//! | `old_logp` | `[B, T]` | float | optional: `log π_old` of the rollout (default: `logp`, on-policy) |
//! | `ref_logp` | `[B, T]` | float | optional: `log π_ref`, for the KL loss of `grpo`/`rloo` |
//! | `rewards` | `[B]` or `[B, T]` | float | per response, or per token (summed over the valid tokens, as verl) |
//! | `group_ids` | `[B]` | I64, I32 (0 ≤ id < 2³²) | the prompt of each response (or `--group-size G`: consecutive blocks of `G`) |
//!
//! "float" is F32, F64, BF16 or F16, converted to `f32`. `B` and `T` are read from `mask`.
//! Values at masked positions are never read for the step (padding may hold anything).
//! Other tensors in the file are ignored. The names follow tokenmath's own vocabulary
//! \[library choice\]; verl's `DataProto` calls them `responses`, `response_mask`,
//! `old_log_probs`, `ref_log_prob`, `token_level_rewards` and `uid` (a string: map it to
//! integers).
//!
//! The logits are memory-mapped and handed out a chunk of rows at a time
//! ([`crate::input::Input::rows_as`]); every other tensor is `[B, T]` or smaller and is
//! decoded whole. Every problem becomes a one-line [`CliError`].

use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::CliError;
use crate::input::{self, Input};

/// The tensor names, as documented on the module.
pub mod names {
    /// See the module docs.
    pub const LOGITS: &str = "logits";
    /// See the module docs.
    pub const LOGP: &str = "logp";
    /// See the module docs.
    pub const ENTROPY: &str = "entropy";
    /// See the module docs.
    pub const TOKENS: &str = "tokens";
    /// See the module docs.
    pub const MASK: &str = "mask";
    /// See the module docs.
    pub const OLD_LOGP: &str = "old_logp";
    /// See the module docs.
    pub const REF_LOGP: &str = "ref_logp";
    /// See the module docs.
    pub const REWARDS: &str = "rewards";
    /// See the module docs.
    pub const GROUP_IDS: &str = "group_ids";
}

/// Where the current policy's log-probs come from.
pub enum Policy<'a> {
    /// Computed from the logits (memory-mapped, read a chunk at a time).
    Logits(Input<'a>),
    /// Precomputed log-probs and, optionally, entropies.
    Precomputed {
        /// `log π_θ`, `[B·T]`.
        logp: Vec<f32>,
        /// Entropies, `[B·T]`.
        entropy: Option<Vec<f32>>,
    },
}

/// A decoded rollout dump.
pub struct Rollout<'a> {
    /// Responses.
    pub b: usize,
    /// Tokens per response.
    pub t: usize,
    /// The policy's log-probs, or the logits to compute them from.
    pub policy: Policy<'a>,
    /// Token ids (`[B·T]`; 0 at masked positions when absent from the file).
    pub tokens: Option<Vec<i64>>,
    /// The response mask, `[B·T]`, 0 or 1.
    pub mask: Vec<u8>,
    /// `log π_old`, if given.
    pub old_logp: Option<Vec<f32>>,
    /// `log π_ref`, if given.
    pub ref_logp: Option<Vec<f32>>,
    /// One reward per response (per-token rewards summed over the valid tokens).
    pub rewards: Vec<f32>,
    /// Group of each response, if the file has `group_ids`.
    pub group_ids: Option<Vec<u32>>,
    /// The tensors read, in words (for the summary).
    pub description: String,
}

/// Parses the mapped dump `bytes` (read from `path`).
pub fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<Rollout<'a>, CliError> {
    let bad = |message: String| CliError::input(path, message);
    let file = SafeTensors::deserialize(bytes).map_err(|e| bad(input::describe(&e)))?;
    let listing = || {
        let mut names = file.names();
        names.sort_unstable();
        if names.is_empty() {
            "the file holds no tensors".to_owned()
        } else {
            format!("tensors in the file: {}", names.join(", "))
        }
    };
    let get = |name: &str| file.tensor(name).ok();
    let require = |name: &str, why: &str| {
        get(name).ok_or_else(|| bad(format!("no tensor named `{name}` ({why}); {}", listing())))
    };

    let mask_view = require(names::MASK, "the response mask [B, T]; see tokenmath replay --help")?;
    let (b, t) = match *mask_view.shape() {
        [b, t] if b > 0 && t > 0 => (b, t),
        _ => {
            return Err(bad(format!("tensor `mask` has shape {:?}; expected [B, T] with B, T >= 1", mask_view.shape())))
        }
    };
    let bt = [b, t];
    let mask = decode_mask(&mask_view, &bt).map_err(&bad)?;
    let valid = |i: usize| mask[i] != 0;
    let mut described = vec![format!("mask [{b}, {t}] {}", mask_view.dtype())];

    let policy = match get(names::LOGITS) {
        Some(view) => {
            let logits = input::logits_input(names::LOGITS, &view).map_err(&bad)?;
            if logits.shape.len() != 3 || logits.shape[..2] != bt {
                return Err(bad(format!(
                    "tensor `logits` has shape {:?}; expected [{b}, {t}, V] to match `mask`",
                    logits.shape
                )));
            }
            described.push(format!("logits {:?} {}", logits.shape, logits.dtype.name()));
            Policy::Logits(logits)
        }
        None => {
            let view =
                require(names::LOGP, "the rollout needs either `logits` [B, T, V] or precomputed `logp` [B, T]")?;
            let logp = decode_floats(names::LOGP, &view, &bt, &valid).map_err(&bad)?;
            described.push(format!("logp {}", view.dtype()));
            let entropy = match get(names::ENTROPY) {
                Some(view) => {
                    described.push(format!("entropy {}", view.dtype()));
                    Some(decode_floats(names::ENTROPY, &view, &bt, &valid).map_err(&bad)?)
                }
                None => None,
            };
            Policy::Precomputed { logp, entropy }
        }
    };

    let tokens = match (get(names::TOKENS), &policy) {
        (Some(view), _) => {
            let vocab = match &policy {
                Policy::Logits(l) => Some(l.vocab),
                Policy::Precomputed { .. } => None,
            };
            let ids = decode_ints(names::TOKENS, &view, &bt).map_err(&bad)?;
            for (i, &id) in ids.iter().enumerate().filter(|&(i, _)| valid(i)) {
                let limit = vocab.map_or(i64::from(u32::MAX), |v| v as i64 - 1);
                if id < 0 || id > limit {
                    let range = vocab.map_or("must be >= 0 and < 2^32".to_owned(), |v| format!("vocabulary {v}"));
                    return Err(bad(format!(
                        "token {id} at [{}, {}] of `tokens` is out of range ({range}) where the mask is set",
                        i / t,
                        i % t
                    )));
                }
            }
            described.push(format!("tokens {}", view.dtype()));
            Some(ids)
        }
        (None, Policy::Logits(_)) => {
            return Err(bad(format!(
                "no tensor named `tokens` (the response tokens [B, T], whose log-probs the logits give); {}",
                listing()
            )))
        }
        (None, Policy::Precomputed { .. }) => None,
    };

    let mut optional_logp = |name: &str| -> Result<Option<Vec<f32>>, CliError> {
        match get(name) {
            Some(view) => {
                described.push(format!("{name} {}", view.dtype()));
                Ok(Some(decode_floats(name, &view, &bt, &valid).map_err(&bad)?))
            }
            None => Ok(None),
        }
    };
    let old_logp = optional_logp(names::OLD_LOGP)?;
    let ref_logp = optional_logp(names::REF_LOGP)?;

    let rewards_view = require(names::REWARDS, "a reward per response [B] or per token [B, T]")?;
    let token_rewards = rewards_view.shape() == bt;
    let rewards = if token_rewards {
        let per_token = decode_floats(names::REWARDS, &rewards_view, &bt, &valid).map_err(&bad)?;
        // verl: the sequence score is the sum of the token-level rewards over the response.
        (0..b).map(|r| (r * t..(r + 1) * t).filter(|&i| valid(i)).map(|i| per_token[i]).sum()).collect()
    } else {
        decode_floats(names::REWARDS, &rewards_view, &[b], &|_| true).map_err(|e| {
            bad(if e.contains("has shape") {
                e.replace(&format!("expected [{b}]"), &format!("expected [{b}] or [{b}, {t}]"))
            } else {
                e
            })
        })?
    };
    described.push(format!("rewards {:?} {}", rewards_view.shape(), rewards_view.dtype()));

    let group_ids = match get(names::GROUP_IDS) {
        Some(view) => {
            let ids = decode_ints(names::GROUP_IDS, &view, &[b]).map_err(&bad)?;
            let ids = ids
                .iter()
                .enumerate()
                .map(|(r, &id)| {
                    u32::try_from(id)
                        .map_err(|_| bad(format!("group id {id} of response {r} in `group_ids` is not in 0..2^32")))
                })
                .collect::<Result<Vec<u32>, CliError>>()?;
            described.push(format!("group_ids {}", view.dtype()));
            Some(ids)
        }
        None => None,
    };

    Ok(Rollout {
        b,
        t,
        policy,
        tokens,
        mask,
        old_logp,
        ref_logp,
        rewards,
        group_ids,
        description: described.join(", "),
    })
}

fn check_shape(name: &str, view: &TensorView<'_>, shape: &[usize]) -> Result<(), String> {
    if view.shape() != shape {
        return Err(format!("tensor `{name}` has shape {:?}; expected {shape:?}", view.shape()));
    }
    Ok(())
}

/// Decodes a float tensor of `shape` to `f32`; a NaN or infinite value where `valid` holds
/// is an error (the step would be NaN with no hint why).
fn decode_floats(
    name: &str,
    view: &TensorView<'_>,
    shape: &[usize],
    valid: &dyn Fn(usize) -> bool,
) -> Result<Vec<f32>, String> {
    check_shape(name, view, shape)?;
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(format!("tensor `{name}` has dtype {other}; expected F32, F64, BF16 or F16")),
    };
    if let Some(i) = (0..values.len()).find(|&i| valid(i) && !values[i].is_finite()) {
        let at = if shape.len() == 2 { format!("[{}, {}]", i / shape[1], i % shape[1]) } else { format!("[{i}]") };
        return Err(format!("tensor `{name}` holds {} at {at}; values must be finite", values[i]));
    }
    Ok(values)
}

/// Decodes an integer tensor (`I64` or `I32`) of `shape`.
fn decode_ints(name: &str, view: &TensorView<'_>, shape: &[usize]) -> Result<Vec<i64>, String> {
    check_shape(name, view, shape)?;
    let data = view.data();
    match view.dtype() {
        Dtype::I64 => Ok(data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()),
        Dtype::I32 => {
            Ok(data.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect())
        }
        other => Err(format!("tensor `{name}` has dtype {other}; expected I64 or I32")),
    }
}

/// Decodes the mask: every value must be 0 or 1.
fn decode_mask(view: &TensorView<'_>, shape: &[usize]) -> Result<Vec<u8>, String> {
    check_shape(names::MASK, view, shape)?;
    let data = view.data();
    let values: Vec<f64> = match view.dtype() {
        Dtype::BOOL | Dtype::U8 => data.iter().map(|&v| f64::from(v)).collect(),
        Dtype::I8 => data.iter().map(|&v| f64::from(v as i8)).collect(),
        Dtype::I32 | Dtype::I64 => decode_ints(names::MASK, view, shape)?.into_iter().map(|v| v as f64).collect(),
        Dtype::F32 => decode_floats(names::MASK, view, shape, &|_| false)?.into_iter().map(f64::from).collect(),
        other => return Err(format!("tensor `mask` has dtype {other}; expected BOOL, U8, I8, I32, I64 or F32")),
    };
    match values.iter().position(|&v| v != 0.0 && v != 1.0) {
        Some(i) => {
            Err(format!("tensor `mask` holds {} at [{}, {}]; expected 0 or 1", values[i], i / shape[1], i % shape[1]))
        }
        None => Ok(values.iter().map(|&v| u8::from(v == 1.0)).collect()),
    }
}
