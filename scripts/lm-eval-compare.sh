#!/usr/bin/env bash
# lm-evaluation-harness on one task through two backends with the same weights, back to back:
# its own Hugging Face transformers backend (`--model hf`, on `valuelens export`'s safetensors
# folder, f32) and `--model local-completions` against `valuelens serve` (f32). Prints both
# accuracies, both times, and how far the per-choice log-likelihoods lie apart.
#
# Not part of CI: it needs lm-eval and torch, installed in a virtual environment outside the
# repository, e.g.  python3 -m venv ~/lmeval && ~/lmeval/bin/pip install lm-eval==0.4.13 torch transformers
#
# usage: VENV=~/lmeval scripts/lm-eval-compare.sh   (LIMIT=1000 questions, MODEL=smollm2-135m,
#        BATCH=16, CONCURRENT=1; THREADS for torch, default all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:?set VENV to a virtual environment with lm-eval and torch}
LIMIT=${LIMIT:-1000}
MODEL=${MODEL:-smollm2-135m}
BATCH=${BATCH:-16}
CONCURRENT=${CONCURRENT:-1}
work=$(mktemp -d /tmp/lm-eval-compare.XXXX)
server=""
trap '[ -n "$server" ] && kill -TERM "$server" 2>/dev/null; true' EXIT

cargo build --release -q
bin=target/release/valuelens
python3 examples/lm-eval/make_task.py
$bin export --model "$MODEL" --out "$work/hf" >/dev/null
common=(--tasks via_value_action --include_path examples/lm-eval --limit "$LIMIT" --log_samples)

$bin serve --model "$MODEL" --name "$MODEL" --port 0 2>"$work/serve.log" &
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
kill -TERM "$server"; wait "$server" || true; server=""
tail -1 "$work/serve.log"

start=$(date +%s.%N)
"$VENV/bin/lm_eval" --model hf \
    --model_args "pretrained=$work/hf,dtype=float32" --device cpu \
    --batch_size "$BATCH" "${common[@]}" --output_path "$work/hf-out" >"$work/hf.log" 2>&1
hf_s=$(echo "$(date +%s.%N) - $start" | bc)

"$VENV/bin/python" - "$work" "$served_s" "$hf_s" <<'PY'
import glob, json, sys
work, served_s, hf_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def load(name):
    results = json.load(open(sorted(glob.glob(f"{work}/{name}/**/results_*.json", recursive=True))[-1]))
    samples = [json.loads(l) for f in sorted(glob.glob(f"{work}/{name}/**/samples_*.jsonl", recursive=True)) for l in open(f)]
    return results["results"]["via_value_action"], {s["doc_id"]: s for s in samples}
served, served_samples = load("served")
hf, hf_samples = load("hf-out")
worst, greedy_same, n = 0.0, 0, 0
for doc_id, s in served_samples.items():
    for a, b in zip(s["resps"], hf_samples[doc_id]["resps"]):
        (la, ga), (lb, gb) = a[0], b[0]
        worst = max(worst, abs(float(la) - float(lb)))
        greedy_same += (ga == gb); n += 1
print(f"questions: {len(served_samples)}")
for key in ("acc,none", "acc_norm,none"):
    print(f"{key:14} valuelens serve {served[key]:.4f}   hf {hf[key]:.4f}")
print(f"wall time      valuelens serve {served_s:.1f} s   hf {hf_s:.1f} s   ({hf_s / served_s:.1f}x)")
print(f"per choice: largest |log-likelihood difference| {worst:.2e}; greedy flags equal {greedy_same}/{n}")
PY
echo "logs and outputs: $work"
