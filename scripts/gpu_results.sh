#!/usr/bin/env bash
# Produces the GPU artifacts the book shows, in one call on a CUDA machine. $PART lists what
# to run, in order (default "experiment bench"):
#   experiment  $RESULTS/isic2017.tgz: both models x 3 seeds on ISIC 2017, packed; as many
#               epochs as fit $EXPERIMENT_BUDGET seconds (the plan is logged and stored in config.json);
#               $EXPERIMENT_VARIANT names variants of the recipe (skinseg.config.VARIANTS), or is
#               "sweep": the variant the sweep earlier in this call recommends, if any
#   sweep       $RESULTS/sweep.tgz: the recipe variants on the validation set (U-Net, seed 0),
#               as many epochs as fit $SWEEP_BUDGET seconds (default: what is left, less a minute);
#               $SWEEP_VARIANTS names some of skinseg.config.VARIANTS (default: all)
#   bench       $RESULTS/bench_gpu.json: the training-step benchmark, plain step and batch sizes first,
#               and $RESULTS/bench_gpu_ops.json: each model's plain step operator by operator;
#               $BENCH_BUDGET seconds (default: what is left)
# Always first, $RESULTS/gpu_tests.log: the tests that only run on a GPU. The whole script
# stays within $TOTAL_BUDGET seconds.
#
#   SKINSEG_DATA=path/to/isic2017 RESULTS=results bash scripts/gpu_results.sh
#   PART=bench ...                    only the benchmark
#   PART="bench sweep" BENCH_BUDGET=240 ...   the benchmark, then the variants in the time left
#   PART="sweep experiment" SWEEP_BUDGET=150 EXPERIMENT_VARIANT=sweep ...
#                         a short sweep on validation, then the experiment with what it recommends
#   COMPILE=auto ...      compile the training step (default off: on the H200, compiling took
#                         about 30 s per run and made U-Net 1.36x and Attention U-Net 0.93x as
#                         fast, which does not pay for itself in runs of about a minute)
set -u
RESULTS=${RESULTS:-results}
DATA=${SKINSEG_DATA:-data/isic2017}
PROFILE=${SKINSEG_PROFILE:-full}
PART=${PART:-experiment bench}
[ "$PART" = all ] && PART="experiment bench"
COMPILE=${COMPILE:-off}
EXPERIMENT_BUDGET=${EXPERIMENT_BUDGET:-420}   # seconds for all runs together, besides planning
EXPERIMENT_VARIANT=${EXPERIMENT_VARIANT:-}
TOTAL_BUDGET=${TOTAL_BUDGET:-585}             # seconds for the whole script
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$(date +%s)
left() { echo $(( TOTAL_BUDGET - ($(date +%s) - start) )); }
mkdir -p "$RESULTS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RESULTS/gpu.txt" 2>&1 || echo "no nvidia-smi" > "$RESULTS/gpu.txt"
cat "$RESULTS/gpu.txt"
# The tests that need a GPU first (seconds): a training step must never wait for the GPU.
python3 -m pytest -q tests/test_train.py -k never_waits 2>&1 | tee "$RESULTS/gpu_tests.log"

# The device tool returns few files: each result folder is packed into one archive.
pack() { [ -d "$RESULTS/$1" ] && tar czf "$RESULTS/$1.tgz" -C "$RESULTS" "$1" && rm -rf "$RESULTS/$1"; }

for part in $PART; do
    echo "$part: $(left) s left"
    case "$part" in
    experiment)
        if [ "$EXPERIMENT_VARIANT" = sweep ]; then
            EXPERIMENT_VARIANT=${RECOMMENDED:-}
            echo "variant from the sweep: ${EXPERIMENT_VARIANT:-none}"
        fi
        python3 -m skinseg experiment --data "$DATA" --out "$RESULTS/isic2017" --work-dir /tmp/skinseg_runs \
            --profile "$PROFILE" --time-budget "$EXPERIMENT_BUDGET" --compile "$COMPILE" --quiet \
            ${EXPERIMENT_VARIANT:+--variant $EXPERIMENT_VARIANT} 2>&1 | tee "$RESULTS/isic2017.log"
        [ -d "$RESULTS/isic2017" ] && cp "$RESULTS/isic2017.log" "$RESULTS/isic2017/gpu_run.log"
        pack isic2017 ;;
    sweep)
        budget=${SWEEP_BUDGET:-$(( $(left) - 60 ))}
        if [ "$budget" -gt 30 ]; then
            python3 -m skinseg sweep --data "$DATA" --out "$RESULTS/sweep" --work-dir /tmp/skinseg_sweep \
                --profile "$PROFILE" --time-budget "$budget" --compile "$COMPILE" --quiet \
                ${SWEEP_VARIANTS:+--variants $SWEEP_VARIANTS} 2>&1 | tee "$RESULTS/sweep.log"
            [ -f "$RESULTS/sweep/sweep.json" ] && RECOMMENDED=$(python3 -c \
                'import json, sys; print(*json.load(open(sys.argv[1])).get("recommended", []))' "$RESULTS/sweep/sweep.json")
        fi
        pack sweep ;;
    bench)
        budget=${BENCH_BUDGET:-$(left)}
        [ "$budget" -gt "$(left)" ] && budget=$(left)
        if [ "$budget" -gt 30 ]; then
            timeout "$budget" python3 -m skinseg bench --profile "$PROFILE" --ops --out "$RESULTS/bench_gpu.json" 2>&1 \
                | tee "$RESULTS/bench.log"
        fi ;;
    *) echo "unknown part $part (expected experiment, sweep or bench)"; exit 2 ;;
    esac
done
echo "done in $(( $(date +%s) - start )) s"
