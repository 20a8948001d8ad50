#!/bin/bash
# The Kubernetes example, checked without a cluster: validates
# examples/kubernetes/indexed-job.yaml against the Kubernetes API schema offline
# (kubernetes-validate from PyPI, strict: unknown fields are errors), then runs its pods'
# commands here as Kubernetes would — each shard pod's with JOB_COMPLETION_INDEX set and the
# manifest's environment, the merge Job's wait and merge — on a filtered run, and compares the
# merged stated.csv, action.csv and metrics.json with a one-process run's, byte for byte.
#
#   bash scripts/kubernetes-test.sh [path/to/valuelens]
#
# /shared/valuelens (the pods' working folder) is this checkout; /shared/results a temporary
# folder. The validator is installed into target/kubernetes-validate (a venv) on first use.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(realpath "${1:-$repo/target/release/valuelens}")"
manifest="$repo/examples/kubernetes/indexed-job.yaml"
venv="$repo/target/kubernetes-validate"

if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0
fi
"$venv/bin/kubernetes-validate" --strict --quiet "$manifest"
echo "schema: $manifest validates (strict) against Kubernetes 1.37" >&2

work="$(mktemp -d /tmp/valuelens-kubernetes.XXXXXX)"
trap 'rm -rf "$work"' EXIT
filters="--countries Egypt --topics Religion,Politics --values Equality,Wealth --debias none"
(cd "$repo" && "$bin" run $filters --out "$work/single" >"$work/single.log" 2>&1) \
    || { cat "$work/single.log" >&2; exit 1; }

VALUELENS_BIN="$bin" REPO="$repo" WORK="$work" FILTERS="$filters" \
    "$venv/bin/python" - "$manifest" <<'PY'
"""Runs the manifest's containers' commands locally, as their pods would run them."""
import os
import subprocess
import sys

import yaml

manifest, repo, work = sys.argv[1], os.environ["REPO"], os.environ["WORK"]
docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(open(manifest)) if d}
shards, merge = docs["valuelens-shards"], docs["valuelens-merge"]
assert shards["spec"]["completionMode"] == "Indexed"
completions = shards["spec"]["completions"]


def run(container, extra_env, what):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JOB_COMPLETION"))}
    for var in container.get("env", []):
        env[var["name"]] = var["value"]
    # The shared volume's folders, here.
    if "VALUELENS_OUT" in env:
        env["VALUELENS_OUT"] = os.path.join(work, "results")
    if "VALUELENS_ARGS" in env:
        env["VALUELENS_ARGS"] = os.environ["FILTERS"]
    env.update(extra_env)
    command = container["command"] + container.get("args", [])
    cwd = repo if container.get("workingDir") == "/shared/valuelens" else work
    done = subprocess.run(command, env=env, cwd=cwd, timeout=600, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


for index in range(completions):
    (container,) = shards["spec"]["template"]["spec"]["containers"]
    done = run(container, {"JOB_COMPLETION_INDEX": str(index)}, f"shard pod {index}")
    assert f"shard {index}/{completions} done" in done.stdout, done.stdout
for container in merge["spec"]["template"]["spec"].get("initContainers", []):
    run(container, {}, f"merge init container {container['name']}")
(container,) = merge["spec"]["template"]["spec"]["containers"]
run(container, {}, "merge pod")
print(f"pods: {completions} shard pods and the merge pod ran their commands", file=sys.stderr)
PY

for file in stated.csv action.csv metrics.json; do
    cmp "$work/results/$file" "$work/single/$file" || {
        echo "kubernetes test FAILED: the merged $file differs from the one-process run's" >&2
        exit 1
    }
done
echo "kubernetes test passed: the Indexed Job's shards and merge give the one-process run's" \
    "stated.csv, action.csv and metrics.json byte for byte" >&2
