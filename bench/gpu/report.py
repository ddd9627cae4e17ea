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
    print()
    print("| op | dtype | shape | tokenmath ms | GB/s | of copy bw (own kernel) | of copy bw (torch) | PyTorch ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (k, op), r in times.items():
        if op == "copy":
            continue
        ms, moved = float(r["ms"]), float(r["bytes"])
        gbps = moved / ms / 1e6
        own_copy = times.get((k, "copy"))
        own = f"{gbps / (float(own_copy['bytes']) / float(own_copy['ms']) / 1e6):.0%}" if own_copy else "-"
        tcopy = torch_ms.get((k, "copy"))
        tfrac = f"{gbps / (float(own_copy['bytes']) / tcopy / 1e6):.0%}" if tcopy and own_copy else "-"
        tref = torch_ms.get((k, "backward" if op.startswith("backward") else "forward"))
        ref = f"{tref:.3f}" if tref else "-"
        speed = f"{tref / ms:.2f}x" if tref else "-"
        print(f"| {op} | {k[0]} | [{k[1]}, {k[2]}] | {ms:.3f} | {gbps:.0f} | {own} | {tfrac} | {ref} | {speed} |")
    print()
    print("Targets: >= 85% of the copy bandwidth, >= 3x PyTorch eager (one run, medians).")


if __name__ == "__main__":
    main()
