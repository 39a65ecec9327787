#!/usr/bin/env bash
# Produces the GPU artifacts the book shows, on a CUDA machine, within one device call. $PART
# lists what to run, in order (default "experiment"):
#   experiment  $RESULTS/slice.tgz: the next whole runs of skinseg.lab.order.SLICE_ORDER that are not yet
#               in results/ (the ISIC 2016 replica and ISIC 2017 experiments, our recipe and the
#               article's), each started only if its expected time fits what is left of
#               $EXPERIMENT_BUDGET seconds (default: the time left, less a minute for packing);
#               every run trains its profile's epochs. One archive with a manifest; merge it with
#               'python -m skinseg merge' (results/README.md).
#               $EXPERIMENT_VARIANT names variants of the recipe (skinseg.lab.variants.VARIANTS), or is
#               "sweep": the variant the sweep earlier in this call recommends, if any (runs of
#               another recipe are refused when merged into the plain recipe's results)
#   sweep       $RESULTS/sweep.tgz: the recipe variants on the validation set (U-Net, seed 0),
#               as many epochs as fit $SWEEP_BUDGET seconds (default: what is left, less a minute);
#               $SWEEP_VARIANTS names some of skinseg.lab.variants.VARIANTS (default: all)
#   bench       $RESULTS/bench_gpu.json: the training-step benchmark, plain step and batch sizes first,
#               and $RESULTS/bench_gpu_ops.json: each model's plain step operator by operator;
#               $BENCH_BUDGET seconds (default: what is left)
# Always first, $RESULTS/gpu_tests.log: the tests that only run on a GPU. The whole script
# stays within $TOTAL_BUDGET seconds.
#
#   SKINSEG_DATA=.gpu/isic2017 RESULTS=$OUT bash scripts/gpu_results.sh     the next runs (results/README.md)
#   PART=bench ...                    only the benchmark
#   PART="bench sweep" BENCH_BUDGET=240 ...   the benchmark, then the variants in the time left
#   SLICE_PROFILE=tiny SLICE_EXPERIMENTS=isic2017 SLICE_WORK_DIR=DIR ...   one profile for every run,
#                         some experiments, another work folder (the CPU test of this script,
#                         tests/test_gpu_results_script.py)
#   COMPILE=auto ...      compile the training step (default off: on the H200, compiling took
#                         about 30 s per run and made U-Net 1.36x and Attention U-Net 0.93x as
#                         fast, which does not pay for itself in runs of a few minutes)
set -u
RESULTS=${RESULTS:-results}
DATA=${SKINSEG_DATA:-data/isic2017}
PROFILE=${SKINSEG_PROFILE:-full}              # the sweep's and the benchmark's; each experiment has its own
PART=${PART:-experiment}
[ "$PART" = all ] && PART="experiment bench"
COMPILE=${COMPILE:-off}
EXPERIMENT_VARIANT=${EXPERIMENT_VARIANT:-}
EXPERIMENT_BUDGET=${EXPERIMENT_BUDGET:-}
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
        budget=${EXPERIMENT_BUDGET:-$(( $(left) - 60 ))}
        python3 -m skinseg slice --data "$DATA" --archive "$RESULTS/slice.tgz" --work-dir "${SLICE_WORK_DIR:-/tmp/skinseg_slice}" \
            --time-budget "$budget" --compile "$COMPILE" --quiet \
            ${SLICE_PROFILE:+--profile $SLICE_PROFILE} ${SLICE_EXPERIMENTS:+--experiments $SLICE_EXPERIMENTS} \
            ${EXPERIMENT_VARIANT:+--variant $EXPERIMENT_VARIANT} 2>&1 | tee "$RESULTS/slice.log" ;;
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
