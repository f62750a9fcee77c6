#!/usr/bin/env bash
# tests/test_slurm.sh: the job scripts under jobs/ on a real, private Slurm cluster of
# one node (this machine).
#
#   bash tests/test_slurm.sh [JANUS [PYTHON]]   (defaults: build/janus, $PYTHON or python3)
#
# Installs nothing. Needs root (slurmd launches jobs), Slurm's slurmctld, slurmd and
# client commands, munge (or falls back to auth/none when munged cannot run), Open MPI
# and python3 with h5py. Exits 77 (meson's "skipped") when Slurm or munge is missing.
#
# It writes a slurm.conf into a temporary directory (one node: `hostname -s` at
# 127.0.0.1, CPUs = max(2, nproc), free high ports, state/spool/logs in the temp dir,
# MpiDefault=pmix when the pmix plugin exists), starts munged, slurmctld -D and
# slurmd -D with SLURM_CONF pointing there (the system's /etc/slurm is never read or
# touched), waits for the node to be idle, then:
#   1. jobs/single-node.sbatch, 2 tasks through srun --mpi=pmix (else pmi2, else mpirun
#      inside the allocation; the log says which), on the bundled model: the results
#      equal a direct `mpirun -np 2 janus generate` run, request for request, and were
#      made by 2 ranks;
#   2. jobs/multi-node.sbatch on this one node, disaggregated 1 + 1: same results;
#   3. jobs/sweep.sbatch as a 2-task job array: each task writes its own results
#      (equal to the direct run) and one metrics line;
#   4. preemption: SIGUSR1 to a running single-node job's steps (what --signal=USR1@120
#      does before the time limit) makes janus exit 3; submitting the same job again
#      resumes (the script adds --resume) and the results equal an uninterrupted run.
# Every daemon it started, and anything they left running, is stopped on exit; an
# overall time limit (JANUS_SLURM_TEST_TIMEOUT, default 240 s) bounds every wait.
# Last line: "N passed, N failed".
#
# For development: KEEP_TMP=1 keeps the temp dir (logs, slurm.conf, results; it is
# kept anyway when something failed); JANUS_SLURM_TEST_LAUNCHERS="mpirun" tries only
# the listed LAUNCH values (default "auto pmi2 mpirun"); JANUS_SLURM_TEST_AUTH=none
# tests the auth/none fallback.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JANUS=${1:-$ROOT/build/janus}
LIMIT=${JANUS_SLURM_TEST_TIMEOUT:-240}
START=$(date +%s)
DEADLINE=$(( START + LIMIT ))
PY=${2:-${PYTHON:-python3}}
export PATH=$PATH:/usr/sbin:/sbin

pass=0 fail=0
ok() { echo "ok: $* [$(( $(date +%s) - START )) s]"; pass=$((pass + 1)); }
bad() { echo "FAIL: $* [$(( $(date +%s) - START )) s]"; fail=$((fail + 1)); }
skip() { echo "$*: skipped"; exit 77; }
left() { echo $(( DEADLINE - $(date +%s) )); }
# Run a command with at most the time left before the overall deadline (and at most $1 s).
bounded() {
  local cap=$1 t; shift
  t=$(left); [ "$t" -lt "$cap" ] || t=$cap
  [ "$t" -gt 0 ] || { echo "test_slurm: out of time before: $*" >&2; return 124; }
  timeout -k 5 "$t" "$@"
}

for c in slurmctld slurmd sbatch srun sinfo squeue scancel munged munge; do
  command -v "$c" >/dev/null 2>&1 || skip "slurm not installed ($c missing)"
done
[ "$(id -u)" = 0 ] || skip "slurm test needs root (slurmd starts the jobs)"
for c in mpirun timeout; do command -v "$c" >/dev/null 2>&1 || skip "$c missing"; done
[ -x "$JANUS" ] || { echo "test_slurm: $JANUS: no janus binary (ninja -C build)"; echo "0 passed, 1 failed"; exit 1; }
[ -d "$ROOT/inputs/model" ] && [ -f "$ROOT/inputs/requests.h5" ] ||
  { echo "test_slurm: no bundled model/requests under $ROOT/inputs"; echo "0 passed, 1 failed"; exit 1; }
JANUS=$(realpath "$JANUS")
"$PY" -c 'import h5py, numpy' 2>/dev/null || { echo "test_slurm: $PY has no h5py/numpy"; echo "0 passed, 1 failed"; exit 1; }

# Open MPI as root, in containers (no ptrace/CMA), one thread per rank on 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1

# Temp dir: 0711 (munged wants the socket's directory searchable by all); a short
# path (unix socket names are limited to 107 bytes).
T=$(mktemp -d /tmp/janus-slurm.XXXXXX) || exit 1
chmod 711 "$T"
mkdir -p "$T/state" "$T/spool" "$T/out"
# A private copy of the binary: a rebuild while the jobs run does not disturb them.
cp "$JANUS" "$T/janus" 2>/dev/null && "$T/janus" --version >/dev/null 2>&1 && JANUS=$T/janus
MARK="JANUS_SLURM_TEST_MARK=$T"     # in the environment of every daemon we start
pids=()

# Stop everything this test started: jobs, daemons, and any process they left (a
# slurmstepd, a job task): those carry this run's marker in their environment, or hold
# a file or working directory under $T open. By pid, never by name.
marked_pids() {
  "$PY" - "$MARK" "$T" $$ <<'EOF'
import os, sys
mark, tmp, me = sys.argv[1].encode(), sys.argv[2] + "/", {os.getpid(), int(sys.argv[3])}
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) in me:
        continue
    ours = False
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            ours = mark in f.read().split(b"\0")
    except OSError:
        pass
    links = []
    try:
        links = [f"/proc/{pid}/cwd"] + [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        pass
    for link in links:
        try:
            if (os.readlink(link) + "/").startswith(tmp):
                ours = True
        except OSError:
            pass
    if ours:
        print(pid)
EOF
}
stopped=0
stop_all() {
  [ "$stopped" = 0 ] || return 0
  stopped=1
  if [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ] && [ ${#pids[@]} -gt 0 ]; then
    timeout 10 scancel --quiet --full -u root 2>/dev/null    # (jobs of this private cluster)
    local _
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  local p q alive
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in 1 2 3 4 5 6 7 8 9 10; do
    alive=0
    for q in "${pids[@]}"; do kill -0 "$q" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for p in "${pids[@]}" $(marked_pids); do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
}
tidied=0
tidy_tmp() {
  [ "$tidied" = 0 ] || return 0
  tidied=1
  if [ "${KEEP_TMP:-0}" = 1 ] || [ "$fail" -gt 0 ]; then
    echo "test_slurm: logs, slurm.conf and results kept in $T"
  else
    rm -rf "$T"
  fi
}
cleanup() { stop_all; tidy_tmp; }
trap cleanup EXIT
trap 'echo "test_slurm: interrupted"; exit 130' INT TERM

show_logs() {
  local f
  for f in "$T"/munged.log "$T"/slurmctld.log "$T"/slurmd.log "$@"; do
    [ -s "$f" ] || continue
    echo "--- tail of $f"; tail -n 25 "$f"
  done
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

# ---- munge ----
head -c 1024 /dev/urandom >"$T/munge.key"
chmod 400 "$T/munge.key"
SOCK=$T/munge.sock
env "$MARK" munged -F --socket="$SOCK" --key-file="$T/munge.key" --pid-file="$T/munged.pid" \
  --log-file="$T/munged.log" --seed-file="$T/munged.seed" --num-threads=2 >"$T/munged.stdout" 2>&1 &
pids+=($!)
auth=munge
[ "${JANUS_SLURM_TEST_AUTH:-munge}" = none ] && { kill "${pids[0]}"; wait "${pids[0]}"; } 2>/dev/null  # (to test the fallback)
for _ in $(seq 1 50); do
  munge -S "$SOCK" -n 2>/dev/null | unmunge -S "$SOCK" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || break
  sleep 0.1
done
if ! munge -S "$SOCK" -n 2>/dev/null | unmunge -S "$SOCK" >/dev/null 2>&1; then
  echo "test_slurm: munged did not come up (see below): using AuthType=auth/none"
  show_logs "$T/munged.stdout"
  auth=none
fi

# ---- slurm.conf ----
NODE=$(hostname -s)
CPUS=$(nproc); [ "$CPUS" -ge 2 ] || CPUS=2
PLUGINDIR=""
for d in /usr/lib/x86_64-linux-gnu/slurm-wlm /usr/lib/aarch64-linux-gnu/slurm-wlm /usr/lib64/slurm /usr/lib/slurm; do
  [ -f "$d/select_linear.so" ] && { PLUGINDIR=$d; break; }
done
MPIDEFAULT=none
[ -n "$PLUGINDIR" ] && [ -f "$PLUGINDIR/mpi_pmix.so" ] && MPIDEFAULT=pmix
CTLD_PORT=$(free_port); SLURMD_PORT=$(free_port)
while [ "$SLURMD_PORT" = "$CTLD_PORT" ]; do SLURMD_PORT=$(free_port); done
export SLURM_CONF=$T/slurm.conf
{
  echo "# written by tests/test_slurm.sh"
  echo "ClusterName=janustest"
  echo "SlurmctldHost=$NODE(127.0.0.1)"
  echo "SlurmUser=root"
  echo "SlurmdUser=root"
  echo "SlurmctldPort=$CTLD_PORT"
  echo "SlurmdPort=$SLURMD_PORT"
  if [ "$auth" = munge ]; then
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$SOCK"
  else
    echo "AuthType=auth/none"
    echo "CredType=cred/none"
  fi
  echo "StateSaveLocation=$T/state"
  echo "SlurmdSpoolDir=$T/spool"
  echo "SlurmctldPidFile=$T/slurmctld.pid"
  echo "SlurmdPidFile=$T/slurmd.pid"
  echo "SlurmctldLogFile=$T/slurmctld.log"
  echo "SlurmdLogFile=$T/slurmd.log"
  echo "SlurmctldDebug=info"
  echo "SlurmdDebug=info"
  [ -n "$PLUGINDIR" ] && echo "PluginDir=$PLUGINDIR"
  echo "ProctrackType=proctrack/linuxproc"
  echo "TaskPlugin=task/none"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_Core"
  echo "SchedulerType=sched/builtin"
  echo "MpiDefault=$MPIDEFAULT"
  echo "JobAcctGatherType=jobacct_gather/none"
  echo "AccountingStorageType=accounting_storage/none"
  echo "JobCompType=jobcomp/none"
  echo "SwitchType=switch/none"
  echo "ReturnToService=2"
  echo "SlurmdParameters=config_overrides"
  echo "MailProg=/bin/true"
  echo "InactiveLimit=0"
  echo "KillWait=5"
  echo "MinJobAge=4"     # sbatch --wait then polls every 2 s (it backs off to MinJobAge/2)
  echo "SlurmctldTimeout=30"
  echo "SlurmdTimeout=30"
  echo "NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=256 State=UNKNOWN"
  echo "PartitionName=test Nodes=$NODE Default=YES MaxTime=30 State=UP"
} >"$SLURM_CONF"

env "$MARK" slurmctld -D -i >"$T/slurmctld.stdout" 2>&1 &
pids+=($!)
env "$MARK" slurmd -D -N "$NODE" >"$T/slurmd.stdout" 2>&1 &
pids+=($!)

# ---- wait for the node ----
state=""
up_deadline=$(( $(date +%s) + 60 ))
while [ "$(date +%s)" -lt "$up_deadline" ] && [ "$(left)" -gt 0 ]; do
  state=$(timeout 5 sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n 1)
  [ "$state" = idle ] && break
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { state="daemon $p exited"; break 2; }; done
  sleep 0.5
done
if [ "$state" = idle ]; then
  ok "slurm up: node $NODE idle (auth/$auth, MpiDefault=$MPIDEFAULT, ports $CTLD_PORT/$SLURMD_PORT)"
else
  bad "slurm did not come up: node state '${state:-none}'"
  show_logs "$T/slurmctld.stdout" "$T/slurmd.stdout"
  cleanup
  echo "$pass passed, $fail failed"
  exit 1
fi
n=$(marked_pids | wc -l)
if [ "$n" -ge 3 ]; then ok "$n daemon processes carry this run's marker (what the final clean-up looks for)"
else bad "only $n processes carry this run's marker: the clean-up check would be blind"; fi
echo "test_slurm: srun --mpi=list: $(timeout 10 srun --mpi=list 2>&1 | tr -s '\n\t ' ' ')"

# ---- the reference: a direct mpirun run ----
MODEL=$ROOT/inputs/model
REQUESTS=$ROOT/inputs/requests.h5
REF=$T/out/direct.h5
if bounded 120 mpirun --oversubscribe -np 2 "$JANUS" generate --model "$MODEL" --requests "$REQUESTS" \
     --out "$REF" --quiet >"$T/direct.log" 2>&1; then
  ok "direct mpirun -np 2 run"
else
  bad "direct mpirun -np 2 run"; cat "$T/direct.log"
fi

# same_results OUT RANKS [REF]: OUT equals the direct run (REF) request for request,
# and was made by RANKS ranks.
same_results() {
  "$PY" - "${3:-$REF}" "$1" "$2" <<'EOF'
import os, sys
sys.path.insert(0, os.path.join(os.environ["ROOT"], "tools"))
import numpy as np
import janus_h5
ref, got = janus_h5.read_results(sys.argv[1]), janus_h5.read_results(sys.argv[2])
ranks = int(sys.argv[3])
problems = []
if int(got["attrs"].get("ranks", -1)) != ranks:
    problems.append(f"made by {got['attrs'].get('ranks')} ranks, expected {ranks}")
if not np.array_equal(ref["ids"], got["ids"]):
    problems.append("request ids differ")
else:
    worst = 0.0
    for i, rid in enumerate(ref["ids"]):
        if not np.array_equal(ref["tokens"][i], got["tokens"][i]):
            problems.append(f"request {rid}: tokens differ")
        elif len(ref["logprobs"][i]):
            worst = max(worst, float(np.max(np.abs(ref["logprobs"][i] - got["logprobs"][i]))))
    if worst > 1e-5:
        problems.append(f"logprobs differ by up to {worst:g}")
    if not np.array_equal(ref["finish_reason"], got["finish_reason"]):
        problems.append("finish reasons differ")
for p in problems[:10]:
    print("  " + p)
print(f"  {len(got['ids'])} requests, {sum(len(t) for t in got['tokens'])} tokens, layout: {got['attrs'].get('layout')}")
sys.exit(1 if problems else 0)
EOF
}
export ROOT

# submit NAME SCRIPT [sbatch options...]: sbatch --wait, bounded; prints the job log on failure.
submit() {
  local name=$1 script=$2 rc; shift 2
  bounded 150 sbatch --wait --chdir="$ROOT" --job-name="janus-$name" --time=5 "$@" "$ROOT/jobs/$script" \
    >"$T/$name.sbatch.log" 2>&1
  rc=$?
  if [ "$rc" = 124 ]; then
    echo "test_slurm: $name: timed out"; timeout 10 scancel --quiet -u root -n "janus-$name" 2>/dev/null
  fi
  return "$rc"
}
launcher_of() { sed -n 's/.*launcher \([a-z0-9]*\),.*/\1/p' "$1" | head -n 1; }

# ---- 1. single node, 2 tasks: pmix, else pmi2, else mpirun inside the allocation ----
used=""
for launch in ${JANUS_SLURM_TEST_LAUNCHERS:-auto pmi2 mpirun}; do
  log=$T/single-$launch.out out=$T/out/single-$launch.h5
  if submit "single-$launch" single-node.sbatch --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --output="$log" \
       --export="ALL,JANUS=$JANUS,MODEL=$MODEL,REQUESTS=$REQUESTS,OUT=$out,LAUNCH=$launch" &&
     same_results "$out" 2 >"$T/single-$launch.cmp" 2>&1; then
    used=$(launcher_of "$log"); cat "$T/single-$launch.cmp"
    break
  fi
  echo "test_slurm: single-node.sbatch with LAUNCH=$launch ($(launcher_of "$log")) failed:"
  cat "$T/single-$launch.sbatch.log" "$T/single-$launch.cmp" 2>/dev/null; tail -n 30 "$log" 2>/dev/null
  [ "$(left)" -gt 30 ] || break
done
if [ -n "$used" ]; then
  case "$used" in pmix|pmi2) how="srun --mpi=$used" ;; *) how="mpirun inside the allocation" ;; esac
  ok "single-node.sbatch, 2 tasks via $how: results equal the direct run"
else
  bad "single-node.sbatch, 2 tasks: no launcher gave the direct run's results"
  show_logs
fi
[ "$used" = pmix ] || [ "$used" = pmi2 ] || [ "$used" = mpirun ] || used=auto

# ---- 2. multi-node script on this one node, disaggregated 1 + 1 ----
log=$T/multi.out out=$T/out/multi.h5
if submit multi multi-node.sbatch --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --output="$log" \
     --export="ALL,JANUS=$JANUS,MODEL=$MODEL,REQUESTS=$REQUESTS,OUT=$out,LAUNCH=$used,ATTN_RANKS=1,MOE_RANKS=1" &&
   same_results "$out" 2 >"$T/multi.cmp" 2>&1; then
  cat "$T/multi.cmp"
  ok "multi-node.sbatch (1 node, attention 1 + MoE 1): results equal the direct run"
else
  bad "multi-node.sbatch (1 node, attention 1 + MoE 1)"
  cat "$T/multi.sbatch.log" "$T/multi.cmp" 2>/dev/null; tail -n 30 "$log" 2>/dev/null
fi

# ---- 3. sweep: a 2-task job array, each its own results and one metrics line ----
sweep_dir=$T/out/sweep
if submit sweep sweep.sbatch --array=0-1 --nodes=1 --ntasks=2 --cpus-per-task=1 --output="$T/sweep-%a.out" \
     --export="ALL,JANUS=$JANUS,MODEL=$MODEL,REQUESTS=$REQUESTS,OUT_DIR=$sweep_dir,LAUNCH=$used,SWEEP=np=1;np=2 --attn-ranks 1 --moe-ranks 1 --micro-batches 2"; then
  ok "sweep.sbatch job array of 2 tasks ran"
else
  bad "sweep.sbatch job array of 2 tasks"
  cat "$T/sweep.sbatch.log"; tail -n 30 "$T"/sweep-*.out 2>/dev/null
fi
for task in 0 1; do
  ranks=$((task + 1))
  if same_results "$sweep_dir/task-$task.h5" "$ranks" >"$T/sweep-$task.cmp" 2>&1; then
    cat "$T/sweep-$task.cmp"
    ok "sweep task $task ($ranks rank(s)): own results file equals the direct run"
  else
    bad "sweep task $task ($ranks rank(s)): results"; cat "$T/sweep-$task.cmp"; tail -n 20 "$T/sweep-$task.out" 2>/dev/null
  fi
done
lines=$(grep -c '^janus-metrics ' "$sweep_dir/metrics.txt" 2>/dev/null)
good=$(grep '^janus-metrics ' "$sweep_dir/metrics.txt" 2>/dev/null | grep ' status=0 ' | grep -c ' tokens_per_s=[0-9]')
if [ "${lines:-0}" = 2 ] && [ "${good:-0}" = 2 ] && [ -s "$sweep_dir/task-0.metrics" ] && [ -s "$sweep_dir/task-1.metrics" ]; then
  ok "sweep wrote one metrics line per task"; sed 's/^/  /' "$sweep_dir/metrics.txt"
else
  bad "sweep metrics: expected 2 lines with status=0 in $sweep_dir/metrics.txt"; cat "$sweep_dir/metrics.txt" 2>/dev/null
fi

# ---- 4. time limit / preemption: SIGUSR1 to the job steps, janus exits 3, the rerun resumes ----
BIG=$T/big.h5 BIG_REF=$T/out/big-direct.h5 out=$T/out/preempt.h5
vocab=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$MODEL/config.json")
if "$PY" "$ROOT/tools/make_requests.py" "$BIG" --random 400 --vocab "$vocab" --min-len 5 --max-len 40 \
     --max-new 60 --seed 7 >/dev/null &&
   bounded 120 mpirun --oversubscribe -np 2 "$JANUS" generate --model "$MODEL" --requests "$BIG" \
     --out "$BIG_REF" --quiet >"$T/big-direct.log" 2>&1; then
  submit preempt1 single-node.sbatch --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --output="$T/preempt1.out" \
    --export="ALL,JANUS=$JANUS,MODEL=$MODEL,REQUESTS=$BIG,OUT=$out,LAUNCH=$used" &
  sb=$!
  # Signal once some requests are finished (a part file has data), as Slurm would at --signal=USR1@T.
  signalled=""
  for _ in $(seq 1 300); do
    if [ -n "$(find "$out.parts" -type f -size +0 2>/dev/null | head -n 1)" ]; then
      jid=$(timeout 5 squeue -h -n janus-preempt1 -o %i 2>/dev/null | head -n 1)
      [ -n "$jid" ] && timeout 10 scancel --signal=USR1 "$jid" && signalled=$jid
      break
    fi
    kill -0 "$sb" 2>/dev/null || break
    sleep 0.2
  done
  wait "$sb"; rc1=$?
  if [ -n "$signalled" ] && [ "$rc1" = 3 ] && grep -q 'stopped by a signal' "$T/preempt1.out"; then
    ok "SIGUSR1 to job $signalled (as --signal=USR1@120 does): janus exited 3, finished requests kept"
    sed -n 's/^janus: \(stopped by a signal: [0-9]* of [0-9]* requests done\).*/  \1/p' "$T/preempt1.out"
  elif [ "$rc1" = 0 ]; then
    echo "test_slurm: the job finished before the signal: resume not exercised"
  else
    bad "SIGUSR1 to the job: expected exit 3 (rc $rc1, signalled '${signalled}')"; tail -n 20 "$T/preempt1.out"
  fi
  if submit preempt2 single-node.sbatch --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --output="$T/preempt2.out" \
       --export="ALL,JANUS=$JANUS,MODEL=$MODEL,REQUESTS=$BIG,OUT=$out,LAUNCH=$used" &&
     { [ "$rc1" = 0 ] || grep -q -- ' --resume ' "$T/preempt2.out"; } &&
     same_results "$out" 2 "$BIG_REF" >"$T/preempt.cmp" 2>&1; then
    cat "$T/preempt.cmp"; grep -h '^janus: resume:' "$T/preempt2.out" | sed 's/^/  /'
    ok "rerun with the same OUT resumed (--resume added by the script): results equal an uninterrupted run"
  else
    bad "rerun after the signal"; cat "$T/preempt.cmp" 2>/dev/null; tail -n 20 "$T/preempt2.out" 2>/dev/null
  fi
else
  bad "preemption test: could not make the reference run"; cat "$T/big-direct.log" 2>/dev/null
fi

# ---- stop everything, check nothing is left ----
stop_all
left_over=$(marked_pids | tr '\n' ' ')
if [ -z "$left_over" ]; then ok "every daemon and job process stopped"; else bad "processes left running: $left_over"; fi
tidy_tmp
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
