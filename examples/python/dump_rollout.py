#!/usr/bin/env python3
"""Write a rollout dump for `tokenmath replay` from a real Hugging Face causal LM.

A small randomly initialised Llama (`transformers.LlamaConfig`, nothing downloaded) with a
byte-level BPE tokenizer trained here on a few lines of text (`tokenizers`). For each of P
arithmetic prompts ("3+4=") it samples G responses with `model.generate` (the rollout
policy), scores them with a toy verifier (reward 1 when the decoded response contains the
right sum), then takes one small update of the weights as "the current policy" and records
what a trainer holds at the loss:

    logits [B, T, V] (f32)  the current policy's logits, shifted so that logits[b, t] is the
                            distribution of tokens[b, t] (HF: logits[:, P-1:-1])
    tokens [B, T] (I64), mask [B, T] (U8: up to and including <eos>)
    old_logp [B, T]   log-probs under the rollout policy (generate's own logits)
    ref_logp [B, T]   log-probs under a reference policy (the rollout weights, perturbed)
    rewards [B], group_ids [B]

and tokenizer.json beside it. `cli/tests/data/rollout_hf.safetensors` is this script's output
(`--len 16 --dtype bf16`), replayed by `cli/tests/replay.rs`.

    pip install torch transformers safetensors   # PyPI's torch: ~3 GB of wheels, 5.6 GB installed
    python3 examples/python/dump_rollout.py --out rollout_hf.safetensors
    tokenmath replay --input rollout_hf.safetensors --algo grpo --tokenizer tokenizer.json \
        --report report.html
"""

import argparse
import os

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

CORPUS = [
    "The sum of three and four is seven.",
    "What is 2+5? The answer is 7.",
    "Add the numbers: 1+1=2, 2+2=4, 3+3=6, 4+4=8.",
    "A policy samples tokens; a verifier checks the answer.",
    "Nine minus four is five, and five plus one is six.",
] * 20


def tokenizer(vocab):
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(CORPUS, trainer)
    return tk


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="rollout_hf.safetensors")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=4, help="responses per prompt (G)")
    ap.add_argument("--len", type=int, default=24, help="max new tokens (T)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="of the logits")
    ap.add_argument("--tokenizer", default=None, help="where to write tokenizer.json [beside --out]")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    tk = tokenizer(320)
    pad, eos = tk.token_to_id("<pad>"), tk.token_to_id("<eos>")
    V = tk.get_vocab_size()
    cfg = LlamaConfig(
        vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=pad, eos_token_id=eos, bos_token_id=eos,
    )
    rollout_model = LlamaForCausalLM(cfg).eval()

    P, G, T = args.prompts, args.group, args.len
    pairs = [(int(a), int(b)) for a, b in torch.randint(0, 5, (P, 2), generator=gen)]
    prompts = [f"{a}+{b}=" for a, b in pairs]
    ids = [tk.encode(p).ids for p in prompts]
    width = max(len(i) for i in ids)
    prompt_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids])  # left-padded
    prompt_mask = (prompt_ids != pad).long()

    with torch.no_grad():
        out = rollout_model.generate(
            input_ids=prompt_ids.repeat_interleave(G, 0), attention_mask=prompt_mask.repeat_interleave(G, 0),
            do_sample=True, top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=T, min_new_tokens=1,
            pad_token_id=pad, eos_token_id=eos, return_dict_in_generate=True, output_logits=True,
        )
    seq = out.sequences  # [B, width + T']
    B, Tg = seq.shape[0], seq.shape[1] - width
    tokens = torch.full((B, T), pad, dtype=torch.long)
    tokens[:, :Tg] = seq[:, width:]
    # The mask: every token up to and including the first <eos>.
    is_eos = (tokens == eos).long()
    mask = ((is_eos.cumsum(1) - is_eos) == 0).to(torch.uint8)
    mask[:, Tg:] = 0
    old_logits = torch.stack(out.logits, 1).float()  # [B, T', V], the rollout policy's
    old_logp = torch.zeros(B, T)
    old_logp[:, :Tg] = torch.log_softmax(old_logits, -1).gather(-1, tokens[:, :Tg, None])[..., 0]

    def perturbed(model, scale, seed):
        g = torch.Generator().manual_seed(seed)
        m = LlamaForCausalLM(cfg).eval()
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=g) * scale * p.abs().mean().clamp(min=1e-3))
        return m

    # One "update" large enough that some ratios leave the clip range.
    current, reference = perturbed(rollout_model, 0.5, 1), perturbed(rollout_model, 0.5, 2)
    full = torch.cat([prompt_ids.repeat_interleave(G, 0), tokens], 1)
    attn = torch.cat([prompt_mask.repeat_interleave(G, 0), torch.ones(B, T, dtype=torch.long)], 1)
    pos = (attn.cumsum(1) - 1).clamp(min=0)

    def response_logits(model):
        with torch.no_grad():
            z = model(input_ids=full, attention_mask=attn, position_ids=pos).logits.float()
        return z[:, width - 1 : width - 1 + T]  # logits[b, t] predicts tokens[b, t]

    logits = response_logits(current).contiguous()
    if args.dtype == "bf16":
        logits = logits.to(torch.bfloat16)
    ref_logp = torch.log_softmax(response_logits(reference), -1).gather(-1, tokens[..., None])[..., 0]

    def verify(b):
        text = tk.decode([int(i) for i, m in zip(tokens[b], mask[b]) if m and i != eos])
        return float(str(sum(pairs[b // G])) in text)

    rewards = torch.tensor([verify(b) for b in range(B)])
    save_file(
        {
            "logits": logits, "tokens": tokens, "mask": mask, "old_logp": old_logp.contiguous(),
            "ref_logp": ref_logp.contiguous(), "rewards": rewards,
            "group_ids": torch.arange(P).repeat_interleave(G),
        },
        args.out,
        metadata={"producer": "examples/python/dump_rollout.py", "model": "LlamaForCausalLM (random init)"},
    )
    tk.save(args.tokenizer or os.path.join(os.path.dirname(os.path.abspath(args.out)), "tokenizer.json"))
    print(f"wrote {args.out}: {P} prompts x {G} responses, T={T}, V={V}, {int(mask.sum())} valid tokens, "
          f"mean reward {rewards.mean():.3f}")


if __name__ == "__main__":
    main()
