#!/usr/bin/env python3
"""Static cost report: per kernel variant, the SASS instructions per element of its
steady-state loops, from the cubins compiled by nvrtc_sass.py.

usage: sass_cost.py SASS_DIR MANIFEST [--filter SUBSTRING]...
MANIFEST (written by `cargo run --example cuda_sources`): one line per variant, its name
then the elements one thread handles per iteration of each global-memory loop, in address
order (0: a loop that is not steady state, such as the one over a row's last, partial
granule). A global-memory loop is an innermost loop (a backward branch whose body holds no
other backward branch) that reads global memory (LDG) and holds no warp shuffle or barrier.
The cost of a variant is the sum over those loops of instructions per iteration / elements
per iteration: the thread-instructions spent per element at steady state. Loops over shared
memory only (LDS: the canonical kernels' staged stages, the fast mode's segment tree) are
listed beside it with their sizes; for the canonical block kernel they dominate (see
gpu/README.md for how they count per element)."""
import os, re, sys

sass_dir, manifest = sys.argv[1], sys.argv[2]
filters = [a for a in sys.argv[3:] if a != "--filter"]
LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")

def parse(path):
    instrs = []
    for line in open(path):
        m = LINE.search(line)
        if m:
            instrs.append((int(m.group(1), 16), m.group(3), m.group(4)))
    return instrs

def loops(instrs):
    addr_index = {a: i for i, (a, _, _) in enumerate(instrs)}
    found = []
    for i, (a, op, args) in enumerate(instrs):
        if op.startswith("BRA") and not op.startswith("BRA.DIV"):
            t = re.search(r"0x([0-9a-f]+)", args)
            if t and int(t.group(1), 16) <= a and int(t.group(1), 16) in addr_index:
                found.append((addr_index[int(t.group(1), 16)], i))
    inner = [(s, e) for (s, e) in found if not any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for (s2, e2) in found)]
    steady, shared = [], []
    for s, e in sorted(inner):
        ops = [op for _, op, _ in instrs[s:e + 1]]
        if any(o.startswith(("SHFL", "BAR")) for o in ops):
            continue
        if any(o.startswith("LDG") for o in ops):
            steady.append(e - s + 1)
        elif any(o.startswith("LDS") for o in ops):
            shared.append(e - s + 1)
    return steady, shared

rows = []
for line in open(manifest):
    parts = line.rstrip("\n").split("\t")
    name, elems = parts[0], [float(x) for x in parts[1:] if x]
    if filters and not any(f in name for f in filters):
        continue
    path = os.path.join(sass_dir, name + ".sass")
    if not elems or not os.path.exists(path):
        continue
    steady, shared = loops(parse(path))
    if len(steady) < len(elems):
        rows.append((name, None, f"expected {len(elems)} global-memory loops, found {steady}", shared))
        continue
    counted = [(size, e) for size, e in zip(steady, elems) if e > 0]
    cost = sum(size / e for size, e in counted)
    detail = ", ".join(f"{size}/{e:g}" for size, e in counted)
    rows.append((name, cost, detail, shared))

width = max((len(r[0]) for r in rows), default=10)
print(f"{'kernel variant':<{width}}  instr/elem  global loops (instr/elements)  shared-memory loops (instr)")
for name, cost, detail, shared in rows:
    print(f"{name:<{width}}  {'?' if cost is None else f'{cost:10.1f}'}  {detail:<30}  {shared if shared else ''}")
if any(cost is None for _, cost, _, _ in rows):
    sys.exit("a kernel's loops do not match its manifest (see above)")
