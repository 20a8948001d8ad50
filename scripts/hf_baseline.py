#!/usr/bin/env python3
"""The usual way, for comparison: lm-evaluation-harness's `loglikelihood` with Hugging Face
transformers, on exactly the tokens valuelens scores (`valuelens tokenize` writes them).

It follows lm-eval's HFLM._loglikelihood_tokens: requests whose inputs (context + continuation
minus its last token) are identical are computed once (lm-eval's logits cache, on by default);
the rest are sorted longest first, padded on the right into batches, run through the model,
log-softmaxed over the vocabulary at every position, and the continuation tokens' log-probs
read off. The batch size is the largest that keeps `batch x longest input` within
--batch-tokens (what lm-eval's `--batch_size auto` searches for by trial).

The model is a folder `valuelens export` wrote: with weights (loaded with from_pretrained), or
with --without-weights (config.json only: built with random weights, which time the same).

Prints one JSON object (and writes it to --out); --scores writes per-request log-probs as
JSONL for comparing with valuelens on the same weights.
"""

import argparse
import json
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True, help="folder with config.json (and weights)")
    p.add_argument("--tokens", required=True, help="JSONL from `valuelens tokenize`")
    p.add_argument("--limit", type=int, default=None, help="only the first N requests")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-tokens", type=int, default=32768,
                   help="most padded tokens in one batch")
    p.add_argument("--attn", default="sdpa", help="attn_implementation for transformers")
    p.add_argument("--no-logits-cache", action="store_true",
                   help="one forward per request (lm-eval's logits_cache=False)")
    p.add_argument("--out", default=None, help="also write the JSON result here")
    p.add_argument("--scores", default=None, help="write per-request scores (JSONL) here")
    return p.parse_args()


def read_requests(path, limit):
    requests = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                requests.append((r["id"], r["context_tokens"], r["continuation_tokens"]))
            except (ValueError, KeyError) as e:
                sys.exit(f"{path}:{line_no}: not a `valuelens tokenize` line ({e})")
            if limit is not None and len(requests) >= limit:
                break
    if not requests:
        sys.exit(f"{path}: no requests")
    return requests


def load_model(args, torch, transformers):
    dtype = getattr(torch, args.dtype)
    has_weights = any(
        n.endswith(".safetensors") for n in os.listdir(args.model_dir)
    )
    if has_weights:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            args.model_dir, dtype=dtype, attn_implementation=args.attn
        ).to(args.device)
    else:
        config = transformers.AutoConfig.from_pretrained(args.model_dir)
        with torch.device(args.device):
            model = transformers.AutoModelForCausalLM.from_config(
                config, dtype=dtype, attn_implementation=args.attn
            )
    model.eval()
    return model, has_weights


def main():
    args = parse_args()
    import torch
    import torch.nn.functional as F
    import transformers

    requests = read_requests(args.tokens, args.limit)
    started = time.perf_counter()
    model, has_weights = load_model(args, torch, transformers)
    load_s = time.perf_counter() - started
    max_length = model.config.max_position_embeddings

    # lm-eval: inp = (context + continuation)[-(max_length + 1):][:-1]; requests with the same
    # inp share one forward (group_by="contexts").
    groups = {}
    for index, (_, context, continuation) in enumerate(requests):
        if not continuation:
            continue
        inp = tuple((context + continuation)[-(max_length + 1):][:-1])
        key = (index,) if args.no_logits_cache else inp
        groups.setdefault(key, (inp, []))[1].append(index)
    order = sorted(groups.values(), key=lambda g: (-len(g[0]), g[0]))

    scores = [None] * len(requests)

    def run(batch):
        longest = len(batch[0][0])
        ids = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, (inp, _) in enumerate(batch):
            ids[row, : len(inp)] = torch.tensor(inp, dtype=torch.long)
        ids = ids.to(args.device)
        with torch.no_grad():
            logprobs = F.log_softmax(model(ids).logits, dim=-1)
            for row, (inp, members) in enumerate(batch):
                for index in members:
                    continuation = requests[index][2]
                    n = len(continuation)
                    rows = logprobs[row, len(inp) - n : len(inp)]
                    target = torch.tensor(continuation, dtype=torch.long, device=args.device)
                    greedy = bool((rows.argmax(dim=-1) == target).all())
                    token_logprobs = rows.gather(1, target[:, None]).squeeze(1)
                    scores[index] = (token_logprobs, greedy)

    def batches():
        i = 0
        while i < len(order):
            size = max(1, args.batch_tokens // len(order[i][0]))
            yield order[i : i + size]
            i += size

    # Warm-up on the shortest group (CUDA context, kernels, allocator), not timed.
    run([order[-1]])
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    n_batches, padded = 0, 0
    started = time.perf_counter()
    for batch in batches():
        run(batch)
        n_batches += 1
        padded += len(batch) * len(batch[0][0])
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    score_s = time.perf_counter() - started

    request_tokens = sum(len(c) + len(t) for _, c, t in requests)
    computed = sum(len(inp) for inp, _ in order)
    result = {
        "implementation": "transformers (lm-eval loglikelihood)",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "dtype": args.dtype,
        "attn_implementation": args.attn,
        "model_dir": args.model_dir,
        "weights": "loaded" if has_weights else "random (from config)",
        "requests": len(requests),
        "request_tokens": request_tokens,
        "forwards_grouped": len(order),
        "computed_tokens": computed,
        "padded_tokens": padded,
        "batches": n_batches,
        "batch_tokens": args.batch_tokens,
        "logits_cache": not args.no_logits_cache,
        "load_s": load_s,
        "score_s": score_s,
        "requests_per_s": len(requests) / score_s,
        "request_tokens_per_s": request_tokens / score_s,
        "computed_tokens_per_s": computed / score_s,
        "peak_gpu_mb": (torch.cuda.max_memory_allocated() / 2**20
                        if args.device.startswith("cuda") else None),
    }
    if args.scores:
        with open(args.scores + ".tmp", "w") as f:
            for (rid, _, continuation), score in zip(requests, scores):
                token_logprobs = [] if score is None else score[0].float().tolist()
                f.write(json.dumps({
                    "id": rid,
                    "logprob": sum(token_logprobs),
                    "n_tokens": len(continuation),
                    "greedy": True if score is None else score[1],
                    "token_logprobs": token_logprobs,
                }) + "\n")
        os.replace(args.scores + ".tmp", args.scores)
    text = json.dumps(result)
    print(text)
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
