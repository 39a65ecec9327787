#!/usr/bin/env bash
# Produces every GPU artifact the book shows, in one call on a CUDA machine:
#   $RESULTS/isic2017/   the experiment (both models x 3 seeds, ISIC 2017)
#   $RESULTS/bench_gpu.json   the training-step benchmark
# The number of epochs is chosen from a short throughput measurement so that the
# experiment fits $EXPERIMENT_BUDGET seconds; the choice is logged and stored in config.json.
#
#   SKINSEG_DATA=path/to/isic2017 RESULTS=results bash scripts/gpu_results.sh
set -u
RESULTS=${RESULTS:-results}
DATA=${SKINSEG_DATA:-data/isic2017}
PROFILE=${SKINSEG_PROFILE:-full}
EXPERIMENT_BUDGET=${EXPERIMENT_BUDGET:-420}   # seconds of training for all runs together
TOTAL_BUDGET=${TOTAL_BUDGET:-585}             # seconds for the whole script
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$(date +%s)
mkdir -p "$RESULTS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RESULTS/gpu.txt" 2>&1 || echo "no nvidia-smi" > "$RESULTS/gpu.txt"
cat "$RESULTS/gpu.txt"

EPOCHS=$(python3 - "$PROFILE" "$EXPERIMENT_BUDGET" <<'PY'
import sys, torch
from skinseg.bench import Setting, bench_setting
from skinseg.config import get_profile
from skinseg.device import resolve_device
profile, budget = get_profile(sys.argv[1]), float(sys.argv[2])
device = resolve_device()
amp = "bf16" if device.type == "cuda" else "off"
seconds_per_epoch = 0.0
n_train = profile.max_train or 2000
for model in ("unet", "attention_unet"):
    r = bench_setting(Setting(model, profile.batch_size, amp, device.type == "cuda", False), profile.width,
                      profile.image_size, device, warmup=3, steps=10, repeats=2)
    print(f"{model}: {r['images_per_s']:.0f} img/s", file=sys.stderr)
    seconds_per_epoch += n_train / r["images_per_s"] + 0.8  # + validation and checkpoint
epochs = int(budget / (len(profile.seeds) * seconds_per_epoch))
print(f"{len(profile.seeds)} seeds x 2 models: {seconds_per_epoch:.1f} s per epoch pair -> {epochs} epochs", file=sys.stderr)
print(max(2, min(epochs, 60)))
PY
)
echo "epochs: $EPOCHS"
python3 -m skinseg experiment --data "$DATA" --out "$RESULTS/isic2017" --work-dir /tmp/skinseg_runs \
    --profile "$PROFILE" --epochs "$EPOCHS" --compile off --quiet 2>&1 | tee "$RESULTS/experiment.log"

left=$(( TOTAL_BUDGET - ($(date +%s) - start) ))
echo "benchmark: $left s left"
if [ "$left" -gt 30 ]; then
    timeout "$left" python3 -m skinseg bench --profile "$PROFILE" --out "$RESULTS/bench_gpu.json" 2>&1 | tee "$RESULTS/bench.log"
fi
# The device tool returns few files: pack the experiment into one archive.
tar czf "$RESULTS/isic2017.tgz" -C "$RESULTS" isic2017 && rm -rf "$RESULTS/isic2017"
echo "done in $(( $(date +%s) - start )) s"
