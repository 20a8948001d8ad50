#!/usr/bin/env python3
"""Tiny random-weight checkpoints of each architecture valuelens runs beyond its registry models,
with HF transformers' own f32 log-likelihoods as references: the fixtures of tests/architectures.rs
(tests/fixtures/architectures/<name>/).

Not for CI: it needs torch and transformers (a multi-GB install) and llama.cpp's converter. Make a
venv outside the repository and run it there:

    python3 -m venv ../ref-env && ../ref-env/bin/pip install torch transformers gguf safetensors sentencepiece
    # llama.cpp's convert_hf_to_gguf.py and its gguf-py, e.g. from the llama-cpp-python sdist (vendor/llama.cpp)
    ../ref-env/bin/python scripts/make_arch_fixtures.py --llama-cpp LLAMA_CPP_DIR \\
        --tokenizer TOKENIZER_DIR [--only llama3,mistral]

TOKENIZER_DIR is SmolLM2's tokenizer as `valuelens export --tokenizer-only` writes it: every
fixture uses it (the numerics do not depend on which tokenizer; its vocabulary keeps the files small
and llama.cpp's converter knows its pre-tokenizer). For each architecture the script

1. builds the model from a small config (hidden 32, 3 layers, sliding windows and original contexts
   of 32-64 tokens so that the requests run past them) with seeded random weights: matrices with a
   spread that makes the logits far from uniform, every norm weight with noise, so a misplaced norm
   or a wrong rotary frequency shows;
2. saves it as a safetensors folder in float16 (float32 where noted; config.json,
   model.safetensors, the tokenizer), then reloads it in float32 — the reference computes with
   exactly the stored weights;
3. scores the requests as lm-evaluation-harness's `loglikelihood` does (tokens of context +
   continuation split at the context's length; the tokenizer's own BOS rule), in float32;
4. converts the folder to GGUF (in the same float type) with llama.cpp's convert_hf_to_gguf.py.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

# Shared by every architecture: the sizes, the tokenizer's vocabulary and special tokens.
COMMON = dict(
    vocab_size=49152,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
)

ARCHITECTURES = {
    # Llama 3.x: llama3 RoPE scaling whose original context (64) the requests exceed; its three
    # frequency bands all occur for head_dim 16 and base 500 000.
    "llama3": dict(
        model_type="llama",
        head_dim=16,
        num_attention_heads=2,
        num_key_value_heads=1,
        rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=64),
    ),
    # Mistral: llama's block with a sliding window (32) and a head_dim that is not hidden / heads.
    "mistral": dict(
        model_type="mistral",
        head_dim=16,
        sliding_window=32,
        rope_theta=1000000.0,
    ),
    # Gemma 2: soft-capped attention and final logits (caps low enough to bind), alternating
    # sliding-window (32) and global layers, query_pre_attn_scalar, pre/post norms, GeGLU; a
    # sentencepiece tokenizer (llama.cpp's converter takes Gemma 2's vocabulary from
    # tokenizer.model only).
    # Stored in float32: llama.cpp's converter adds Gemma's norm +1 in the stored dtype, which
    # in float16 would round the norms away from the weights transformers uses.
    "gemma2": dict(
        model_type="gemma2",
        tokenizer="sentencepiece",
        dtype="float32",
        vocab_size=2048,
        bos_token_id=2,
        eos_token_id=1,
        pad_token_id=0,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=32,
        attn_logit_softcapping=2.0,
        final_logit_softcapping=3.0,
        hidden_activation="gelu_pytorch_tanh",
        rope_theta=10000.0,
    ),
    # Phi-3 / 3.5: fused qkv_proj and gate_up_proj; longrope scaling with short and long factors
    # and the attention factor √(1 + ln(4096/64) / ln 64), the long factors for inputs longer
    # than the original context (64); a sliding window (48). head_dim = hidden / heads = 16.
    "phi3": dict(
        model_type="phi3",
        tokenizer_class="GPT2Tokenizer",
        num_attention_heads=2,
        num_key_value_heads=1,
        sliding_window=48,
        rope_theta=10000.0,
        original_max_position_embeddings=64,
        rope_scaling=dict(rope_type="longrope",
                          short_factor=[1.0 + 0.05 * i for i in range(8)],
                          long_factor=[1.0 + 3.0 * i for i in range(8)]),
    ),
    # Qwen3: per-head RMSNorm on Q and K, no QKV bias, explicit head_dim.
    "qwen3": dict(
        model_type="qwen3",
        head_dim=16,
        rope_theta=1000000.0,
        use_sliding_window=False,
    ),
}


def build(name, spec, seed):
    fields = {**COMMON, **spec}
    model_type = fields.pop("model_type")
    for key in ("tokenizer", "dtype", "tokenizer_class"):
        fields.pop(key, None)
    config = AutoConfig.for_model(model_type, **fields)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() == 1:
                # Norm weights (and biases): around their identity with noise. Gemma-style norms
                # store w with (1 + w) applied, whose identity is 0.
                centre = 0.0 if "gemma" in model_type else 1.0
                p.copy_(centre + 0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (0.6 / p.shape[-1] ** 0.5 if "embed" not in pname else 0.5))
    return model


def requests(shared):
    """Every fifth request of SmolLM2's fixture (Task 1, Task 2 and the edge cases; up to 2,500
    tokens) and a few short ones that stay inside the smallest window."""
    path = os.path.join(shared, "fixtures", "smollm2-135m", "requests.jsonl")
    picked = [json.loads(line) for i, line in enumerate(open(path)) if i % 5 == 0]
    picked += [
        {"id": "short-0", "context": "The capital of France is", "continuation": " Paris"},
        {"id": "short-1", "context": "One, two, three,", "continuation": " four, five"},
        {"id": "short-2", "context": "Values:", "continuation": " honesty and fairness"},
    ]
    return picked


def sentencepiece_tokenizer(hf, via_csv):
    """A 2,048-piece sentencepiece BPE model trained on VIA text with Gemma's settings (byte
    fallback, no dummy prefix, digits split, no normalisation), saved as tokenizer.model and as
    the tokenizer.json transformers' GemmaTokenizer converts it to."""
    import csv
    import tempfile

    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        rows = list(csv.DictReader(open(via_csv, encoding="utf-8")))
        text = os.path.join(tmp, "text.txt")
        with open(text, "w", encoding="utf-8") as f:
            f.write("\n".join(r["generation_prompt"][:2000] for r in rows[:3000]))
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(
            input=text, model_prefix=prefix, vocab_size=2048, model_type="bpe",
            byte_fallback=True, add_dummy_prefix=False, normalization_rule_name="identity",
            split_digits=True, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
            pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
            bos_piece="<bos>", unk_piece="<unk>",
            user_defined_symbols=["<start_of_turn>", "<end_of_turn>"], num_threads=1,
            minloglevel=2)
        source = os.path.join(tmp, "tokenizer")
        os.makedirs(source)
        shutil.copy(prefix + ".model", os.path.join(source, "tokenizer.model"))
        with open(os.path.join(source, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>",
                       "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                       "add_bos_token": True}, f)
        AutoTokenizer.from_pretrained(source).save_pretrained(hf)
        shutil.copy(prefix + ".model", os.path.join(hf, "tokenizer.model"))


def score(model, tok, reqs):
    out = []
    with torch.inference_mode():
        for r in reqs:
            c0, k0 = r["context"], r["continuation"]
            n_sp = len(c0) - len(c0.rstrip())
            if n_sp:
                c0, k0 = c0[:-n_sp], c0[-n_sp:] + k0
            ctx = tok(c0).input_ids
            whole = tok(c0 + k0).input_ids
            n_ctx = len(ctx)
            # The model reads the tokens but the last, as lm-eval feeds it (which matters where
            # the input's length chooses the RoPE factors: Phi-3's longrope).
            logits = model(input_ids=torch.tensor([whole[:-1]])).logits[0].float()
            rows = torch.log_softmax(logits[n_ctx - 1:len(whole) - 1], -1)
            tgt = torch.tensor(whole[n_ctx:])
            tl = rows.gather(1, tgt[:, None])[:, 0]
            out.append({
                "id": r["id"], "logprob": float(tl.sum()), "n_tokens": len(tgt),
                "greedy": bool((rows.argmax(-1) == tgt).all()),
                "context_tokens": whole[:n_ctx], "continuation_tokens": whole[n_ctx:],
                "token_logprobs": [float(x) for x in tl],
            })
    return out


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp source folder (convert_hf_to_gguf.py, gguf-py)")
    ap.add_argument("--tokenizer", required=True, help="SmolLM2's tokenizer folder (valuelens export --tokenizer-only)")
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "architectures"))
    ap.add_argument("--only", default=None, help="comma-separated architecture names")
    ap.add_argument("--via", default=os.path.join(os.path.dirname(__file__), "..", "data",
                                                  "value_action_gap_full_data_generation.csv"),
                    help="the VIA CSV, text to train the sentencepiece tokenizer on")
    args = ap.parse_args()
    torch.set_num_threads(2)
    names = args.only.split(",") if args.only else list(ARCHITECTURES)
    reqs = requests(args.shared)
    for seed, name in enumerate(names):
        folder = os.path.join(args.out, name)
        hf = os.path.join(folder, "hf")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(hf)
        model = build(name, ARCHITECTURES[name], 1000 + seed)
        dtype = ARCHITECTURES[name].get("dtype", "float16")
        model.to(getattr(torch, dtype)).save_pretrained(hf, safe_serialization=True)
        if ARCHITECTURES[name].get("tokenizer") == "sentencepiece":
            sentencepiece_tokenizer(hf, args.via)
        else:
            shutil.copy(os.path.join(args.tokenizer, "tokenizer.json"), hf)
            # tokenizer.json as it is: without a class, transformers picks the model type's
            # own tokenizer class, which may rebuild the pre-tokenizer.
            with open(os.path.join(args.tokenizer, "tokenizer_config.json")) as f:
                tokenizer_config = json.load(f)
            tokenizer_config["tokenizer_class"] = ARCHITECTURES[name].get(
                "tokenizer_class", "PreTrainedTokenizerFast")
            with open(os.path.join(hf, "tokenizer_config.json"), "w") as f:
                json.dump(tokenizer_config, f, indent=2)
        # The reference computes in float32 with exactly the stored (float16) weights, with
        # the eager attention that applies soft-capping.
        model = AutoModelForCausalLM.from_pretrained(
            hf, dtype=torch.float32, attn_implementation="eager").eval()
        tok = AutoTokenizer.from_pretrained(hf)
        write_jsonl(os.path.join(folder, "requests.jsonl"), reqs)
        write_jsonl(os.path.join(folder, "reference.jsonl"), score(model, tok, reqs))
        env = dict(os.environ, PYTHONPATH=os.path.join(args.llama_cpp, "gguf-py"))
        subprocess.run([sys.executable, os.path.join(args.llama_cpp, "convert_hf_to_gguf.py"), hf,
                        "--outtype", {"float16": "f16", "float32": "f32"}[dtype],
                        "--outfile", os.path.join(folder, "model.gguf")],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        sizes = {f: os.path.getsize(os.path.join(folder, f)) for f in ("model.gguf",)}
        sizes["hf/model.safetensors"] = os.path.getsize(os.path.join(hf, "model.safetensors"))
        print(name, sizes, file=sys.stderr)


if __name__ == "__main__":
    main()
