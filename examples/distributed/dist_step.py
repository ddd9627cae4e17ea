#!/usr/bin/env python3
"""tokenmath across processes with torch.distributed as the transport: tokenmath computes
fixed-size partials, torch.distributed moves them, tokenmath merges them in a fixed order.
The Python twin of examples/mpi/mpi_step.c. Run with any number of ranks (at most 50):

    torchrun --nproc-per-node 4 examples/distributed/dist_step.py          # gloo, CPU tensors
    torchrun --nproc-per-node 1 examples/distributed/dist_step.py --device cuda   # NCCL

1. Vocabulary parallel (a tensor-parallel LM head, V = 151936, Qwen's vocabulary): each rank
   holds the logits of a vocabulary shard. It computes the per-block partials of its shard
   (tokenmath.logits_partial_blocks), dist.all_gather_into_tensor moves them, every rank
   merges them in rank order (logits_merge_block_partials) and finalises (logits_finalize),
   then runs the backward of its own shard with the merged statistics (logits_bwd_shard).
   - shards cut at multiples of tokenmath.LOGITS_BLOCK: the statistics and every rank's
     gradient slice are checked bitwise against one process on the whole vocabulary;
   - shards cut anywhere (one tuple per shard: logits_partial + logits_merge_shards): the
     statistics within tokenmath-reference's sharded_stats_tolerance of an f64 reference,
     the gradient slices bitwise against the one-process backward given the same
     statistics and within grad_tolerance of the f64 gradient.
   Both for float32 and bfloat16 logits.
2. Data parallel (an RL batch split across ranks): GRPO group moments of each rank's
   responses (group_moments), all-gathered and merged in rank order (group_moments_merge),
   then each rank's advantages (grpo_advantage_from_moments); verl's token-mean loss with
   the global token count (agg_loss / agg_weights with global_tokens, dp_size) from an
   all-reduce of one integer.

`--device cuda` uses NCCL and moves CUDA tensors. The tokenmath calls of the Python package
take CPU memory today, so on that path the logits are staged through the host (the C ABI's
CUDA entry points will remove that copy); the collectives and every check are the same.
NCCL allows one rank per GPU. See docs/distributed.md.

Every rank checks its own slice; rank 0 prints a table. Exits non-zero (on every rank) on
any mismatch.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

import tokenmath as tm

V, ROWS = 151936, 8
B, T = 50, 48  # data parallel: responses, tokens per response
TIMED_ROWS, TIMED_REPS = 4096, 20
EPS32, MIN_NORMAL = 2.0**-23, 2.0**-126

# One case per row (as in the MPI example): a large common offset (row 1), a masked
# vocabulary stripe (4), one dominant token (5), a non-finite row (6), no target (2),
# a masked-out row (3), per-row temperatures.
TEMPS = np.array([1.0, 1.0, 0.7, 1.0, 1.3, 0.7, 1.0, 2.0], np.float32)
TARGETS = np.array([17, 150000, -100, 5, 2048 * 19, 123456, 9, V - 1], np.int32)
ROW_MASK = np.array([1, 1, 1, 0, 1, 1, 1, 1], np.uint8)


class Checker:
    """Counts this rank's mismatches and keeps the worst figures."""

    def __init__(self, rank: int) -> None:
        self.rank, self.failures, self.worst = rank, 0, {}

    def fail(self, what: str, detail: str = "") -> None:
        self.failures += 1
        if self.failures <= 20:
            print(f"rank {self.rank}: MISMATCH {what} {detail}", file=sys.stderr)

    def note(self, key: str, value: float) -> None:
        self.worst[key] = max(self.worst.get(key, 0.0), float(value))


def logits_data() -> np.ndarray:
    """Gumbel-distributed logits (a realistic heavy tail), the same on every rank."""
    x = (np.random.default_rng(20261204).gumbel(size=(ROWS, V)) * 1.5).astype(np.float64)
    x[1] += 1e4
    x[5, 123456] += 25.0
    x = x.astype(np.float32)
    x[4, 3::7] = -np.inf
    x[6, V - 1] = np.nan
    return x


def bits(t: torch.Tensor) -> np.ndarray:
    """The bit patterns of a float tensor (bfloat16 as uint16), NaN payloads included."""
    t = t.detach().cpu().contiguous()
    return t.view(torch.int16 if t.element_size() == 2 else torch.int32).numpy()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and np.array_equal(bits(a), bits(b))


# ---- the f64 reference and its error model (tokenmath-reference, as in mpi_step.c) -------


def reference(x: np.ndarray, temp: float, target: int):
    """f64 statistics of one row (None for a row with NaN/+inf), with the kernels' 1/tau."""
    inv = float(np.float32(1.0) / np.float32(temp))
    z = x.astype(np.float64) * inv
    if np.isnan(z).any() or (z == np.inf).any():
        return None
    m = z.max()
    fin = np.isfinite(z)
    log_s = math.log(np.exp(z - m).sum())
    lp = (z[fin] - m) - log_s
    r = {"m": m, "log_s": log_s, "lse": m + log_s, "entropy": float(-(np.exp(lp) * lp).sum())}
    r["max_abs_z"] = float(np.abs(z[fin]).max())
    r["logp"] = ((z[target] - m) - log_s) if target >= 0 else 0.0
    r["inv"], r["z"] = inv, z
    return r


def sharded_tolerance(r: dict, tempered: bool, shards: int) -> dict:
    """reference::sharded_stats_tolerance (rounding_depth, stats_tolerance + merge levels)."""
    blocks, lnv = math.ceil(V / tm.LOGITS_BLOCK), math.log(V)
    k = math.ceil(2048 / 8) + 8 + 4 * math.ceil(math.log2(blocks)) + 2 * math.log(V + 1)
    z, e = (r["max_abs_z"] if tempered else 0.0), EPS32
    extra = 4 * shards * e * (1 + r["entropy"] + lnv)
    return {
        "lse": e * (k + 2 * abs(r["lse"]) + 2 * z) + MIN_NORMAL + extra,
        "logp": e * (k + 2 * abs(r["logp"]) + 2 * abs(r["lse"]) + 4 * z) + MIN_NORMAL + extra,
        "entropy": e * (k * (1 + r["entropy"] + lnv) + 4 * z * (1 + lnv)) + MIN_NORMAL + extra,
        "max": e * z + MIN_NORMAL,
        "log_sum": e * (k + 2 * abs(r["log_s"]) + 3 * z) + MIN_NORMAL + extra,
    }


def grad_reference(r, tol, cols: slice, tempered, target, g_lp, g_h, g_lse):
    """reference::grad_tolerance over the columns `cols`: (f64 gradient, tolerance)."""
    e, inv, z = EPS32, r["inv"], r["z"][cols]
    is_t = (np.arange(cols.start, cols.stop) == target)
    minus_inf = z == -np.inf
    zz = np.where(minus_inf, 0.0, z)
    d = (zz - r["m"]) - r["log_s"]
    p = np.where(minus_inf, 0.0, np.exp(d))
    h = r["entropy"]
    c = g_lse - g_lp
    q = c - g_h * (d + h)
    want = p * q * inv + np.where(is_t, g_lp * inv, 0.0)
    zj = e * (np.abs(zz) + abs(r["m"])) if tempered else 0.0
    dd = e * (np.abs(zz - r["m"]) + np.abs(d)) + tol["log_sum"] + zj
    dq = e * (abs(c) + np.abs(q)) + abs(g_h) * (dd + tol["entropy"] + e * np.abs(d + h))
    t = inv * (p * (np.abs(q) * (dd + 2 * e) + dq) + 1e-37 * (1 + np.abs(q))) + 2 * e * np.abs(want)
    t = t + np.where(is_t, 2 * e * abs(g_lp) * inv, 0.0)
    t_inf = 2 * e * np.abs(want) + MIN_NORMAL
    return want, np.where(minus_inf, t_inf, t + MIN_NORMAL)


# ---- vocabulary parallel --------------------------------------------------------------------


def upstreams(lse: torch.Tensor):
    """d(loss)/d(stats) for loss = sum_rows (-logp/ROWS - 0.01 H + 1e-4 lse^2): token-mean
    NLL, an entropy bonus, a z-loss."""
    g_lp = torch.full((ROWS,), -1.0 / ROWS, dtype=torch.float32)
    g_h = torch.full((ROWS,), -0.01, dtype=torch.float32)
    g_lse = (torch.tensor(2e-4, dtype=torch.float32) * lse).to(torch.float32)
    return g_lp, g_h, g_lse


def all_gather_partials(mine: torch.Tensor, nb: list[int], device: torch.device) -> list[torch.Tensor]:
    """All-gathers every rank's partials `[ROWS, nb_k, 20]` uint8. all_gather_into_tensor
    needs one size for all ranks: each sends ROWS x max(nb) tuples, its own dense
    `[ROWS, nb_k]` at the front (the rest is padding that is never read)."""
    world = len(nb)
    per = ROWS * max(nb) * tm.ROW_STATS_BYTES
    send = torch.zeros(per, dtype=torch.uint8, device=device)
    send[: mine.numel()] = mine.reshape(-1).to(device)
    recv = torch.empty(world * per, dtype=torch.uint8, device=device)
    dist.all_gather_into_tensor(recv, send)
    recv = recv.cpu()  # a no-op for CPU tensors
    return [recv[k * per : k * per + ROWS * nb[k] * tm.ROW_STATS_BYTES].view(ROWS, nb[k], tm.ROW_STATS_BYTES) for k in range(world)]


def vocab_parallel(ck: Checker, dtype: torch.dtype, xf: np.ndarray, device: torch.device) -> dict:
    rank, world = dist.get_rank(), dist.get_world_size()
    name = "f32" if dtype == torch.float32 else "bf16"
    full = torch.from_numpy(xf).to(dtype)  # the whole vocabulary (the one-process oracle)
    xs = full.float().numpy()  # the values the kernels see (bf16-rounded for bf16)
    targets, mask, temps = (torch.from_numpy(a) for a in (TARGETS, ROW_MASK, TEMPS))
    one = tm.logits_fwd(full, targets, temps, row_mask=mask)
    nblocks = -(-V // tm.LOGITS_BLOCK)
    res = {}
    for aligned in (True, False):
        # Aligned: the 75 canonical blocks dealt out in contiguous runs (18, 19, 19, 19 for 4
        # ranks). Any cut: V split evenly, the cuts off every block boundary.
        if aligned:
            bounds = [min(nblocks * k // world * tm.LOGITS_BLOCK, V) for k in range(world + 1)]
        else:
            bounds = [V * k // world for k in range(world + 1)]
        off, cols = bounds[rank], bounds[rank + 1] - bounds[rank]
        shard = full[:, off : off + cols].contiguous()  # as it lives on this rank
        if device.type == "cuda":
            shard = shard.to(device)  # the rank's logits live on its GPU ...
            shard = shard.cpu()  # ... and are staged through the host until the CUDA ABI
        if aligned:
            nb = [tm.logits_partial_blocks_len(bounds[k + 1] - bounds[k]) for k in range(world)]
            mine = tm.logits_partial_blocks(shard, off, V, targets, temps, row_mask=mask)
        else:
            nb = [1] * world
            mine = tm.logits_partial(shard, off, V, targets, temps, row_mask=mask).view(ROWS, 1, tm.ROW_STATS_BYTES)
        parts = all_gather_partials(mine, nb, device)
        if aligned:
            merged = tm.logits_merge_block_partials(parts)
        else:
            merged = tm.logits_merge_shards([p.view(ROWS, tm.ROW_STATS_BYTES) for p in parts])
        f = tm.logits_finalize(merged, targets, row_mask=mask)
        g_lp, g_h, g_lse = upstreams(f.lse)
        dx = tm.logits_bwd_shard(shard, f, off, V, targets, temps, g_logp=g_lp, g_entropy=g_h, g_lse=g_lse, row_mask=mask)
        # The one-process backward with the same statistics and upstreams.
        dx_one = tm.logits_bwd(full, f, targets, temps, g_logp=g_lp, g_entropy=g_h, g_lse=g_lse, row_mask=mask)
        if not same_bits(dx, dx_one[:, off : off + cols]):
            ck.fail(f"{name} gradient slice vs one-process backward (same statistics)", f"cols [{off}, {off + cols})")
        sent = max(nb) * tm.ROW_STATS_BYTES
        res["sent_aligned" if aligned else "sent_any"] = sent
        res["merge_ns_aligned" if aligned else "merge_ns_any"] = merge_time(parts, aligned)
        if aligned:
            for k in ("lse", "entropy", "logp", "max", "log_sum"):
                if not same_bits(getattr(f, k), getattr(one, k)):
                    ck.fail(f"{name} aligned {k} vs one process (bitwise)")
            if f.nonfinite_rows != one.nonfinite_rows:
                ck.fail(f"{name} non-finite row count")
            continue
        if f.nonfinite_rows != one.nonfinite_rows:
            ck.fail(f"{name} non-finite row count")
        for k in ("lse", "entropy", "logp"):
            a, b = getattr(f, k).numpy().astype(np.float64), getattr(one, k).numpy().astype(np.float64)
            both_nan = np.isnan(a) & np.isnan(b)
            ck.note(f"diff_{name}", np.where(both_nan, 0.0, np.abs(a - b)).max())
        for r in range(ROWS):
            if not ROW_MASK[r]:
                if f.lse[r] != 0 or f.entropy[r] != 0:
                    ck.fail(f"{name} masked row", f"row {r}")
                continue
            ref = reference(xs[r], float(TEMPS[r]), int(TARGETS[r]))
            if ref is None:
                if not (math.isnan(f.lse[r]) and math.isnan(f.entropy[r])):
                    ck.fail(f"{name} non-finite row gives NaN", f"row {r}")
                continue
            tempered = TEMPS[r] != 1.0
            tol = sharded_tolerance(ref, tempered, world)
            got = {"lse": f.lse[r], "logp": f.logp[r], "entropy": f.entropy[r], "max": f.max[r], "log_sum": f.log_sum[r]}
            want = {"lse": ref["lse"], "logp": ref["logp"], "entropy": ref["entropy"], "max": ref["m"], "log_sum": ref["log_s"]}
            for k in got:
                ratio = abs(float(got[k]) - want[k]) / tol[k]
                ck.note(f"stats_{name}", ratio)
                if not ratio <= 1.0:
                    ck.fail(f"{name} {k} vs f64", f"row {r}: got {float(got[k])!r} want {want[k]!r} tol {tol[k]:.3g}")
            glp = float(g_lp[r]) if TARGETS[r] >= 0 else 0.0
            want_dx, t = grad_reference(ref, tol, slice(off, off + cols), tempered, int(TARGETS[r]), glp, float(g_h[r]), float(g_lse[r]))
            err = np.abs(dx[r].float().numpy().astype(np.float64) - want_dx)
            # A bfloat16 gradient is the f32 one rounded once more: |bf16(y) - y| <= 2^-8 |y|
            # (unit roundoff of 8 significant bits), |y| <= |want| + t.
            if dtype == torch.bfloat16:
                t = t + 2.0**-8 * (np.abs(want_dx) + t)
            ck.note(f"grad_{name}", (err / t).max())
            if not (err <= t).all():
                j = int(np.argmax(err / t))
                ck.fail(f"{name} gradient vs f64", f"row {r} col {off + j}: err {err[j]:.3g} tol {t[j]:.3g}")
    return res


def merge_time(parts: list[torch.Tensor], aligned: bool) -> float:
    """Merge + finalise per row (informational; never asserted): the gathered tuples of
    TIMED_ROWS rows (the ROWS rows repeated), the best of TIMED_REPS runs in this thread's
    CPU time (the ranks may share cores), including the Python call overhead."""
    reps = TIMED_ROWS // ROWS
    big = [p.repeat(reps, 1, 1).contiguous() for p in parts]
    if not aligned:
        big = [p.view(TIMED_ROWS, tm.ROW_STATS_BYTES) for p in big]
    keep = torch.from_numpy(np.tile(ROW_MASK, reps))
    best = math.inf
    for _ in range(TIMED_REPS):
        t0 = time.thread_time_ns()
        merged = tm.logits_merge_block_partials(big) if aligned else tm.logits_merge_shards(big)
        tm.logits_finalize(merged, row_mask=keep)
        best = min(best, time.thread_time_ns() - t0)
    return best / TIMED_ROWS


# ---- data parallel --------------------------------------------------------------------------


def batch():
    """50 responses to 10 prompts (verl uids, not contiguous), verifier (0/1) or reward-model
    rewards, one group of identical rewards, per-token losses and response masks."""
    rng = np.random.default_rng(7)
    g = np.array([b // 5 if b < 25 else 5 + (b * 3) % 5 for b in range(B)])
    uid = (100 + g).astype(np.uint32)
    rewards = np.where(g % 2 == 1, (rng.random(B) < 0.5).astype(np.float32), (rng.random(B) * 4 - 1).astype(np.float32))
    rewards[g == 4] = 0.25
    lens = 1 + (rng.random(B) * T).astype(int)
    mask = (np.arange(T)[None, :] < lens[:, None]).astype(np.uint8)
    loss = (rng.random((B, T)) - 0.5).astype(np.float32)
    return rewards.astype(np.float32), uid, mask, loss


def gather_table(table: tm.GroupMoments, device: torch.device) -> tm.GroupMoments:
    """All-gathers every rank's group-moment table, concatenated in rank order: the counts
    K_k first, then the tables as bytes (4 + 24 per group), padded to max K_k."""
    world = dist.get_world_size()
    k = torch.tensor([table.ids.numel()], dtype=torch.int64, device=device)
    counts = torch.empty(world, dtype=torch.int64, device=device)
    dist.all_gather_into_tensor(counts, k)
    counts = counts.cpu().tolist()
    rec = 4 + 24
    send = torch.zeros(max(counts) * rec, dtype=torch.uint8)
    n = counts[dist.get_rank()]
    send[: 4 * n] = table.ids.contiguous().view(torch.uint8)
    send[4 * n : rec * n] = table.moments.contiguous().view(torch.uint8).reshape(-1)
    recv = torch.empty(world * send.numel(), dtype=torch.uint8, device=device)
    dist.all_gather_into_tensor(recv, send.to(device))
    recv = recv.cpu().view(world, -1)
    # (clone: a byte slice need not be aligned for a wider element type)
    ids = torch.cat([recv[r, : 4 * c].clone().view(torch.uint32) for r, c in enumerate(counts)])
    mom = torch.cat([recv[r, 4 * c : rec * c].clone().view(torch.float64).view(c, 3) for r, c in enumerate(counts)])
    return tm.GroupMoments(ids, mom)


def data_parallel(ck: Checker, device: torch.device) -> dict:
    rank, world = dist.get_rank(), dist.get_world_size()
    rewards_np, uid_np, mask_np, loss_np = batch()
    rewards, uid, mask, loss = (torch.from_numpy(a) for a in (rewards_np, uid_np, mask_np, loss_np))
    lo, hi = B * rank // world, B * (rank + 1) // world
    flavor = "verl_loop"

    # 1. GRPO: per-rank group moments -> all-gather -> merge in rank order.
    merged = tm.group_moments_merge(gather_table(tm.group_moments(rewards[lo:hi], uid[lo:hi]), device))
    adv = tm.grpo_advantage_from_moments(rewards[lo:hi], uid[lo:hi], merged, flavor=flavor)
    # One process: (a) the library's merge order (the same per-slice tables, merged in slice
    # order, no transport): bitwise for every row; (b) the unsplit batch: bitwise for the
    # groups that live on one rank, within the merge's rounding for split ones.
    whole = tm.grpo_advantage(rewards, uid, flavor=flavor)
    slices = [(B * r // world, B * (r + 1) // world) for r in range(world)]
    ordered_table = tm.group_moments_merge([tm.group_moments(rewards[a:b], uid[a:b]) for a, b in slices])
    ordered = tm.grpo_advantage_from_moments(rewards, uid, ordered_table, flavor=flavor)
    if not same_bits(adv, ordered[lo:hi]):
        ck.fail("advantage vs one process, library merge order")
    owner = {}
    for r, (a, b) in enumerate(slices):
        for u in uid_np[a:b].tolist():
            owner.setdefault(u, set()).add(r)
    split = sum(len(s) > 1 for s in owner.values())
    table = {int(i): m for i, m in zip(merged.ids.tolist(), merged.moments.tolist())}
    for i in range(hi - lo):
        b = lo + i
        u = int(uid_np[b])
        if len(owner[u]) == 1:
            if not same_bits(adv[i : i + 1], whole[b : b + 1]):
                ck.fail("advantage of an unsplit group vs one process", f"response {b}")
            continue
        n, mean, m2 = table[u]
        sd = math.sqrt(m2 / (n - 1)) if n > 1 else 1.0
        w = float(whole[b])
        tol = EPS32 / 2 * abs(w) + 16.0 * n * 2.0**-53 * (abs(float(rewards[b])) + abs(mean)) / (sd + 1e-6)
        ulps = abs(int(bits(adv[i : i + 1])[0]) - int(bits(whole[b : b + 1])[0]))
        ck.note("split_ulps", ulps)
        if not abs(float(adv[i]) - w) <= tol + EPS32 / 2 * abs(w):
            ck.fail("advantage of a split group vs one process", f"response {b}: {float(adv[i])!r} vs {w!r}")

    # 2. verl token-mean with the global token count: an all-reduce of one integer (exact).
    n_tok = torch.tensor([int(mask[lo:hi].sum())], dtype=torch.int64, device=device)
    dist.all_reduce(n_tok, op=dist.ReduceOp.SUM)
    n_tok = int(n_tok.item())
    l_rank = tm.agg_loss(loss[lo:hi], mask[lo:hi], "token-mean", global_tokens=n_tok, dp_size=world)
    w_rank = tm.agg_weights(mask[lo:hi], "token-mean", global_tokens=n_tok, dp_size=world)
    l_all = torch.empty(world, dtype=torch.float32, device=device)
    dist.all_gather_into_tensor(l_all, torch.tensor([l_rank], dtype=torch.float32, device=device))
    l_all = l_all.cpu().double()
    l_one = tm.agg_loss(loss, mask, "token-mean")
    w_one = tm.agg_weights(mask, "token-mean")
    # The gradient all-reduce averages over ranks: the optimiser sees the mean of the losses.
    # Each rank's loss is its f64 sum rounded once to f32.
    loss_err = abs(float(l_all.mean()) - l_one)
    loss_tol = EPS32 * (float(l_all.abs().mean()) + abs(l_one))
    if not loss_err <= loss_tol:
        ck.fail("token-mean loss (mean over ranks) vs one process", f"{float(l_all.mean())!r} vs {l_one!r}")
    # Per-token weights after the average over ranks, w/P, vs 1/N_tok: bitwise when P is a
    # power of two (an exact scaling), else within one rounding (1 ulp).
    eff = (w_rank.double() / world).float()
    gap = np.abs(bits(eff).astype(np.int64) - bits(w_one[lo:hi]).astype(np.int64)).max(initial=0)
    ck.note("weight_ulps", gap)
    pow2 = world & (world - 1) == 0
    if (gap != 0) if pow2 else (gap > 1):
        ck.fail("token weight / P vs one process", f"{gap} ulp")
    return {"groups": len(table), "split": split, "tokens": n_tok, "loss_err": loss_err, "loss_tol": loss_tol}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu: gloo; cuda: NCCL, one GPU per rank")
    args = ap.parse_args()
    if args.device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", 0))
        if not torch.cuda.is_available() or local >= torch.cuda.device_count():
            # NCCL runs one rank per GPU: two ranks on one device are refused.
            print(f"--device cuda: local rank {local} needs GPU {local}, found {torch.cuda.device_count()} "
                  f"(NCCL runs one rank per GPU: --nproc-per-node <= the GPU count)", file=sys.stderr)
            return 2
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if world > min(-(-V // tm.LOGITS_BLOCK), B):
        if rank == 0:
            print(f"at most {B} ranks", file=sys.stderr)
        dist.destroy_process_group()
        return 2

    ck = Checker(rank)
    xf = logits_data()
    vp = {name: vocab_parallel(ck, dt, xf, device) for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16))}
    dp = data_parallel(ck, device)

    # The worst figures over the ranks, and the failure count.
    keys = ["stats_f32", "stats_bf16", "grad_f32", "grad_bf16", "diff_f32", "diff_bf16", "split_ulps", "weight_ulps"]
    mkeys = [(n, k) for n in ("f32", "bf16") for k in ("merge_ns_aligned", "merge_ns_any")]
    worst = torch.tensor([ck.worst.get(k, 0.0) for k in keys] + [vp[n][k] for n, k in mkeys], dtype=torch.float64, device=device)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    fails = torch.tensor([ck.failures], dtype=torch.int64, device=device)
    dist.all_reduce(fails, op=dist.ReduceOp.SUM)
    w = dict(zip(keys + [f"{n}_{k}" for n, k in mkeys], worst.cpu().tolist()))
    total = int(fails.item())

    if rank == 0:
        be = dist.get_backend()
        sa, ss = vp["f32"]["sent_aligned"], vp["f32"]["sent_any"]
        ra, rs = sa * world, ss * world
        print(f"tokenmath {tm.__version__} over torch.distributed ({be}, {device.type} tensors, torch {torch.__version__}): "
              f"{world} ranks, V = {V}, {ROWS} rows, block {tm.LOGITS_BLOCK}\n")
        row = "{:<58} {:<22} {}"
        print(row.format("check", "f32 logits", "bf16 logits"))
        print(row.format("vocab-parallel, block-aligned shards: statistics", "bitwise", "bitwise"))
        print(row.format("  gradient slice of every rank", "bitwise", "bitwise"))
        print(row.format("vocab-parallel, shards cut anywhere: gradient slices", "bitwise*", "bitwise*"))
        print(row.format("  statistics vs f64 (sharded_stats_tolerance)", f"max {w['stats_f32']:.2f} of tol", f"max {w['stats_bf16']:.2f} of tol"))
        print(row.format("  gradient vs f64 (grad_tolerance)", f"max {w['grad_f32']:.2f} of tol", f"max {w['grad_bf16']:.2f} of tol"))
        print(row.format("  lse/entropy/logp vs one process", f"max |d| {w['diff_f32']:.2g}", f"max |d| {w['diff_bf16']:.2g}"))
        print("  (* against the one-process backward given the same merged statistics)\n")
        print(f"{'data-parallel GRPO (verl loop), groups on one rank':<58} bitwise")
        print(f"{'  every group vs one process in the library merge order':<58} bitwise")
        print(f"{'  split groups vs one unsplit call':<58} {dp['split']} of {dp['groups']} groups split, max {w['split_ulps']:.0f} ulp")
        print(f"{'token-mean normaliser N_tok (all_reduce of one int64)':<58} {dp['tokens']}, exact")
        pw = "bitwise" if world & (world - 1) == 0 else "within 1 ulp"
        print(f"{'  token weight w/P vs one process 1/N_tok':<58} {pw} ({w['weight_ulps']:.0f} ulp)")
        print(f"{'  mean of the ranks losses vs one process':<58} |d| = {dp['loss_err']:.2g} <= {dp['loss_tol']:.2g}\n")
        print(f"cost per row (V = {V}, {world} ranks)    sent per rank  received per rank  vs logits row bf16 / f32")
        print(f"  block partials (bitwise)               {sa:6d} B       {ra:6d} B           {V * 2 / ra:.0f}x / {V * 4 / ra:.0f}x")
        print(f"  shard partials (any cut)               {ss:6d} B       {rs:6d} B           {V * 2 / rs:.0f}x / {V * 4 / rs:.0f}x")
        print(f"  merge + finalize per row (CPU time, incl. the Python call): block partials "
              f"{w['f32_merge_ns_aligned']:.0f} ns (f32 run) / {w['bf16_merge_ns_aligned']:.0f} ns (bf16 run), "
              f"shard partials {w['f32_merge_ns_any']:.0f} / {w['bf16_merge_ns_any']:.0f} ns")
        print(f"\n{'FAILED' if total else 'ok'}: {total} mismatches")
    dist.destroy_process_group()
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
