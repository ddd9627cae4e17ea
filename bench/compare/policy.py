#!/usr/bin/env python3
"""Policy-loss step on the CPU: tokenmath vs a numpy port of the same formulas.

The step is one "forward + gradient" of ``L = token_mean(l_pg + beta * k3)`` with respect to
``logp`` over a ``[B, T]`` batch (default ``[1024, 4096]`` = 4M tokens, about 90% valid):

* ``l_pg``: PPO clipped surrogate with dual clip and log-ratio clamp, as verl
  ``compute_policy_loss_vanilla`` (eps_low = eps_high = 0.2, clip_ratio_c = 3, ``clamp(d, -20, 20)``);
* ``k3``: verl ``kl_penalty_forward("low_var_kl")`` with its clamps (``clamp(ref - logp, -20, 20)``,
  value clamped to ``[-10, 10]``), ``beta = 0.001`` (verl's ``kl_loss_coef``);
* token-mean aggregation over the valid tokens; the gradient ``g_logp = mask * dl/dlogp / N``;
* the verl metrics (``pg_clipfrac``, ``pg_clipfrac_lower``, ``ppo_kl``, the mean kl).

tokenmath runs through the ``policy-timing`` binary of ``tokenmath-bench`` (single thread), which
also measures the machine's copy bandwidth in the same run and writes its inputs and outputs to a
temporary directory; the numpy port runs on those very inputs, pinned to one CPU with
single-threaded settings, is checked against tokenmath's ``L``, per-token loss and ``g_logp``, and
is then timed. The tables go to stdout and (unless ``--quick``) to ``results-policy.md``.

Normally started by ``run-policy.sh``, which creates the virtual environment and builds the binary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
os.environ.update(SINGLE_THREAD_ENV)
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)

import numpy as np  # after the environment is set, on purpose

# verl defaults (actor.yaml at b178a3cd).
EPS_LOW = 0.2
EPS_HIGH = 0.2
CLIP_C = 3.0
LOG_RATIO_CLAMP = 20.0
K3_ARG_CLAMP = 20.0
K3_VALUE_CLAMP = 10.0

TARGET_COPY_FRACTION = 0.5
MIN_BYTES_PER_TOKEN = 25


class NumpyStep:
    """The step in numpy, every ``[B, T]`` temporary allocated once (as tokenmath's outputs
    are), so that the timing measures the arithmetic and the memory traffic, not page faults.
    float32 throughout, as verl; the sums in float64."""

    def __init__(self, logp, old_logp, adv, ref_logp, mask, beta: float):
        self.lp, self.old, self.adv, self.ref, self.mask = logp, old_logp, adv, ref_logp, mask
        self.beta = np.float32(beta)
        f = lambda: np.empty_like(logp)  # noqa: E731
        b = lambda: np.empty(logp.shape, dtype=bool)  # noqa: E731
        self.d, self.dt, self.r, self.na, self.l1, self.l2, self.t, self.lc = (f() for _ in range(8))
        self.l3, self.nd, self.delta, self.e, self.k = (f() for _ in range(5))
        self.loss, self.g = f(), f()
        self.m, self.neg, self.pos, self.kap, self.tb, self.clip, self.dual = (b() for _ in range(7))

    def step(self) -> tuple[float, dict]:
        """Writes ``self.loss`` (per-token l, 0 where masked) and ``self.g`` (``g_logp``);
        returns ``L`` and the metrics."""
        m, d, dt, r, na, l1, l2, t, lc, l3 = (
            self.m, self.d, self.dt, self.r, self.na, self.l1, self.l2, self.t, self.lc, self.l3,
        )
        np.not_equal(self.mask, 0, out=m)
        # PPO clip with dual clip (verl compute_policy_loss_vanilla).
        np.subtract(self.lp, self.old, out=d)
        np.clip(d, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP, out=dt)
        np.exp(dt, out=r)
        np.negative(self.adv, out=na)
        np.multiply(na, r, out=l1)  # -A r
        np.clip(r, 1.0 - EPS_LOW, 1.0 + EPS_HIGH, out=t)
        np.multiply(na, t, out=l2)  # -A clip(r)
        np.greater(l2, l1, out=self.clip)
        np.maximum(l1, l2, out=lc)
        np.multiply(na, np.float32(CLIP_C), out=l3)  # -A c
        np.less(self.adv, 0, out=self.neg)
        np.greater(self.adv, 0, out=self.pos)
        np.greater(lc, l3, out=self.dual)
        self.dual &= self.neg
        np.copyto(lc, l3, where=self.dual)  # A < 0: min(lc, -A c)
        # Gradient: -A r kappa, kappa = |d| <= 20 and (A > 0: r <= 1+eh; A < 0: 1-el <= r <= c).
        kap, tb = self.kap, self.tb
        np.less_equal(r, 1.0 + EPS_HIGH, out=kap)
        kap &= self.pos
        np.greater_equal(r, 1.0 - EPS_LOW, out=tb)
        tb &= self.neg
        tb &= r <= CLIP_C
        kap |= tb
        np.less_equal(np.abs(d, out=t), LOG_RATIO_CLAMP, out=tb)
        kap &= tb
        np.multiply(l1, kap, out=self.g)
        # k3 with verl's clamps: delta = clamp(ref - logp, +-20), k = clamp(e^delta - delta - 1, +-10).
        nd, delta, e, k = self.nd, self.delta, self.e, self.k
        np.subtract(self.ref, self.lp, out=nd)
        np.clip(nd, -K3_ARG_CLAMP, K3_ARG_CLAMP, out=delta)
        np.exp(delta, out=e)
        np.subtract(e, delta, out=k)
        k -= 1.0
        # d k3 / d logp = (1 - e^delta) where neither clamp is active.
        np.less_equal(np.abs(nd, out=t), K3_ARG_CLAMP, out=kap)
        kap &= np.abs(k, out=t) <= K3_VALUE_CLAMP
        np.subtract(1.0, e, out=t)
        t *= kap
        np.clip(k, -K3_VALUE_CLAMP, K3_VALUE_CLAMP, out=k)
        # l = l_pg + beta k3, dl/dlogp = g_pg + beta dk3; masked positions 0.
        np.multiply(k, self.beta, out=self.loss)
        self.loss += lc
        np.multiply(t, self.beta, out=t)
        self.g += t
        np.copyto(self.loss, 0.0, where=~m)
        # Token mean and its gradient.
        n_tok = int(np.count_nonzero(m))
        big_l = float(self.loss.sum(dtype=np.float64)) / n_tok
        w = np.float32(1.0 / n_tok)
        np.multiply(self.g, w, out=self.g)
        np.copyto(self.g, 0.0, where=~m)
        # verl metrics: masked means over the valid tokens.
        metrics = {
            "clipfrac": float(np.count_nonzero(self.clip & m)) / n_tok,
            "clipfrac_lower": float(np.count_nonzero(self.dual & m)) / n_tok,
            "ppo_kl": float(-dt.sum(dtype=np.float64, where=m)) / n_tok,
            "kl_mean": float(k.sum(dtype=np.float64, where=m)) / n_tok,
        }
        return big_l, metrics


def require(ok: bool, failure: str) -> None:
    if not ok:
        sys.exit(f"check failed: {failure}")


def check(step: NumpyStep, big_l: float, metrics: dict, tm_loss, tm_g, meta: dict) -> str:
    """numpy vs tokenmath: L and the metrics within float32 rounding; every ``l`` and
    ``g_logp`` within a few ulp, except where the two ``exp``s (numpy's and tokenmath's, both
    within 2 ulp) put a ratio on different sides of a clip boundary — then the gradient may
    flip between 0 and its value, so such tokens must lie within 1e-5 of a boundary. Returns a
    one-line summary."""
    require(abs(big_l - meta["loss"]) <= 1e-5 * abs(meta["loss"]) + 1e-9, f"L numpy {big_l} vs tokenmath {meta['loss']}")
    for key in ("clipfrac", "clipfrac_lower", "ppo_kl", "kl_mean"):
        require(abs(metrics[key] - meta[key]) <= 1e-5 * abs(meta[key]) + 1e-6, f"{key} {metrics[key]} vs {meta[key]}")
    r, nd = step.r.astype(np.float64), step.nd.astype(np.float64)
    k = np.exp(np.clip(nd, -20, 20)) - np.clip(nd, -20, 20) - 1.0
    near = np.zeros(r.shape, dtype=bool)
    for bound in (1.0 - EPS_LOW, 1.0 + EPS_HIGH, CLIP_C):
        near |= np.abs(r - bound) <= 1e-5 * bound
    d = (step.lp.astype(np.float64) - step.old)
    near |= np.abs(np.abs(d) - LOG_RATIO_CLAMP) <= 1e-4
    near |= np.abs(np.abs(nd) - K3_ARG_CLAMP) <= 1e-4
    near |= np.abs(k - K3_VALUE_CLAMP) <= 1e-4
    out = []
    for name, got, want in (("loss", step.loss, tm_loss), ("g_logp", step.g, tm_g)):
        scale = float(np.abs(want).max())
        bad = np.abs(got.astype(np.float64) - want) > 1e-5 * np.abs(want) + 1e-6 * scale
        n_bad = int(np.count_nonzero(bad))
        require(not np.any(bad & ~near), f"{name}: {int(np.count_nonzero(bad & ~near))} tokens differ away from a clip boundary")
        require(n_bad <= max(10, 1e-5 * bad.size), f"{name}: {n_bad} tokens differ")
        out.append(f"{name}: max |diff| {float(np.abs(got - want).max()):.2e} (scale {scale:.2e}), {n_bad} boundary tokens")
    return "; ".join(out)


def run_tokenmath(binary: Path, rows: int, cols: int, reps: int, dump: Path) -> list[dict]:
    cmd = [str(binary), "--rows", str(rows), "--cols", str(cols), "--reps", str(reps), "--dump", str(dump)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(args, tm: list[dict], np_secs: list[float], check_line: str, load: tuple[str, str]) -> str:
    steps = {m["path"]: m for m in tm if m["op"] == "policy_step"}
    copy = next(m for m in tm if m["op"] == "copy_bw")
    n = next(iter(steps.values()))["tokens"]
    valid = next(iter(steps.values()))["valid_tokens"]
    min_bytes = n * MIN_BYTES_PER_TOKEN
    np_med, np_min = statistics.median(np_secs), min(np_secs)
    copy_gbs, copy_gbs_min = copy["gb_per_s"], copy["bytes"] / copy["min_s"] / 1e9

    rows = []
    for path in ("fused", "composed"):
        m = steps[path]
        gbs_min = min_bytes / m["min_s"] / 1e9
        rows.append(
            [
                f"tokenmath ({path})",
                f"{m['median_s'] * 1e3:.2f}",
                f"{m['min_s'] * 1e3:.2f}",
                f"{m['gb_per_s']:.2f}",
                f"{m['gb_per_s'] / copy_gbs:.0%} / {gbs_min / copy_gbs_min:.0%}",
                f"{m['moved_bytes'] / n:.0f} B ({m['gb_per_s_moved']:.2f} GB/s)",
                f"{np_med / m['median_s']:.1f}x / {np_min / m['min_s']:.1f}x",
            ]
        )
    rows.append(
        [
            "numpy (one CPU)",
            f"{np_med * 1e3:.2f}",
            f"{np_min * 1e3:.2f}",
            f"{min_bytes / np_med / 1e9:.2f}",
            f"{min_bytes / np_med / 1e9 / copy_gbs:.0%} / {min_bytes / np_min / 1e9 / copy_gbs_min:.0%}",
            "",
            "1.0x",
        ]
    )
    rows.append(
        [
            "copy bandwidth (copy_from_slice)",
            f"{copy['median_s'] * 1e3:.2f}",
            f"{copy['min_s'] * 1e3:.2f}",
            f"{copy_gbs:.2f}",
            "100%",
            f"{copy['bytes'] / n:.0f} B (read + write)",
            "",
        ]
    )
    table = markdown_table(
        [
            "implementation",
            "median ms",
            "min ms",
            "GB/s (25 B/token, median)",
            "of copy bandwidth (median / min)",
            "bytes moved per token",
            "numpy / tokenmath (median / min)",
        ],
        rows,
    )
    fused = steps["fused"]
    frac = fused["gb_per_s"] / copy_gbs
    frac_min = (min_bytes / fused["min_s"]) / (copy["bytes"] / copy["min_s"])
    verdict = (
        f"Target: tokenmath (fused) ≥ {TARGET_COPY_FRACTION:.0%} of the copy bandwidth: "
        f"{frac:.0%} from the medians, {frac_min:.0%} from the minimum times — "
        f"{'**met**' if frac >= TARGET_COPY_FRACTION else '**not met**'} (medians)."
    )
    header = (
        "# Policy-loss step: tokenmath vs numpy (CPU, one thread)\n\n"
        f"One forward + gradient of L = token_mean(l_pg + 0.001·k3) w.r.t. logp: PPO clip (ε = 0.2, dual clip "
        f"c = 3, log-ratio clamp ±20), k3 with verl's clamps, token-mean, verl metrics; [{args.rows}, {args.cols}] = "
        f"{n} tokens, {valid} valid ({valid / n:.1%}). Median and minimum of {args.tm_reps} timed runs (tokenmath, "
        f"copy; round-robin in one process after two warm-ups) and {args.reps} (numpy, after one warm-up).\n\n"
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs shared with other work (load average {load[0]} before, "
        f"{load[1]} after); Python {platform.python_version()}, numpy {np.__version__}.\n\n"
        "GB/s counts the 25 B/token any implementation must move (logp, old_logp, adv, ref_logp: 4 × 4 B; mask "
        "1 B; l and g_logp written: 2 × 4 B). The copy bandwidth is `copy_from_slice` between two buffers of that "
        "size, measured in the same run, counting bytes read + written. 'Bytes moved' is what each tokenmath path "
        "streams (fused: a count of the mask, then one pass; composed: kernel, `agg_loss`, `agg_chain_in_place`).\n"
    )
    return f"{header}\n{table}\n\n{verdict}\n\nCheck (numpy vs tokenmath, same inputs): {check_line}.\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=7, help="timed repetitions of numpy")
    ap.add_argument("--tm-reps", type=int, default=21, help="timed repetitions of tokenmath and the copy")
    ap.add_argument("--quick", action="store_true", help="a [64, 4096] batch, few repetitions, no results file")
    ap.add_argument(
        "--tm-bin",
        type=Path,
        default=HERE.parent.parent / "target/release/policy-timing",
        help="the policy-timing binary (built by run-policy.sh)",
    )
    ap.add_argument("--output", type=Path, help="markdown report (default results-policy.md; none with --quick)")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.reps, args.tm_reps = 64, 3, 5
    output = args.output or (None if args.quick else HERE / "results-policy.md")
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="tm-policy-") as tmp:
        dump = Path(tmp)
        print(f"tokenmath: {args.tm_bin} on [{args.rows}, {args.cols}] ...", file=sys.stderr)
        tm = run_tokenmath(args.tm_bin, args.rows, args.cols, args.tm_reps, dump)
        meta = json.loads((dump / "meta.json").read_text())
        rd = lambda name, dt=np.float32: np.fromfile(dump / name, dtype=dt)  # noqa: E731
        lp, old, adv, ref = rd("logp.f32"), rd("old_logp.f32"), rd("adv.f32"), rd("ref_logp.f32")
        mask = rd("mask.u8", np.uint8)
        tm_loss, tm_g = rd("loss.f32"), rd("g_logp.f32")

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    npy = NumpyStep(lp, old, adv, ref, mask, meta["kl_coef"])
    print("checking numpy against tokenmath ...", file=sys.stderr)
    big_l, metrics = npy.step()
    check_line = check(npy, big_l, metrics, tm_loss, tm_g, meta)
    check_line = f"L {big_l:.9g} vs {meta['loss']:.9g}; metrics agree; {check_line}"
    print("timing numpy (one CPU) ...", file=sys.stderr)
    npy.step()
    secs = []
    for _ in range(args.reps):
        start = time.perf_counter()
        npy.step()
        secs.append(time.perf_counter() - start)

    report = render(args, tm, secs, check_line, (load_before, load_average()))
    print(report)
    if output is not None:
        output.write_text(report)
        print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
