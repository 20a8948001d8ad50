#!/bin/bash
# The Slurm example for real: starts munged, slurmctld and slurmd on this machine (one node, its
# CPUs, a private configuration and private ports under a temporary folder), submits
# examples/slurm/valuelens-array.sbatch as a 3-task array (--array=1,3,5: indices that start
# above 0 and skip) on a filtered run with the merge job depending on it (afterok), waits, and
# compares the merged stated.csv, action.csv and metrics.json with a one-process run's, byte for
# byte. Stops every daemon it started, whatever happens.
#
#   bash scripts/slurm-test.sh [path/to/valuelens]
#
# Needs root (the daemons run as root here) and Debian's slurmctld, slurmd, slurm-client and
# munge, which it installs when they are missing. Exit 77 when it cannot run here (not root).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(realpath "${1:-$repo/target/release/valuelens}")"
budget_s="${SLURM_TEST_BUDGET_S:-240}"

if [ "$(id -u)" != 0 ]; then
    echo "slurm test skipped: starting slurmctld, slurmd and munged here needs root" >&2
    exit 77
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "installing Debian's slurmctld slurmd slurm-client munge" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends \
                slurmctld slurmd slurm-client munge >/dev/null; }
fi

work="$(mktemp -d /tmp/valuelens-slurm.XXXXXX)"
pids=()
stop() {
    set +e
    [ -n "${SLURM_CONF:-}" ] && scancel --quiet --user=root >/dev/null 2>&1
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    done
    [ -f "$work/munged.pid" ] && kill "$(cat "$work/munged.pid")" 2>/dev/null
    if [ "${keep_work:-0}" = 1 ]; then
        echo "logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap stop EXIT
fail() {
    echo "slurm test FAILED: $*" >&2
    for log in "$work"/*.log "$work"/logs/*; do
        [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
    done
    keep_work=1
    exit 1
}

# munge: a fresh key and a private socket.
mkdir -p "$work/state" "$work/spool" "$work/logs" "$work/shared"
head -c 1024 /dev/urandom >"$work/munge.key"
chmod 400 "$work/munge.key"
munged --force --socket="$work/munge.sock" --key-file="$work/munge.key" \
    --pid-file="$work/munged.pid" --log-file="$work/munged.log" --seed-file="$work/munged.seed" \
    || fail "munged did not start"

node="$(hostname -s)"
cpus="$(nproc)"
cat >"$work/slurm.conf" <<CONF
ClusterName=valuelens-test
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge.sock
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$node CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$work/slurm.conf"
slurmctld -D -f "$SLURM_CONF" >"$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$work/slurmd.out" 2>&1 &
pids+=($!)

started=$SECONDS
until sinfo -h -N -o "%t" 2>/dev/null | grep -qE "^idle"; do
    [ $((SECONDS - started)) -lt 60 ] || fail "the node did not come up within 60 s"
    sleep 1
done
echo "slurm up in $((SECONDS - started)) s: $(sinfo -h -o '%P %D %t')" >&2

# Two countries' worth is too slow for a test: one country, two topics, two values (4 units).
filters="--countries Egypt --topics Religion,Politics --values Equality,Wealth --debias none"
export VALUELENS="$bin" VALUELENS_OUT="$work/shared" VALUELENS_ARGS="$filters"
array=$(sbatch --parsable --export=ALL --array=1,3,5 --chdir="$repo" \
    --output="$work/logs/shard-%A_%a.log" "$repo/examples/slurm/valuelens-array.sbatch")
array="${array%%;*}"
merge=$(sbatch --parsable --export=ALL --dependency="afterok:$array" --chdir="$repo" \
    --output="$work/logs/merge-%j.log" "$repo/examples/slurm/valuelens-merge.sbatch")
merge="${merge%%;*}"
echo "submitted array job $array (tasks 1,3,5) and merge job $merge" >&2

# Meanwhile, the same run in one process (one thread each, as the array tasks have).
(cd "$repo" && RAYON_NUM_THREADS=1 "$bin" run $filters --out "$work/single" \
    >"$work/single.log" 2>&1) || fail "the one-process run failed"

while [ -n "$(squeue -h -j "$array,$merge" -o %i 2>/dev/null)" ]; do
    [ $((SECONDS - started)) -lt "$budget_s" ] || fail "the jobs did not end within ${budget_s} s"
    sleep 1
done

for task in 1 3 5; do
    log="$work/logs/shard-${array}_$task.log"
    [ -f "$log" ] || fail "array task $task left no log"
    rank=$(( (task - 1) / 2 ))
    grep -q "shard $rank/3 done" "$log" || fail "array task $task was not shard $rank/3"
done
[ -f "$work/shared/metrics.json" ] || fail "the merge job wrote no metrics.json"
for file in stated.csv action.csv metrics.json; do
    cmp -s "$work/shared/$file" "$work/single/$file" \
        || fail "the merged $file differs from the one-process run's"
done
echo "slurm test passed in $((SECONDS - started)) s: 3 array tasks (1,3,5) and a dependent merge" \
    "give the one-process run's stated.csv, action.csv and metrics.json byte for byte" >&2
