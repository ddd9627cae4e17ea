//! Token-level methods of the seed papers (spec `policy.md` §6–7): one file per method.
//!
//! * [`hapo`] — HAPO's entropy normaliser (both sign modes), adaptive temperature, token-level
//!   group-average advantage, asymmetric adaptive clip, advantage redistribution and loss (§7.1).
//! * [`tw_grpo`] — TW-GRPO's token weights, streamed over the vocabulary, its weighted loss
//!   and its soft multi-choice and format rewards (§7.3).
//!
//! Every kernel here follows the crate's family shape (see the crate docs): [`crate::Exec`]
//! first, caller-owned outputs last, typed [`crate::TmError`]s checked before anything is
//! written, and the same bits for every backend and thread count.

pub mod hapo;
pub mod tw_grpo;
#[cfg(target_arch = "x86_64")]
mod tw_grpo_x86_avx2;

/// Runs `f(first_chunk, outputs)` over `threads` contiguous ranges of `chunk`-element units
/// of `out` (`out.len()` a multiple of `chunk`); every unit is computed by the same code, so the
/// result does not depend on `threads`.
#[allow(unused_variables)]
pub(crate) fn par_chunks<F>(threads: usize, chunk: usize, out: &mut [f32], f: &F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let units = out.len().checked_div(chunk).unwrap_or(0);
    #[cfg(feature = "std")]
    if threads > 1 && units > 1 {
        let parts = threads.min(units);
        std::thread::scope(|scope| {
            let mut rest = out;
            let mut start = 0;
            let mut first = None;
            for k in 0..parts {
                let end = units * (k + 1) / parts;
                let (mine, tail) = rest.split_at_mut((end - start) * chunk);
                rest = tail;
                let s = start;
                if k == 0 {
                    first = Some((s, mine));
                } else {
                    scope.spawn(move || f(s, mine));
                }
                start = end;
            }
            // Part 0 runs on the calling thread, which would otherwise sit idle.
            if let Some((s, mine)) = first {
                f(s, mine);
            }
        });
        return;
    }
    f(0, out);
}
