"""Prints the figures the book's prose states about the committed results, computed from the
files through the library, so that a chapter or tests/test_book_claims.py can quote them.

    .venv/bin/python scripts/book_numbers.py [results/isic2017_16ep]

Read: the per-image tables and run files of the experiment (default results/isic2017_16ep)
and the benchmark files beside it (results/bench).
"""
import sys

from skinseg.errors import SkinsegError
from skinseg.lab.bench_results import gate_cost, latest_bench
from skinseg.lab.results import EARLY_STOP, load_results
from skinseg.lab.stats import by_lesion_size, compare_tables, format_p, large_losses, seed_spread


def main(name: str) -> None:
    results = load_results(name)
    seeds = results.seeds
    tables = {(m, s): results.per_image(m, s) for m in results.models for s in seeds}
    print(f"{results!r}: {results.label()}")
    for endpoint in ("chosen", "raw"):
        losses = large_losses(tables, seeds, endpoint=endpoint)
        print(f"images where Attention U-Net loses by more than 0.2 IoU, {endpoint}: "
              + ", ".join(f"seed {s} {len(ids)}" for s, ids in losses.items()))
    sizes = by_lesion_size(tables, seeds, endpoint="raw")
    print("raw IoU by lesion size (seed-averaged), Attention - U-Net: "
          + ", ".join(f"{g} {d:+.4f} ({n} images)" for g, d, n in zip(sizes.index, sizes.difference, sizes.images)))
    for column, what in (("raw_mean_iou", "raw"), ("mean_iou", "per-run choice")):
        spread = 100 * seed_spread(results.runs, column)
        print(f"spread of mean IoU over seeds, {what}: "
              + ", ".join(f"{m} {v:.2f} points" for m, v in spread.items()))
    for endpoint in ("raw", "chosen"):
        c = compare_tables(tables, seeds, "iou", endpoint)
        t, boot = c["seed_t"], c["two_level"]
        print(f"IoU difference, {endpoint}: {t['mean_diff']:+.4f}; t-interval across {t['n_seeds']} seeds "
              f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] (per-seed means "
              + ", ".join(f"{m:+.4f}" for m in t["seed_means"])
              + f"); two-level bootstrap [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]; Wilcoxon seed-averaged "
              + format_p(c["seed_averaged"]["p_wilcoxon"]))
    scores = results.run("unet", seeds[0])["test"]
    summaries = {k: scores[k] for k in ("mean_iou", "mean_dice", "thresholded_jaccard", "pooled_iou", "pooled_dice")}
    print(f"U-Net seed {seeds[0]} summaries ({results.run('unet', seeds[0])['chosen']}): "
          + ", ".join(f"{k} {v:.4f}" for k, v in summaries.items())
          + f"; range {min(summaries.values()):.3f}-{max(summaries.values()):.3f}")
    bench = latest_bench(results.bench())
    cost = gate_cost(bench)
    print(f"training step ({bench.device.iloc[0]}, bf16 + channels_last, batch 16): U-Net {cost['unet_step_ms']:.1f} ms, "
          f"Attention U-Net {cost['attention_step_ms']:.1f} ms: step time {100 * cost['step_time_change']:+.1f} %, "
          f"throughput {100 * cost['throughput_change']:+.1f} %")


if __name__ == "__main__":
    try:
        main(sys.argv[1] if len(sys.argv) > 1 else EARLY_STOP)
    except SkinsegError as err:
        sys.exit(f"error: {err}")
