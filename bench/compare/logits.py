#!/usr/bin/env python3
"""Side-by-side timing of the logits statistics on the CPU: numpy, jax.jit and tokenmath.

For one ``[rows, cols]`` batch of f32 logits (default ``[2048, 32768]``) with one target
per row, every implementation computes

* the forward: ``lse = log sum exp(x)``, the entropy ``H = -sum p log p`` and the target
  log-prob ``logp = x[t] - lse`` of every row;
* the backward: the gradient w.r.t. the logits of ``L = sum(g_lp * logp + g_H * H)``.

numpy and jax run single-threaded (thread-count variables set and the process pinned to
one CPU before either is imported); tokenmath runs through the ``logits-timing`` binary of
``tokenmath-bench`` on 1 and 2 threads, which also measures the machine's floors: the
throughput of a bare ``exp`` loop (AVX-512 where present, else AVX2) and the single-core streaming read bandwidth.
numpy and jax are checked against each other and against float64 math before anything is
timed. The tables go to stdout and (unless ``--quick``) to ``results.md`` beside this file.

Normally started by ``run.sh``, which creates the virtual environment and builds the binary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Single-threaded numpy/jax: these must be set before either library is imported.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
os.environ.update(SINGLE_THREAD_ENV)

import numpy as np  # after the environment is set, on purpose

# Upstream gradients of a typical loss: mean NLL plus a small entropy bonus (the same as
# tokenmath_bench::Problem).
G_LOGP = -1.0
G_ENTROPY = -0.01

# Targets from the specification, next to which the measured ratios are printed.
TARGET_FWD_VS_JAX = 8.0
TARGET_FWD_OVER_FLOOR = 1.3
TARGET_BWD_VS_JAX = 15.0
TARGET_SCALING_2T = 1.8


# ---------------------------------------------------------------------------------------
# Data: the same construction as tokenmath_bench::Problem (not the same bits).
# ---------------------------------------------------------------------------------------


def make_problem(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Peaked, long-tailed logits over a shuffled vocabulary, and in-range targets.

    The token of rank k gets ``top - a*ln(k+1) + noise`` with ``a`` in [0.8, 2),
    ``top`` in [5, 20) and ``noise`` in [-1, 1); ranks map to columns through a per-row
    affine permutation; the target's rank is ``cols ** (u * u) - 1`` for a uniform ``u``.
    """
    rng = np.random.default_rng(seed)
    neg_ln_rank = -np.log1p(np.arange(cols, dtype=np.float64)).astype(np.float32)
    x = np.empty((rows, cols), dtype=np.float32)
    targets = np.empty(rows, dtype=np.int64)
    ranks = np.arange(cols, dtype=np.int64)
    for r in range(rows):
        a = rng.uniform(0.8, 2.0)
        top = rng.uniform(5.0, 20.0)
        stride = int(rng.integers(cols))
        while np.gcd(stride, cols) != 1:
            stride = (stride + 1) % cols
        offset = int(rng.integers(cols))
        noise = rng.uniform(-1.0, 1.0, cols).astype(np.float32)
        x[r, (ranks * stride + offset) % cols] = np.float32(top) + np.float32(a) * neg_ln_rank + noise
        rank = max(int(cols ** rng.uniform() ** 2) - 1, 0)
        targets[r] = (rank * stride + offset) % cols
    return x, targets


# ---------------------------------------------------------------------------------------
# numpy: max-shifted forward and closed-form backward, into preallocated buffers.
# ---------------------------------------------------------------------------------------


class NumpyStats:
    """The forward and backward in numpy, with the ``[rows, cols]`` temporaries allocated
    once (as tokenmath's outputs are), so that the timings measure arithmetic, not page
    faults."""

    def __init__(self, x: np.ndarray, targets: np.ndarray, g_lp: np.ndarray, g_h: np.ndarray):
        self.x, self.t, self.g_lp, self.g_h = x, targets, g_lp, g_h
        self.rows = np.arange(x.shape[0])
        self.d = np.empty_like(x)
        self.e = np.empty_like(x)
        self.dx = np.empty_like(x)

    def forward(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(lse, entropy, logp, ez) of every row, ``ez = E_p[x]``."""
        m = self.x.max(axis=1, keepdims=True)
        np.subtract(self.x, m, out=self.d)
        np.exp(self.d, out=self.e)
        s = self.e.sum(axis=1)
        mean_d = np.einsum("ij,ij->i", self.e, self.d) / s
        log_s = np.log(s)
        lse = m[:, 0] + log_s
        return lse, log_s - mean_d, self.x[self.rows, self.t] - lse, m[:, 0] + mean_d

    def backward(self, lse: np.ndarray, ez: np.ndarray) -> np.ndarray:
        """``p * (-g_lp - g_H * (x - ez)) + g_lp * onehot(t)``, from the forward's lse, ez."""
        np.subtract(self.x, lse[:, None], out=self.dx)
        np.exp(self.dx, out=self.dx)
        np.subtract(self.x, ez[:, None], out=self.d)
        self.d *= -self.g_h[:, None]
        self.d -= self.g_lp[:, None]
        self.dx *= self.d
        self.dx[self.rows, self.t] += self.g_lp
        return self.dx


# ---------------------------------------------------------------------------------------
# jax: the textbook formulation, jit-compiled; the backward is jax.grad of the loss.
# ---------------------------------------------------------------------------------------


def make_jax_fns():
    """(the jax module, the jitted forward, the jitted grad of the loss). jax is imported
    here, after the process has been pinned to one CPU, so that its thread pools are sized
    for one core."""
    import jax
    import jax.numpy as jnp

    def forward(x, t):
        lse = jax.nn.logsumexp(x, axis=-1)
        logq = x - lse[:, None]
        entropy = -jnp.sum(jnp.exp(logq) * logq, axis=-1)
        logp = jnp.take_along_axis(logq, t[:, None], axis=-1)[:, 0]
        return lse, entropy, logp

    def loss(x, t, g_lp, g_h):
        _, entropy, logp = forward(x, t)
        return jnp.sum(g_lp * logp + g_h * entropy)

    return jax, jax.jit(forward), jax.jit(jax.grad(loss))


# ---------------------------------------------------------------------------------------
# Checks before timing.
# ---------------------------------------------------------------------------------------


def row_loss(z: np.ndarray, target: int, g_lp: float, g_h: float) -> float:
    """``g_lp * logp + g_H * H`` of one float64 row, from the definitions."""
    logq = z - (z.max() + np.log(np.exp(z - z.max()).sum()))
    return g_lp * logq[target] - g_h * (np.exp(logq) * logq).sum()


def check_against_math(
    x: np.ndarray, t: np.ndarray, g_lp: np.ndarray, g_h: np.ndarray, fwd: tuple, dx: np.ndarray, rows: list[int]
) -> None:
    """float64 definitions on a few rows: lse, H = -sum p log p, log p[t], the closed-form
    gradient, a central finite difference of the loss, and sum_j dL/dx_j = 0 (the loss is
    invariant to adding a constant to a row)."""
    lse32, h32, lp32, _ = fwd
    for r in rows:
        z = x[r].astype(np.float64)
        m = z.max()
        lse = m + np.log(np.exp(z - m).sum())
        logq = z - lse
        p = np.exp(logq)
        entropy = -(p * logq).sum()
        require(abs(lse32[r] - lse) <= 1e-5 * abs(lse) + 1e-5, f"row {r}: lse {lse32[r]} vs {lse}")
        require(abs(h32[r] - entropy) <= 1e-4 * abs(entropy) + 1e-4, f"row {r}: entropy {h32[r]} vs {entropy}")
        require(abs(lp32[r] - logq[t[r]]) <= 1e-4 * abs(logq[t[r]]) + 1e-4, f"row {r}: logp {lp32[r]} vs {logq[t[r]]}")

        grad = p * (-g_lp[r] - g_h[r] * (z - (p * z).sum()))
        grad[t[r]] += g_lp[r]
        scale = np.abs(grad).max()
        require(np.abs(dx[r] - grad).max() <= 1e-4 * scale, f"row {r}: numpy gradient vs float64")
        require(abs(grad.sum()) <= 1e-9 * scale * z.size, f"row {r}: gradient row sum {grad.sum()} != 0")
        direction = np.random.default_rng(r).standard_normal(z.size)
        eps = 1e-4
        fd = (
            row_loss(z + eps * direction, t[r], g_lp[r], g_h[r]) - row_loss(z - eps * direction, t[r], g_lp[r], g_h[r])
        ) / (2 * eps)
        require(
            abs(fd - grad @ direction) <= 1e-5 * abs(fd) + 1e-9,
            f"row {r}: finite difference {fd} vs {grad @ direction}",
        )


def require(ok: bool, failure: str) -> None:
    if not ok:
        sys.exit(f"check failed: {failure}")


def check_close(name: str, got: np.ndarray, want: np.ndarray, rel: float) -> None:
    """jax's ``got`` within ``rel`` times the largest ``|want|`` of numpy's ``want``."""
    err = float(np.abs(np.asarray(got, dtype=np.float64) - want).max())
    scale = float(np.abs(want).max())
    require(err <= rel * scale, f"{name}: jax and numpy differ by {err:.3g} (scale {scale:.3g})")


# ---------------------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------------------


def time_interleaved(fns: dict[tuple[str, str], Callable[[], object]], reps: int) -> dict[tuple[str, str], list[float]]:
    """Wall-clock seconds of ``reps`` calls of every function after one untimed call each;
    the repetitions go round-robin over the functions, so that interference from other
    processes spreads over all of them."""
    for fn in fns.values():
        fn()
    secs: dict[tuple[str, str], list[float]] = {key: [] for key in fns}
    for _ in range(reps):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            secs[key].append(time.perf_counter() - start)
    return secs


def run_tokenmath(binary: Path, rows: int, cols: int, reps: int) -> list[dict]:
    """Every op of the timing driver on 1 and 2 threads, as parsed JSON lines."""
    cmd = [
        str(binary),
        "--rows",
        str(rows),
        "--cols",
        str(cols),
        "--dtype",
        "f32",
        "--threads",
        "1,2",
        "--reps",
        str(reps),
        "--op",
        "all",
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def ratio_row(name: str, value: float, value_min: float, target: float | None, at_least: bool = True) -> list[str]:
    """A row of the ratio table: the ratio of medians, the ratio of minimum times, and the
    target with whether the median ratio meets it."""
    row = [name, f"{value:.2f}x", f"{value_min:.2f}x"]
    if target is None:
        return row + ["", ""]
    ok = value >= target if at_least else value <= target
    return row + [f"{'>=' if at_least else '<='} {target:g}x", "yes" if ok else "**no**"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def time_python(rows: int, cols: int, seed: int, reps: int) -> tuple[dict, str]:
    """Pins this process to one CPU, checks numpy and jax, and times them. Returns
    ``{(implementation, op): [seconds]}`` and the jax version."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    jax, jax_fwd, jax_grad = make_jax_fns()

    print("generating data ...", file=sys.stderr)
    x, t = make_problem(rows, cols, seed)
    g_lp = np.full(rows, G_LOGP / rows, dtype=np.float32)
    g_h = np.full(rows, G_ENTROPY / rows, dtype=np.float32)
    npy = NumpyStats(x, t, g_lp, g_h)
    xj, tj, g_lpj, g_hj = (jax.device_put(a) for a in (x, t.astype(np.int32), g_lp, g_h))

    print("checking numpy against float64 math and jax against numpy ...", file=sys.stderr)
    fwd = npy.forward()
    lse, ez = fwd[0], fwd[3]
    dx = npy.backward(lse, ez).copy()
    check_against_math(x, t, g_lp, g_h, fwd, dx, rows=[0, rows // 2, rows - 1])
    for name, got, want in zip(("lse", "entropy", "logp"), jax_fwd(xj, tj), fwd[:3]):
        check_close(f"forward {name}", got, want, rel=1e-4)
    check_close("gradient", jax_grad(xj, tj, g_lpj, g_hj), dx, rel=1e-4)

    print("timing numpy and jax (one CPU) ...", file=sys.stderr)
    secs = time_interleaved(
        {
            ("numpy", "fwd"): npy.forward,
            ("numpy", "bwd"): lambda: npy.backward(lse, ez),
            ("jax.jit", "fwd"): lambda: jax.block_until_ready(jax_fwd(xj, tj)),
            ("jax.jit(jax.grad)", "bwd"): lambda: jax.block_until_ready(jax_grad(xj, tj, g_lpj, g_hj)),
        },
        reps,
    )
    return secs, jax.__version__


def idle_fraction(seconds: float = 2.0) -> float:
    """The fraction of all CPUs' time that was idle over the next ``seconds`` (Linux), to
    record whether other work was competing with the measurements."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # (idle + iowait, total)

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(total1 - total0, 1)


def render(rows: int, cols: int, reps: tuple[int, int], py: dict, tm: dict, jax_version: str, idle: float) -> str:
    """The markdown report: every measurement, the CPU floor, and the ratios vs targets."""
    elems = rows * cols
    # seconds[(impl, op, threads)][statistic]
    seconds = {(impl, op, 1): {"median": statistics.median(v), "min": min(v)} for (impl, op), v in py.items()}
    seconds.update({("tokenmath", op, th): {"median": m["median_s"], "min": m["min_s"]} for (op, th), m in tm.items()})

    labels = {"exp_floor": "exp floor (AVX-512 or AVX2 exp + sum)", "read_bw": "read bandwidth (sum)"}
    table = []
    for (impl, op, threads), sec in seconds.items():
        gbs = f"{tm[op, threads]['gb_per_s']:.1f}" if impl == "tokenmath" else ""
        table.append(
            [
                labels.get(op, impl),
                op,
                str(threads),
                f"{sec['median'] * 1e3:.2f}",
                f"{sec['min'] * 1e3:.2f}",
                f"{elems / sec['median']:.3e}",
                gbs,
            ]
        )
    measurements = markdown_table(
        ["implementation", "op", "threads", "median ms", "min ms", "elements/s", "GB/s"], table
    )

    def floor(stat: str) -> float:
        return max(seconds["tokenmath", "exp_floor", 1][stat], seconds["tokenmath", "read_bw", 1][stat])

    def ratio(num: tuple, den: tuple | None, stat: str) -> float:
        return seconds[num][stat] / (seconds[den][stat] if den else floor(stat))

    fwd1, fwd2 = ("tokenmath", "fwd", 1), ("tokenmath", "fwd", 2)
    bwd1, bwd2 = ("tokenmath", "bwd", 1), ("tokenmath", "bwd", 2)
    spec = [  # (name, numerator, denominator (None: the floor), target, higher is better)
        ("tokenmath fwd speedup vs jax.jit (1 thread)", ("jax.jit", "fwd", 1), fwd1, TARGET_FWD_VS_JAX, True),
        ("tokenmath fwd speedup vs numpy (1 thread)", ("numpy", "fwd", 1), fwd1, None, True),
        (
            "tokenmath bwd speedup vs jax.grad (1 thread)",
            ("jax.jit(jax.grad)", "bwd", 1),
            bwd1,
            TARGET_BWD_VS_JAX,
            True,
        ),
        ("tokenmath bwd speedup vs numpy (1 thread)", ("numpy", "bwd", 1), bwd1, None, True),
        ("tokenmath fwd time / CPU floor (1 thread)", fwd1, None, TARGET_FWD_OVER_FLOOR, False),
        ("tokenmath fwd 2-thread / 1-thread speedup", fwd1, fwd2, TARGET_SCALING_2T, True),
        ("tokenmath bwd 2-thread / 1-thread speedup", bwd1, bwd2, TARGET_SCALING_2T, True),
    ]
    ratios = markdown_table(
        ["ratio", "measured (medians)", "from min times", "target", "met"],
        [
            ratio_row(name, ratio(num, den, "median"), ratio(num, den, "min"), target, higher)
            for name, num, den, target, higher in spec
        ],
    )

    exp_s, bw_s = seconds["tokenmath", "exp_floor", 1]["median"], seconds["tokenmath", "read_bw", 1]["median"]
    floor_note = (
        f"CPU floor = max(N·V / exp throughput, bytes / read bandwidth) = max({exp_s * 1e3:.2f} ms, "
        f"{bw_s * 1e3:.2f} ms) = {max(exp_s, bw_s) * 1e3:.2f} ms for the {elems * 4 / 1e6:.0f} MB of f32 logits "
        "(medians, one core, the fastest ISA; measured by `logits-timing`)."
    )
    header = (
        "# Logits statistics: tokenmath vs numpy vs jax (CPU)\n\n"
        f"f32 logits [{rows}, {cols}], one target per row; median and minimum of {reps[0]} timed runs (numpy, "
        f"jax) and {reps[1]} (tokenmath, much faster) after one warm-up, repetitions interleaved across "
        "implementations. numpy and jax run pinned to one CPU with single-threaded settings; tokenmath runs on 1 "
        "and 2 threads.\n\n"
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, {idle:.0%} idle just before the run; "
        f"Python {platform.python_version()}, numpy {np.__version__}, jax {jax_version}.\n\n"
        f"The backward is the gradient of sum(g_lp·logp + g_H·H) (g_lp = {G_LOGP}/N, g_H = {G_ENTROPY}/N). "
        "tokenmath and numpy start from the lse and E_p[x] saved by the forward; jax.grad of the loss recomputes "
        "its forward (that is what it costs a jax user).\n"
    )
    return f"{header}\n{measurements}\n\n{floor_note}\n\n{ratios}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--cols", type=int, default=32768)
    ap.add_argument("--reps", type=int, default=7, help="timed repetitions of numpy and jax")
    ap.add_argument("--tm-reps", type=int, default=21, help="timed repetitions of tokenmath and the floors")
    ap.add_argument("--seed", type=int, default=1, help="seed of the numpy/jax data")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a small [256, 8192] batch and few repetitions, to check that everything runs "
        "(results.md is then left alone unless --output is given)",
    )
    ap.add_argument(
        "--tm-bin",
        type=Path,
        default=HERE.parent.parent / "target/release/logits-timing",
        help="the logits-timing binary (built by run.sh)",
    )
    ap.add_argument(
        "--output",
        type=Path,
        help="where to write the markdown report (default: results.md beside this script; none with --quick)",
    )
    args = ap.parse_args()
    if args.quick:
        args.rows, args.cols, args.reps, args.tm_reps = 256, 8192, 3, 5
    output = args.output or (None if args.quick else HERE / "results.md")
    idle = idle_fraction()

    # tokenmath first, before this process is pinned to one CPU (a child inherits the
    # affinity, and the 2-thread run needs two).
    print(f"tokenmath: {args.tm_bin} on [{args.rows}, {args.cols}] f32 ...", file=sys.stderr)
    tm = {(m["op"], m["threads"]): m for m in run_tokenmath(args.tm_bin, args.rows, args.cols, args.tm_reps)}
    py, jax_version = time_python(args.rows, args.cols, args.seed, args.reps)

    report = render(args.rows, args.cols, (args.reps, args.tm_reps), py, tm, jax_version, idle)
    print(report)
    if output is not None:
        output.write_text(report)
        print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
