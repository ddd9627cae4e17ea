#!/usr/bin/env python3
"""E3B's elliptical bonus step, tokenmath vs a NumPy port, side by side.

Per step: u = C^-1 phi; b = phi^T u; C^-1 -= u u^T / (1 + b)   (the rank-1 path of
facebookresearch/e3b src/utils.py::act), float32, one environment. Both sides run the same
deterministic feature sequence and must agree on the bonuses (relative 1e-3 on their sum).

    bench/compare/run-e3b.sh            # d = 64, 256, 1024; writes bench/compare/results-e3b.md
"""
import argparse
import os
import subprocess
import time

import numpy as np


def features(steps, d):
    t = np.arange(steps, dtype=np.int64)[:, None]
    i = np.arange(d, dtype=np.int64)[None, :]
    v = ((t * 1_000_003 + i * 7919) % 2001).astype(np.float32) / np.float32(1000.0) - np.float32(1.0)
    return (v * np.float32(1.0 / np.sqrt(np.float32(d)))).astype(np.float32)


def numpy_e3b(phis, ridge=0.1):
    d = phis.shape[1]
    c_inv = (np.eye(d, dtype=np.float32) / np.float32(ridge)).astype(np.float32)
    bonuses = np.empty(len(phis), dtype=np.float32)
    t0 = time.perf_counter()
    for k, phi in enumerate(phis):
        u = c_inv @ phi
        b = phi @ u
        c_inv -= np.outer(u, u) / (np.float32(1.0) + b)
        bonuses[k] = b
    return (time.perf_counter() - t0) / len(phis) * 1e9, bonuses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tm-bin", required=True)
    ap.add_argument("--dims", default="64,256,1024")
    ap.add_argument("--steps", type=int, default=0, help="0 = about 2^28 / d^2 flops' worth")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results-e3b.md"))
    args = ap.parse_args()
    rows = []
    for d in [int(x) for x in args.dims.split(",")]:
        steps = args.steps or max(256, min(20000, (1 << 28) // (d * d)))
        phis = features(steps, d)
        np_ns, np_b = numpy_e3b(phis)
        tm = subprocess.run([args.tm_bin, str(d), str(steps)], check=True, capture_output=True, text=True).stdout.split()
        tm_ns, tm_sum = float(tm[2]), float(tm[4])
        np_sum = float(np_b.astype(np.float64).sum())
        rel = abs(tm_sum - np_sum) / max(abs(np_sum), 1e-30)
        assert rel < 1e-3, f"d={d}: bonus sums differ: tokenmath {tm_sum} numpy {np_sum}"
        rows.append((d, steps, tm_ns, np_ns, rel))
        print(f"d={d:5d} steps={steps:6d} tokenmath {tm_ns/1e3:9.2f} us/step  numpy {np_ns/1e3:9.2f} us/step  "
              f"ratio {np_ns/tm_ns:5.2f}x  bonus-sum rel diff {rel:.1e}")
    with open(args.out, "w") as f:
        f.write("# E3B step: tokenmath vs NumPy (one environment, float32)\n\n")
        f.write(f"NumPy {np.__version__}; BLAS threads: OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; "
                "tokenmath: release build, one thread.\n\n")
        f.write("| d | steps | tokenmath µs/step | NumPy µs/step | NumPy / tokenmath | bonus-sum rel. diff |\n|---|---|---|---|---|---|\n")
        for d, steps, tm_ns, np_ns, rel in rows:
            f.write(f"| {d} | {steps} | {tm_ns/1e3:.2f} | {np_ns/1e3:.2f} | {np_ns/tm_ns:.2f} | {rel:.1e} |\n")


if __name__ == "__main__":
    main()
