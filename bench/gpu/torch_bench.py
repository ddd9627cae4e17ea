"""PyTorch eager baselines for bench/gpu/run.sh, timed with CUDA events (median of 10 after
2 warm-up runs):

* forward: log-sum-exp, target log-prob (gather) and entropy in fp32, as verl and TRL
  compute them from bf16 logits (`logits.float()`);
* backward: autograd of `mean NLL - 0.01 * mean entropy` w.r.t. the logits (the forward
  graph is rebuilt each time; only `backward()` is timed);
* copy: `dst.copy_(src)`, the device-to-device bandwidth yardstick;
* compile-forward: `torch.compile` of the same forward (compile time excluded);
* liger-ce: Liger-Kernel 0.8.5's cross entropy forward, which computes the loss and writes the
  gradient over the logits in one launch (the anchor of tokenmath's fused forward + backward);
* liger-logp: Liger's `fused_selective_log_softmax` (target log-probs only, temperature 1),
  on the rows viewed as one sequence.

Liger is imported if installed (bench/gpu/run.sh installs it from a wheel beside it).

Prints `RESULT kind=torch op=... dtype=... rows=... cols=... ms=...` lines.
"""

import argparse

import torch

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def timed(fn, warmup=2, reps=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def forward(x, targets):
    z = x.float()
    lse = torch.logsumexp(z, dim=-1)
    logp = z.gather(-1, targets[:, None]).squeeze(-1) - lse
    p = torch.softmax(z, dim=-1)
    entropy = lse - (p * z).sum(-1)
    return lse, logp, entropy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="bf16:8192:151936,f32:4096:32768")
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    for shape in args.shapes.split(","):
        name, rows, cols = shape.split(":")
        rows, cols, dtype = int(rows), int(cols), DTYPES[name]
        x = (torch.randn(rows, cols, device="cuda") * 2).to(dtype)
        targets = torch.randint(0, cols, (rows,), device="cuda")
        dst = torch.empty_like(x)
        results = {"copy": timed(lambda: dst.copy_(x))}
        with torch.no_grad():
            results["forward"] = timed(lambda: forward(x, targets))
        try:
            compiled = torch.compile(forward)
            with torch.no_grad():
                compiled(x, targets)
                results["compile-forward"] = timed(lambda: compiled(x, targets))
        except Exception as e:  # noqa: BLE001 - report, keep the other columns
            print(f"torch.compile: unavailable ({type(e).__name__}: {e})")
        try:
            from liger_kernel.ops.cross_entropy import LigerCrossEntropyFunction
            from liger_kernel.ops.grpo_loss import fused_selective_log_softmax

            xl = x.clone()
            # The forward computes the loss and writes the gradient into xl (in place).
            results["liger-ce"] = timed(
                lambda: LigerCrossEntropyFunction.apply(xl, targets, None, -100, 0.0, 0.0, "mean", None, False)
            )
            del xl
            seq = x.view(1, rows, cols)
            ids = targets.view(1, rows)
            results["liger-logp"] = timed(lambda: fused_selective_log_softmax(seq, ids, temperature=1.0))
        except ImportError as e:
            print(f"Liger-Kernel: not installed ({e})")
        xg = x.detach().requires_grad_(True)

        def backward():
            lse, logp, entropy = forward(xg, targets)
            loss = -logp.mean() - 0.01 * entropy.mean()
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss.backward()
            end.record()
            torch.cuda.synchronize()
            xg.grad = None
            return start.elapsed_time(end)

        for _ in range(2):
            backward()
        bwd = sorted(backward() for _ in range(10))
        results["backward"] = bwd[len(bwd) // 2]
        for op, ms in results.items():
            print(f"torch {op:<9} {name:>4} [{rows}, {cols}]: {ms:9.3f} ms")
            print(f"RESULT kind=torch op={op} dtype={name} rows={rows} cols={cols} ms={ms:.4f}")
        del x, dst, xg
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
