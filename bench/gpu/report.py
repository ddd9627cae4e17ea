"""Merges the RESULT lines of gpu-timing and torch_bench.py into one markdown table:
tokenmath's time, bandwidth, fraction of the copy bandwidth (its own copy kernel and
PyTorch's copy), and speed-up over PyTorch eager. Usage: report.py TOKENMATH.txt TORCH.txt
"""

import sys


def results(path):
    out = []
    with open(path) as f:
        for line in f:
            if line.startswith("RESULT "):
                out.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    return out


def main():
    tm, torch = results(sys.argv[1]), results(sys.argv[2])
    key = lambda r: (r["dtype"], r["rows"], r["cols"])
    times = {(key(r), r["op"]): r for r in tm if r["kind"] == "time"}
    torch_ms = {(key(r), r["op"]): float(r["ms"]) for r in torch if r["kind"] == "torch"}
    for r in tm:
        if r["kind"] == "check":
            print(f"check {r['dtype']} V={r['cols']}: passed={r['passed']}, bitwise equal to core: "
                  f"statistics {float(r['stats_bitwise']):.2%}, gradient {float(r['grad_bitwise']):.2%}")
        if r["kind"] == "check_fast":
            print(f"check fast {r['dtype']} V={r['cols']}: passed={r['passed']}, "
                  f"worst |error| / bound {float(r['worst_ratio']):.3f} (vs f64, hostile rows included)")
        if r["kind"] == "launch_path":
            print(f"check launch path {r['variant']} V={r['cols']} temperature {r['temperature']}: passed={r['passed']}, "
                  f"{r['same']}/{r['total']} bitwise equal to cubecl's launch (NVRTC + cuLaunchKernel)")
    print()
    print("| op | dtype | shape | tokenmath ms | GB/s | of copy bw (own kernel) | of copy bw (torch) | anchors (same run) |")
    print("|---|---|---|---|---|---|---|---|")
    # Which PyTorch / Liger numbers each tokenmath op is compared with.
    anchors = {
        "forward": ["forward", "compile-forward", "liger-logp"],
        "backward": ["backward"],
        "fwd+bwd-inpl": ["liger-ce"],
    }
    for (k, op), r in times.items():
        if op == "copy":
            continue
        ms, moved = float(r["ms"]), float(r["bytes"])
        gbps = moved / ms / 1e6
        own_copy = times.get((k, "copy"))
        own = f"{gbps / (float(own_copy['bytes']) / float(own_copy['ms']) / 1e6):.0%}" if own_copy else "-"
        tcopy = torch_ms.get((k, "copy"))
        tfrac = f"{gbps / (float(own_copy['bytes']) / tcopy / 1e6):.0%}" if tcopy and own_copy else "-"
        # forward-256t -> forward, backward-inpl -> backward, fwd+bwd-inpl stays.
        plain = op.removeprefix("fast-")
        base = plain if plain == "fwd+bwd-inpl" else plain.split("-")[0]
        notes = []
        for a in anchors.get(base, []):
            if (k, a) in torch_ms:
                t = torch_ms[(k, a)]
                notes.append(f"{a} {t:.3f} ms ({t / ms:.2f}x)")
        print(f"| {op} | {k[0]} | [{k[1]}, {k[2]}] | {ms:.3f} | {gbps:.0f} | {own} | {tfrac} | {'; '.join(notes) or '-'} |")
    print()
    print("Anchor ratios are anchor time / tokenmath time (> 1: tokenmath is faster). One run, medians.")
    print("forward anchors: PyTorch eager, torch.compile (lse, logp, entropy), Liger selective log-softmax")
    print("(logp only); backward: PyTorch autograd; fwd+bwd-inpl: Liger cross entropy (loss + gradient in place).")


if __name__ == "__main__":
    main()
