#!/usr/bin/env bash
# Produces the GPU artifacts the book shows, in one call on a CUDA machine:
#   $RESULTS/gpu_tests.log    the tests that only run on a GPU
#   $RESULTS/isic2017.tgz     the experiment (both models x 3 seeds, ISIC 2017), packed
#   $RESULTS/bench_gpu.json   the training-step benchmark, plain against fast first
#   $RESULTS/bench_gpu_ops.json  where the time of each model's plain step goes, operator by operator
# The experiment measures the training speed and trains as many epochs as fit
# $EXPERIMENT_BUDGET seconds (the plan is logged and stored in config.json); the benchmark
# gets what is left of $TOTAL_BUDGET.
#
#   SKINSEG_DATA=path/to/isic2017 RESULTS=results bash scripts/gpu_results.sh
#   PART=bench ...        only the benchmark;   PART=experiment ...   only the experiment
#   PART=sweep ...        instead: the recipe variants on the validation set ($RESULTS/sweep.tgz),
#                         U-Net, seed 0, as many epochs as fit $SWEEP_BUDGET seconds
#   COMPILE=auto ...      compile the training step (default off: on the H200, compiling took
#                         about 30 s per run and made U-Net 1.36x and Attention U-Net 0.93x as
#                         fast, which does not pay for itself in runs of about a minute)
set -u
RESULTS=${RESULTS:-results}
DATA=${SKINSEG_DATA:-data/isic2017}
PROFILE=${SKINSEG_PROFILE:-full}
PART=${PART:-all}
COMPILE=${COMPILE:-off}
EXPERIMENT_BUDGET=${EXPERIMENT_BUDGET:-420}   # seconds for all runs together, besides planning
TOTAL_BUDGET=${TOTAL_BUDGET:-585}             # seconds for the whole script
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$(date +%s)
mkdir -p "$RESULTS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RESULTS/gpu.txt" 2>&1 || echo "no nvidia-smi" > "$RESULTS/gpu.txt"
cat "$RESULTS/gpu.txt"
# The tests that need a GPU first (seconds): a training step must never wait for the GPU.
python3 -m pytest -q tests/test_train.py -k never_waits 2>&1 | tee "$RESULTS/gpu_tests.log"

if [ "$PART" = sweep ]; then
    python3 -m skinseg sweep --data "$DATA" --out "$RESULTS/sweep" --work-dir /tmp/skinseg_sweep \
        --profile "$PROFILE" --time-budget "${SWEEP_BUDGET:-480}" --compile "$COMPILE" --quiet 2>&1 \
        | tee "$RESULTS/sweep.log"
    [ -d "$RESULTS/sweep" ] && tar czf "$RESULTS/sweep.tgz" -C "$RESULTS" sweep && rm -rf "$RESULTS/sweep"
fi

if [ "$PART" = all ] || [ "$PART" = experiment ]; then
    python3 -m skinseg experiment --data "$DATA" --out "$RESULTS/isic2017" --work-dir /tmp/skinseg_runs \
        --profile "$PROFILE" --time-budget "$EXPERIMENT_BUDGET" --compile "$COMPILE" --quiet 2>&1 \
        | tee "$RESULTS/isic2017.log"
    if [ -d "$RESULTS/isic2017" ]; then
        cp "$RESULTS/isic2017.log" "$RESULTS/isic2017/gpu_run.log"
        # The device tool returns few files: pack the experiment into one archive.
        tar czf "$RESULTS/isic2017.tgz" -C "$RESULTS" isic2017 && rm -rf "$RESULTS/isic2017"
    fi
fi

left=$(( TOTAL_BUDGET - ($(date +%s) - start) ))
if [ "$PART" = all ] || [ "$PART" = bench ]; then
    echo "benchmark: $left s left"
    if [ "$left" -gt 30 ]; then
        timeout "$left" python3 -m skinseg bench --profile "$PROFILE" --ops --out "$RESULTS/bench_gpu.json" 2>&1 \
            | tee "$RESULTS/bench.log"
    fi
fi
echo "done in $(( $(date +%s) - start )) s"
