#!/usr/bin/env bash
# lm-evaluation-harness on one task through two backends with the same weights, back to back:
# its own Hugging Face transformers backend (`--model hf`, on `valuelens export`'s safetensors
# folder) and `--model local-completions` against `valuelens serve`. Prints both accuracies,
# both times, how far the per-choice log-likelihoods lie apart and what the server's prefix
# cache did, and writes them as JSON (OUT).
#
# Three settings (MODE):
#   f32   valuelens serve --dtype f32   against  hf dtype=float32   (equal accuracies expected)
#   fast  valuelens serve (its default dtype)  against  hf dtype=bfloat16
#   bf16  valuelens serve --dtype bf16  against  hf dtype=bfloat16  (on a CPU with AMX-BF16
#         both multiply in AMX tiles)
#
# Not part of CI: it needs lm-eval and torch, installed in a virtual environment outside the
# repository, e.g.  python3 -m venv /tmp/lmeval && /tmp/lmeval/bin/pip install "lm-eval[api,hf]==0.4.13"
#
# usage: VENV=/tmp/lmeval scripts/lm-eval-compare.sh [TASK]
#   TASK  via_value_action (two choices, the default; LIMIT 1000) or via_value_action_4way
#         (four choices, 5-shot; LIMIT 200)
#   MODE=f32|fast|bf16 (default f32), MODEL=smollm2-135m, BATCH=64 (lm-eval's --batch_size),
#   CONCURRENT=1 (lm-eval's num_concurrent), CACHE_MB (serve's --prefix-cache-mb, its
#   default if unset), OUT (default benches/results/lm-eval-TASK-MODE.json)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:?set VENV to a virtual environment with lm-eval and torch}
TASK=${1:-via_value_action}
case "$TASK" in
    via_value_action) LIMIT=${LIMIT:-1000} ;;
    via_value_action_4way) LIMIT=${LIMIT:-200} ;;
    *) echo "unknown task $TASK (via_value_action or via_value_action_4way)" >&2; exit 2 ;;
esac
MODE=${MODE:-f32}
case "$MODE" in
    f32) serve_dtype=(--dtype f32); hf_dtype=float32 ;;
    fast) serve_dtype=(); hf_dtype=bfloat16 ;;
    bf16) serve_dtype=(--dtype bf16); hf_dtype=bfloat16 ;;
    *) echo "unknown MODE $MODE (f32, fast or bf16)" >&2; exit 2 ;;
esac
MODEL=${MODEL:-smollm2-135m}
BATCH=${BATCH:-64}
CONCURRENT=${CONCURRENT:-1}
OUT=${OUT:-benches/results/lm-eval-$TASK-$MODE.json}
cache=()
[ -n "${CACHE_MB:-}" ] && cache=(--prefix-cache-mb "$CACHE_MB")
work=$(mktemp -d /tmp/lm-eval-compare.XXXX)
server=""
trap '[ -n "$server" ] && kill -TERM "$server" 2>/dev/null; true' EXIT

cargo build --release -q
bin=target/release/valuelens
python3 examples/lm-eval/make_task.py >/dev/null
$bin export --model "$MODEL" --out "$work/hf" >/dev/null
common=(--tasks "$TASK" --include_path examples/lm-eval --limit "$LIMIT" --log_samples)

$bin serve --model "$MODEL" --name "$MODEL" --port 0 "${serve_dtype[@]}" "${cache[@]}" \
    2>"$work/serve.log" &
server=$!
until grep -q "at http://" "$work/serve.log"; do
    kill -0 "$server" || { cat "$work/serve.log"; exit 1; }
    sleep 0.2
done
address=$(grep -o '127.0.0.1:[0-9]*' "$work/serve.log" | head -1)
start=$(date +%s.%N)
"$VENV/bin/lm_eval" --model local-completions \
    --model_args "model=$MODEL,base_url=http://$address/v1/completions,tokenizer_backend=remote,tokenized_requests=True,num_concurrent=$CONCURRENT,max_retries=3" \
    --batch_size "$BATCH" "${common[@]}" --output_path "$work/served" >"$work/served.log" 2>&1
served_s=$(echo "$(date +%s.%N) - $start" | bc)
"$VENV/bin/python" -c "import json, sys, urllib.request; json.dump(json.load(urllib.request.urlopen(sys.argv[1])), open(sys.argv[2], 'w'))" \
    "http://$address/health" "$work/health.json"
kill -TERM "$server"; wait "$server" || true; server=""
tail -2 "$work/serve.log"

start=$(date +%s.%N)
"$VENV/bin/lm_eval" --model hf \
    --model_args "pretrained=$work/hf,dtype=$hf_dtype" --device cpu \
    --batch_size "$BATCH" "${common[@]}" --output_path "$work/hf-out" >"$work/hf.log" 2>&1
hf_s=$(echo "$(date +%s.%N) - $start" | bc)

"$VENV/bin/python" - "$work" "$served_s" "$hf_s" "$OUT" "$TASK" "$MODE" "$hf_dtype" "$LIMIT" \
    "$BATCH" "$CONCURRENT" "$MODEL" "$(git rev-parse --short HEAD)" \
    "$(head -1 "$work/serve.log" | grep -o '\[[^]]*\]' | tr -d '[]')" <<'PY'
import datetime, glob, json, os, platform, sys
import lm_eval, torch, transformers
(work, served_s, hf_s, out, task, mode, hf_dtype, limit, batch, concurrent, model,
 commit, serve_setting) = sys.argv[1:]
served_s, hf_s = float(served_s), float(hf_s)
def load(name):
    results = json.load(open(sorted(glob.glob(f"{work}/{name}/**/results_*.json", recursive=True))[-1]))
    samples = [json.loads(l) for f in sorted(glob.glob(f"{work}/{name}/**/samples_*.jsonl", recursive=True)) for l in open(f)]
    return results["results"][task], {s["doc_id"]: s for s in samples}
served, served_samples = load("served")
hf, hf_samples = load("hf-out")
worst, greedy_same, n = 0.0, 0, 0
for doc_id, s in served_samples.items():
    for a, b in zip(s["resps"], hf_samples[doc_id]["resps"]):
        (la, ga), (lb, gb) = a[0], b[0]
        worst = max(worst, abs(float(la) - float(lb)))
        greedy_same += (ga == gb); n += 1
health = json.load(open(f"{work}/health.json"))
counters = health["counters"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
result = {
    "what": f"lm-eval {lm_eval.__version__ if hasattr(lm_eval, '__version__') else '0.4.13'} on {task} "
            f"--limit {limit}: local-completions against valuelens serve ({mode}) vs --model hf ({hf_dtype})",
    "command": f"VENV=... MODE={mode} BATCH={batch} CONCURRENT={concurrent} scripts/lm-eval-compare.sh {task}",
    "commit": commit,
    "date": datetime.date.today().isoformat(),
    "machine": {"cpu": cpu, "threads": os.cpu_count(),
                "features": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]},
    "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    "model": model, "task": task, "limit": int(limit), "mode": mode, "hf_dtype": hf_dtype,
    "serve_setting": serve_setting,
    "batch_size": int(batch), "num_concurrent": int(concurrent),
    "questions": len(served_samples), "choices": n,
    "valuelens": {"acc": served["acc,none"], "acc_norm": served["acc_norm,none"], "seconds": round(served_s, 1),
                  "prompt_tokens": counters["prompt_tokens"], "computed_tokens": counters["computed_tokens"],
                  "prefix_cache": counters.get("prefix_cache")},
    "hf": {"acc": hf["acc,none"], "acc_norm": hf["acc_norm,none"], "seconds": round(hf_s, 1)},
    "speedup": round(hf_s / served_s, 2),
    "largest_loglikelihood_difference": worst,
    "greedy_flags_equal": greedy_same,
}
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out + ".tmp", "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
os.replace(out + ".tmp", out)
print(f"questions: {len(served_samples)} ({n} choices)")
for key in ("acc,none", "acc_norm,none"):
    print(f"{key:14} valuelens serve {served[key]:.4f}   hf {hf[key]:.4f}")
print(f"wall time      valuelens serve {served_s:.1f} s   hf {hf_s:.1f} s   ({hf_s / served_s:.2f}x)")
print(f"tokens         sent {counters['prompt_tokens']}, computed {counters['computed_tokens']}")
print(f"per choice: largest |log-likelihood difference| {worst:.2e}; greedy flags equal {greedy_same}/{n}")
print(f"written: {out}")
PY
echo "logs and outputs: $work"
