#!/usr/bin/env python3
"""Write a rollout dump for `tokenmath replay` with NumPy alone (the light producer CI runs).

The policy is a toy autoregressive model: a random bigram table plus a per-prompt bias, so
each token's logits depend on the previous token and the prompt. For each of P prompts it
samples G responses of up to T tokens (a response ends at `<eos>`; the rest is padding),
scores them with a toy verifier (reward 1 when the response contains the prompt's answer
word, else 0) and records what a trainer holds at the loss:

    logits [B, T, V]  the current policy's logits for each response token (f32 or bf16)
    tokens [B, T]     the sampled ids (I64), mask [B, T] (U8)
    old_logp, ref_logp [B, T]  log-probs under the rollout policy (the current one before a
                      small update) and under a reference policy
    rewards [B], group_ids [B]

plus `tokenizer.json` beside the dump (a Hugging Face WordLevel tokenizer over the toy
vocabulary) so the report can show words. The same seed gives the same bytes.

    pip install numpy safetensors
    python3 examples/python/dump_rollout_numpy.py --out rollout.safetensors
    tokenmath replay --input rollout.safetensors --algo grpo --report report.html \
        --tokenizer tokenizer.json
"""

import argparse
import json
import os

import numpy as np
from safetensors.numpy import save_file


def vocabulary(v):
    """`<pad>`, `<eos>`, then pronounceable words: ka, ko, …, kaba, …"""
    cons, vows = "bdfgklmnprstvz", "aeiou"
    syll = [c + w for c in cons for w in vows]
    words = ["<pad>", "<eos>"] + syll
    for a in syll:
        for b in syll:
            if len(words) >= v:
                return words[:v]
            words.append(a + b)
    return words[:v]


def log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="rollout.safetensors")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=4, help="responses per prompt (G)")
    ap.add_argument("--len", type=int, default=48, help="max response tokens (T)")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--eos-logit", type=float, default=5.0, help="bias of <eos> (-30: every response T tokens)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default=None, help="where to write tokenizer.json [beside --out]")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    P, G, T, V = args.prompts, args.group, args.len, args.vocab
    B, EOS = P * G, 1
    bigram = rng.normal(0.0, 2.0, size=(V, V)).astype(np.float32)
    bigram[:, 0] = -1e9  # never sample <pad>
    bigram[:, EOS] += np.float32(args.eos_logit)  # 5: responses of a few dozen tokens
    prompt_bias = rng.normal(0.0, 1.0, size=(P, V)).astype(np.float32)
    answers = rng.integers(2, V, size=P)
    for p in range(P):
        prompt_bias[p, answers[p]] += 3.0  # the answer is likely but not certain
    # The rollout policy is the current one before a small update; the reference is further off.
    old_delta = rng.normal(0.0, 0.15, size=(V, V)).astype(np.float32)
    ref_delta = rng.normal(0.0, 0.3, size=(V, V)).astype(np.float32)

    tokens = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, T), dtype=np.uint8)
    logits = np.zeros((B, T, V), dtype=np.float32)
    old_logp = np.zeros((B, T), dtype=np.float32)
    ref_logp = np.zeros((B, T), dtype=np.float32)
    group_ids = np.repeat(np.arange(P, dtype=np.int64), G)
    for b in range(B):
        p, prev = b // G, EOS
        for t in range(T):
            z = bigram[prev] + prompt_bias[p]
            z_old = z - old_delta[prev]
            # Sampled from the rollout (old) policy, as a trainer's generation step does.
            probs = np.exp(log_softmax(z_old.astype(np.float64)))
            tok = int(rng.choice(V, p=probs / probs.sum()))
            tokens[b, t], mask[b, t], logits[b, t] = tok, 1, z
            old_logp[b, t] = log_softmax(z_old.astype(np.float64))[tok]
            ref_logp[b, t] = log_softmax((z + ref_delta[prev]).astype(np.float64))[tok]
            prev = tok
            if tok == EOS:
                break
    rewards = np.array([float(answers[b // G] in tokens[b][mask[b] == 1]) for b in range(B)], dtype=np.float32)

    tensors = {
        "tokens": tokens,
        "mask": mask,
        "old_logp": old_logp,
        "ref_logp": ref_logp,
        "rewards": rewards,
        "group_ids": group_ids,
    }
    if args.dtype == "bf16":
        # bf16 by rounding the f32 bits to nearest even; stored as raw bytes with the BF16 dtype.
        bits = logits.view(np.uint32)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        save_file(tensors, args.out)
        _append_bf16(args.out, "logits", rounded, logits.shape)
    else:
        tensors["logits"] = logits
        save_file(tensors, args.out)

    words = vocabulary(V)
    tok_path = args.tokenizer or os.path.join(os.path.dirname(os.path.abspath(args.out)), "tokenizer.json")
    with open(tok_path, "w") as f:
        json.dump(
            {
                "version": "1.0",
                "truncation": None,
                "padding": None,
                "added_tokens": [],
                "normalizer": None,
                "pre_tokenizer": {"type": "Whitespace"},
                "post_processor": None,
                "decoder": None,
                "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(words)}, "unk_token": "<pad>"},
            },
            f,
        )
    print(
        f"wrote {args.out}: {P} prompts x {G} responses, T={T}, V={V}, {int(mask.sum())} valid tokens, "
        f"mean reward {rewards.mean():.3f}; tokenizer {tok_path}"
    )


def _append_bf16(path, name, u16, shape):
    """Rewrites `path` with one more tensor of dtype BF16 (NumPy has no bfloat16)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [len(data), len(data) + u16.nbytes]}
    data += u16.tobytes()
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw + data)


if __name__ == "__main__":
    main()
