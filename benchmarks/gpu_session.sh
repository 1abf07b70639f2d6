#!/usr/bin/env bash
# One GPU call of at most ~9 minutes: the benchmarks, then as many `spec` cells of the HoPA
# sweep (experiments/configs/sweep.py, budget spec) as fit, packed where the sweep reads them.
#
#   run(command="bash benchmarks/gpu_session.sh", timeout_s=570)   # on the device machine
#   tar -xzf <files_at>/spec_rows.tar.gz --skip-old-files           # here, in the sweep's cwd
#   python -m experiments.hopa_sweep --workdir=runs/sweep           # the rows now read as finished
#   bash benchmarks/gpu_session.sh --tiny                           # CPU smoke test (tiny shapes)
#
# What comes back under $OUT (default runs/gpu_session): env.txt (device, versions),
# bench_hopa.txt, bench_bindc.txt, sweep.log, spec_rows.tar.gz (every finished row under
# <workdir>/*/spec/: config.json, results.json, metrics.jsonl, provenance and the distilled
# store's manifest.json; experts, checkpoints and the stores' arrays are left out — the
# common-view re-evaluation of each set runs here, right after it). The rows are bound to their configs, so they are read only by
# a sweep with the same config and the same relative --workdir (runs/sweep; env
# SWEEP_WORKDIR). Reference rows (Random / Full / Zero-shot) computed here are not returned:
# the CPU sweep computes its own. Cells keep the device they ran on (`device` in the cells).
#
# Env: PYTHON (default: python3 if it imports jax, else .venv/bin/python), OUT,
# SWEEP_WORKDIR, SESSION_S (the whole script's time box, default 540 s), WHEELS (a folder of
# wheels installed with --no-index when ml_collections is missing, e.g. made here with
# `pip download ml_collections --no-deps -d .wheels` and carried).
set -u
cd "$(dirname "$0")/.."
TINY=0
if [ "${1:-}" = "--tiny" ]; then TINY=1; fi
START=$(date +%s)
SESSION_S=${SESSION_S:-540}
OUT=${OUT:-runs/gpu_session}
WD=${SWEEP_WORKDIR:-runs/sweep}
mkdir -p "$OUT"
left() { echo $(( SESSION_S - ($(date +%s) - START) )); }

if [ -z "${PYTHON:-}" ]; then
  if python3 -c "import jax" 2>/dev/null; then PYTHON=python3; else PYTHON=.venv/bin/python; fi
fi
if ! "$PYTHON" -c "import ml_collections" 2>/dev/null && [ -d "${WHEELS:-.wheels}" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps "${WHEELS:-.wheels}"/*.whl
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ date -u; git rev-parse HEAD 2>/dev/null; nvidia-smi -L 2>/dev/null
  "$PYTHON" -c "import jax; print(jax.__version__, jax.devices())"; } > "$OUT/env.txt" 2>&1

if [ "$TINY" = 1 ]; then   # seconds-sized shapes, its own workdir (never mixed with real rows)
  BENCH_ARGS="--quick"
  BINDC_ARGS="--quick --methods=bindc --ipc=1"
  WD=${SWEEP_WORKDIR:-runs/gpu_session_tiny/sweep}
  SWEEP_FLAGS=(--config.phases="('msrvtt_sim/100/random|hopa/spec/0',)" --config.budgets.spec.num_experts=2
               --config.budgets.spec.expert_epochs=3 --config.budgets.spec.eval_runs=2)
  BASE=(--config.base.scale=0.05 --config.base.local=True --config.base.progress=False)
else
  BENCH_ARGS=""
  BINDC_ARGS="--iterations=500"   # the full shape, ms / iteration from 500 timed iterations
  SWEEP_FLAGS=(--config.phases="('msrvtt_sim/100/main|ablations/spec/0', 'vggsound_s_sim|didemo_sim/100/main/spec/0', 'all/200|500/main/spec/0')")
  BASE=()
fi

timeout 150 "$PYTHON" benchmarks/hopa_bench.py $BENCH_ARGS > "$OUT/bench_hopa.txt" 2>&1 \
  || echo "hopa_bench: exit $? (timeout 150 s = 124)" >> "$OUT/bench_hopa.txt"
timeout 90 "$PYTHON" benchmarks/bindc_bench.py $BINDC_ARGS > "$OUT/bench_bindc.txt" 2>&1 \
  || echo "bindc_bench: exit $? (timeout 90 s = 124)" >> "$OUT/bench_bindc.txt"

# The sweep: no row starts after LIMIT minutes; a row still running at the hard stop is
# killed (it resumes from its checkpoints when the same workdir is run again here).
REMAIN=$(left)
HARD=$(( REMAIN - 25 ))
LIMIT=$(awk "BEGIN { print ($HARD - 60) / 60.0 }")
if [ "$HARD" -gt 60 ]; then
  timeout "$HARD" "$PYTHON" -m experiments.hopa_sweep --workdir="$WD" \
    --config=experiments/configs/sweep.py "${SWEEP_FLAGS[@]}" --config.time_limit_min="$LIMIT" \
    "${BASE[@]}" \
    > "$OUT/sweep.log" 2>&1
  echo "sweep exit $? after $(( $(date +%s) - START )) s of the session" >> "$OUT/sweep.log"
else
  echo "no time left for the sweep ($REMAIN s)" > "$OUT/sweep.log"
fi

# Pack the finished spec rows (no experts, checkpoints or stores: they are large; each
# distilled store's manifest.json comes along: its content digest binds the re-evaluation).
ROWS=$(find "$WD" -path '*/spec/*' -name results.json -printf '%h\n' 2>/dev/null | sort)
if [ -n "$ROWS" ]; then
  # shellcheck disable=SC2086
  tar -cf "$OUT/spec_rows.tar" --exclude='distilled' --exclude='distill_ckpt' \
    --exclude='experts*' --exclude='.lock' $ROWS
  MANIFESTS=$(find "$WD" -path '*/spec/*' -path '*/distilled/manifest.json' 2>/dev/null | sort)
  # shellcheck disable=SC2086
  [ -n "$MANIFESTS" ] && tar -rf "$OUT/spec_rows.tar" $MANIFESTS
  gzip -f "$OUT/spec_rows.tar"
fi
echo "rows packed: $(echo "$ROWS" | grep -c .)" >> "$OUT/sweep.log"
tail -3 "$OUT/sweep.log"
