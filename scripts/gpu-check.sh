#!/usr/bin/env bash
# Everything valuelens checks and measures on a GPU machine, in one go, from the package that
# scripts/build-cuda.sh made (gpu-pack/, carried there):
#   1. unpack the binaries and the shared workloads; find the CUDA libraries of the machine's
#      PyTorch; nvidia-smi
#   2. CUDA tests: the packed test binary (tests/cuda.rs) and `valuelens compare` on workload
#      requests (CPU vs CUDA on identical synthetic weights: f32 <= 1e-4, bf16 <= 1e-2 per token)
#   3. `valuelens bench` (CUDA, bf16) on the Task-1 and Task-2 workloads with synthetic weights
#      of SmolLM2-135M's and Llama-3.1-8B's shapes
#   4. the same requests (same token ids) through Hugging Face transformers in bf16, the way
#      lm-evaluation-harness scores them (scripts/hf_baseline.py), and one check that both
#      score the same synthetic weights alike
#   5. results.json: every measurement, the GPU, and valuelens' speed-up over transformers
#
# Usage: scripts/gpu-check.sh OUT_DIR [--quick]
#   --quick: the first 64 Task-1 and 48 Task-2 requests only (a smoke run)
# Environment: VALUELENS_PACK (default gpu-pack), VALUELENS_SHAPES (default "135m 8b"),
# VALUELENS_DEVICE (default cuda; `cpu` with a CPU binary in the pack rehearses the script on a
# machine without a GPU).
# Each step has its own time limit and a failed step does not stop the others; what ran is in
# OUT_DIR/results.json and OUT_DIR/log.txt either way. Exit status: 0 when every check passed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:?usage: scripts/gpu-check.sh OUT_DIR [--quick]}
QUICK=${2:-}
PACK=${VALUELENS_PACK:-$ROOT/gpu-pack}
SHAPES=${VALUELENS_SHAPES:-135m 8b}
DEVICE=${VALUELENS_DEVICE:-cuda}
HF_DEVICE=$DEVICE; [ "$DEVICE" = cpu ] || HF_DEVICE=cuda
WORK=$(mktemp -d /tmp/valuelens-gpu.XXXXXX)
mkdir -p "$OUT" "$WORK/results"
exec > >(tee -a "$OUT/log.txt") 2>&1
STARTED=$(date +%s)
FAILED=0
step() { echo "== [$(( $(date +%s) - STARTED )) s] $*"; }
# run NAME LIMIT_S COMMAND...: stdout to $WORK/results/NAME.json(l), never aborts the script
run() {
    local name=$1 limit=$2; shift 2
    step "$name: $*"
    timeout --kill-after=10 "$limit" "$@" > "$WORK/results/$name.jsonl"
    local rc=$?
    echo "$rc" > "$WORK/results/$name.rc"
    [ "$rc" -eq 0 ] || { echo "!! $name exited with $rc"; FAILED=1; }
    return 0
}

step "unpack $PACK"
[ -f "$PACK/valuelens.xz" ] || { echo "no $PACK/valuelens.xz: run scripts/build-cuda.sh and carry gpu-pack"; exit 2; }
xz -dc "$PACK/valuelens.xz" > "$WORK/valuelens" && chmod +x "$WORK/valuelens"
if [ -f "$PACK/cuda-tests.xz" ]; then
    xz -dc "$PACK/cuda-tests.xz" > "$WORK/cuda-tests" && chmod +x "$WORK/cuda-tests"
fi
tar -C "$WORK" -xJf "$PACK/workloads.tar.xz"
cp "$PACK/manifest.json" "$WORK/results/manifest.json"
VL=$WORK/valuelens
T1=$WORK/workloads/smollm2-t1-scenario.jsonl
T2=$WORK/workloads/smollm2-t2-100pairs.jsonl
if [ "$QUICK" = "--quick" ]; then
    head -64 "$T1" > "$WORK/t1.jsonl"; head -48 "$T2" > "$WORK/t2.jsonl"
    T1=$WORK/t1.jsonl; T2=$WORK/t2.jsonl
fi
# A compact mixed set for the agreement checks: 48 Task-1 and 32 Task-2 requests.
{ head -48 "$T1"; head -32 "$T2"; } > "$WORK/check.jsonl"

# The CUDA runtime libraries: the driver's libcuda, and cudart/cublas/curand of PyTorch's wheels.
NV=$(python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))" 2>/dev/null || true)
for d in "$NV"/nvidia/cu13/lib "$NV"/nvidia/*/lib; do
    [ -d "$d" ] && LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
done
# The driver's own folder, where libcuda.so.1 is not on the loader's default path.
if ! ldconfig -p 2>/dev/null | grep -q "libcuda.so.1 "; then
    for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
        [ -e "$d/libcuda.so.1" ] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
    done
fi
export LD_LIBRARY_PATH
step "nvidia-smi"
if command -v nvidia-smi > /dev/null; then
    nvidia-smi | tee "$OUT/nvidia-smi.txt"
    GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
else
    GPU="none (nvidia-smi not found)"
fi
echo "GPU: $GPU"
ldd "$VL" | grep -E "cuda|cublas|curand|not found"
if ldd "$VL" | grep -q "not found"; then
    echo "!! libraries missing for $VL (LD_LIBRARY_PATH=$LD_LIBRARY_PATH); stopping early"
    exit 3
fi

TOK135=$PACK/llama-135m
SMALL=synthetic:llama-135m@$TOK135

step "tokenize the workloads (same ids for valuelens and transformers)"
"$VL" tokenize --model "$SMALL" --input "$T1" --output "$WORK/t1.tokens.jsonl"
"$VL" tokenize --model "$SMALL" --input "$T2" --output "$WORK/t2.tokens.jsonl"

# 2. CUDA tests
if [ -x "$WORK/cuda-tests" ]; then
    step "cuda-tests (tests/cuda.rs)"
    VALUELENS_TOKENIZER=$TOK135 timeout 180 "$WORK/cuda-tests" --nocapture --test-threads 1 \
        > "$WORK/results/cuda-tests.txt" 2>&1
    echo $? > "$WORK/results/cuda-tests.rc"
    cat "$WORK/results/cuda-tests.txt"
    [ "$(cat "$WORK/results/cuda-tests.rc")" -eq 0 ] || FAILED=1
fi
run compare-f32 150 "$VL" compare --model "$SMALL" --input "$WORK/check.jsonl" \
    --device "$DEVICE" --dtype f32 --tolerance 1e-4
run compare-bf16 150 "$VL" compare --model "$SMALL" --input "$WORK/check.jsonl" \
    --device "$DEVICE" --dtype bf16 --tolerance 1e-2
run compare-q8 150 "$VL" compare --model "synthetic:llama-135m+q8_0@$TOK135" \
    --input "$WORK/check.jsonl" --device "$DEVICE" --dtype quantized --tolerance 5e-2

# 3. valuelens on the GPU, then 4. transformers the lm-eval way on the same token ids
for shape in $SHAPES; do
    repeat=3; [ "$shape" = 8b ] && repeat=2
    run "vl-$shape" 360 "$VL" bench --model "synthetic:llama-$shape@$PACK/llama-$shape" \
        --device "$DEVICE" --dtype bf16 --repeat $repeat --input "$T1" --input "$T2"
done
for shape in $SHAPES; do
    for task in t1 t2; do
        run "hf-$shape-$task" 300 python3 scripts/hf_baseline.py --model-dir "$PACK/llama-$shape" \
            --tokens "$WORK/$task.tokens.jsonl" --dtype bfloat16 --device "$HF_DEVICE"
    done
done
# Both implementations on the same synthetic weights (exported here, ~0.5 GB): bf16 scores.
step "same weights through transformers and valuelens (bf16)"
"$VL" export --model "$SMALL" --out "$WORK/syn135-weights" --dtype bf16 \
    && "$VL" tokenize --model "$SMALL" --input "$WORK/check.jsonl" --output "$WORK/check.tokens.jsonl" \
    && run hf-same-weights 200 python3 scripts/hf_baseline.py --model-dir "$WORK/syn135-weights" \
        --tokens "$WORK/check.tokens.jsonl" --dtype bfloat16 --scores "$WORK/hf-scores.jsonl" \
        --device "$HF_DEVICE" \
    && run vl-same-weights 200 "$VL" score --model "$WORK/syn135-weights" --device "$DEVICE" \
        --dtype bf16 --input "$WORK/check.jsonl" --output "$WORK/vl-scores.jsonl"

# 5. results.json
step "summary"
python3 - "$WORK" "$OUT" "$GPU" "$STARTED" <<'PY'
import json, os, sys, time
work, out, gpu, started = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
res = os.path.join(work, "results")

def lines(name):
    try:
        with open(os.path.join(res, name + ".jsonl")) as f:
            return [json.loads(l) for l in f if l.strip()]
    except (OSError, ValueError):
        return []

def rc(name):
    try:
        return int(open(os.path.join(res, name + ".rc")).read())
    except (OSError, ValueError):
        return None

summary = {"gpu": gpu, "device": os.environ.get("VALUELENS_DEVICE", "cuda"), "manifest": json.load(open(os.path.join(res, "manifest.json"))),
           "checks": {}, "valuelens": {}, "transformers": {}, "speedup": {}}
for name in ["compare-f32", "compare-bf16", "compare-q8"]:
    got = lines(name)
    summary["checks"][name] = {"exit": rc(name), **(got[0] if got else {})}
if os.path.exists(os.path.join(res, "cuda-tests.txt")):
    summary["checks"]["cuda-tests"] = {"exit": rc("cuda-tests"),
                                       "output": open(os.path.join(res, "cuda-tests.txt")).read()[-4000:]}
for shape in os.environ.get("VALUELENS_SHAPES", "135m 8b").split():
    vl = lines(f"vl-{shape}")
    for task, report in zip(["t1", "t2"], vl):
        summary["valuelens"][f"{shape}-{task}"] = report
    for task in ["t1", "t2"]:
        hf = lines(f"hf-{shape}-{task}")
        if hf:
            summary["transformers"][f"{shape}-{task}"] = hf[0]
        key = f"{shape}-{task}"
        if key in summary["valuelens"] and key in summary["transformers"]:
            v, h = summary["valuelens"][key], summary["transformers"][key]
            summary["speedup"][key] = {
                "requests": v["requests"],
                "valuelens_s": v["score_s"], "transformers_s": h["score_s"],
                "valuelens_requests_per_s": v["requests_per_s"],
                "transformers_requests_per_s": h["requests_per_s"],
                "valuelens_computed_tokens_per_s": v["computed_tokens_per_s"],
                "transformers_computed_tokens_per_s": h["computed_tokens_per_s"],
                "ratio": h["score_s"] / v["score_s"],
            }
# Same weights, two implementations.
try:
    hf = {r["id"]: r for r in map(json.loads, open(os.path.join(work, "hf-scores.jsonl")))}
    vl = {r["id"]: r for r in map(json.loads, open(os.path.join(work, "vl-scores.jsonl")))}
    diffs = [abs(a - b) for k in vl for a, b in zip(vl[k]["token_logprobs"], hf[k]["token_logprobs"])]
    summary["checks"]["same-weights-vs-transformers-bf16"] = {
        "requests": len(vl), "tokens": len(diffs), "max_abs_token_diff": max(diffs),
        "mean_abs_token_diff": sum(diffs) / len(diffs),
        "greedy_agreement": sum(vl[k]["greedy"] == hf[k]["greedy"] for k in vl) / len(vl)}
except (OSError, KeyError, ValueError) as e:
    summary["checks"]["same-weights-vs-transformers-bf16"] = {"error": str(e)}
summary["elapsed_s"] = time.time() - started
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(summary, f, indent=2)
print(json.dumps(summary["speedup"], indent=2))
for name, check in summary["checks"].items():
    agreement = check.get("agreement", check)
    print(f"{name}: exit {check.get('exit')}, max |d| per token "
          f"{agreement.get('max_abs_token_diff')}, mean {agreement.get('mean_abs_token_diff')}"
          f"{', error ' + check['error'] if 'error' in check else ''}")
PY
step "done (failed=$FAILED)"
exit $FAILED
