#!/usr/bin/env bash
# The replay report in a real browser: Debian's headless Chromium opens reports made by
# `tokenmath replay` from dumps of examples/python/dump_rollout_numpy.py and this checks
#
#   * no console message at all (errors, uncaught exceptions, CSP violations: Chromium logs
#     them as CONSOLE lines on stderr with --enable-logging=stderr), and the page's own
#     count of script errors and console.error calls (#selftest data-errors) is 0;
#   * the DOM after load (--dump-dom) holds exactly one token cell (span.tok) per unmasked
#     token of each response drawn on the page, counted against the dump's mask with NumPy;
#   * a 64k-token dump (256 responses x 256 tokens, bf16 logits) embeds all 65,536 tokens, draws one page
#     (16 responses) and records how long drawing took (#selftest data-ms);
#
# and saves a screenshot of the first report as target/replay-report.png.
#
# Driver [library choice]: Chromium's own --dump-dom and --screenshot, one process each,
# with the page writing what it drew into the DOM. No WebDriver/CDP client is needed, so
# nothing but Debian's chromium package and the NumPy producer's two pip packages (numpy,
# safetensors) is installed, and nothing is fetched at run time.
# Needs: chromium, python3 with numpy and safetensors (scripts/check-prereqs.sh checks).
set -euo pipefail
cd "$(dirname "$0")/../../.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
work="$target/replay-browser"
rm -rf "$work"
mkdir -p "$work"
# The test profile: after test.sh's `cargo test -p tokenmath-cli` this builds nothing new.
cargo build --profile test -p tokenmath-cli --quiet
tokenmath="$target/debug/tokenmath"

chromium_run() { # profile-name, chromium arguments...
    local profile="$work/profile-$1"
    shift
    rm -rf "$profile" && mkdir -p "$profile"
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --enable-logging=stderr --v=0 "$@"
}

# check NAME DUMP ALGO [max-ms]: replay DUMP, open the report, check it.
check() {
    local name="$1" dump="$2" algo="$3" max_ms="${4:-}"
    local report="$work/$name.html"
    "$tokenmath" replay --input "$dump" --algo "$algo" --report "$report" \
        --tokenizer "$(dirname "$dump")/tokenizer.json" >"$work/$name.txt"
    chromium_run "$name" --dump-dom "file://$report" >"$work/$name.dom.html" 2>"$work/$name.chromium.log"
    if grep -n ':CONSOLE' "$work/$name.chromium.log"; then
        echo "browser test ($name): the page logged to the console (above)" >&2
        exit 1
    fi
    python3 - "$work/$name.dom.html" "$dump" "$name" "$max_ms" <<'PY'
import sys
from html.parser import HTMLParser

from safetensors import safe_open

dom_path, dump_path, name, max_ms = sys.argv[1:5]
with safe_open(dump_path, "np") as f:  # the mask alone: NumPy has no bfloat16 for the logits
    mask = f.get_tensor("mask")


class Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.order, self.cells, self.selftest = [], {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "div" and "resp" in classes:
            self.order.append(int(a["data-response"]))
            self.cells[self.order[-1]] = 0
        elif tag == "span" and "tok" in classes:
            self.cells[self.order[-1]] += 1
        elif a.get("id") == "selftest":
            self.selftest = a


p = Cells()
p.feed(open(dom_path, encoding="utf-8").read())
st = p.selftest
assert st is not None and st.get("data-cells") is not None, f"{name}: the page did not finish drawing"
assert st["data-errors"] == "0", f"{name}: script errors: {st.get('data-errortext')}"
shown = [int(s) for s in st["data-shown"].split(",")]
assert p.order == shown, f"{name}: responses in the DOM {p.order} != the page's {shown}"
assert 0 < len(shown) <= 16, f"{name}: {len(shown)} responses on the page"
for s in shown:
    want = int(mask[s].sum())
    assert p.cells[s] == want, f"{name}: response {s} has {p.cells[s]} cells, {want} unmasked tokens"
total = sum(p.cells.values())
assert int(st["data-cells"]) == total, f"{name}: the page counted {st['data-cells']} cells, the DOM holds {total}"
ms = float(st["data-ms"])
if max_ms:
    assert ms <= float(max_ms), f"{name}: drawing took {ms} ms (> {max_ms})"
print(f"browser test ({name}): {len(shown)} responses, {total} cells = unmasked tokens, "
      f"no console messages, drawn in {ms:.1f} ms")
PY
}

mkdir -p "$work/small"
python3 examples/python/dump_rollout_numpy.py --out "$work/small/rollout.safetensors" >/dev/null
check small "$work/small/rollout.safetensors" dapo

mkdir -p "$work/large"
python3 examples/python/dump_rollout_numpy.py --out "$work/large/rollout.safetensors" --prompts 64 --group 4 \
    --len 256 --vocab 64 --eos-logit -30 --dtype bf16 >/dev/null
check large "$work/large/rollout.safetensors" grpo 2000
python3 - "$work/large.html" <<'PY'
import json, re, sys
html = open(sys.argv[1], encoding="utf-8").read()
data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S).group(1))
n = sum(len(t["text"]) for t in data["tokens"].values())
assert n == 65536, n
print(f"browser test (large): {n} tokens embedded, report {len(html) / 2**20:.1f} MiB")
PY

chromium_run shot --window-size=1400,1600 --screenshot="$target/replay-report.png" "file://$work/small.html" \
    >/dev/null 2>"$work/shot.chromium.log"
test -s "$target/replay-report.png"
echo "browser test: screenshot $target/replay-report.png"
