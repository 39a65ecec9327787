"""One GPU slice: the next whole runs of :data:`skinseg.lab.order.SLICE_ORDER` that fit the time left,
packed into one archive that ``python -m skinseg merge`` adds to the committed results::

    python -m skinseg slice --archive $OUT/slice.tgz --time-budget 780
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from ..config import Profile, get_profile
from ..device import resolve_device
from ..errors import ConfigError
from ..paths import results_dir
from .archive import pack_slice
from .experiment import MODEL_NAMES, ExperimentRunner, budget_allows, folder_mismatch, write_summary
from .order import EXPERIMENTS, SLICE_ORDER
from .plan import RunCosts
from .provenance import environment


def slice_order(experiments=None) -> list[tuple[str, int, str]]:
    """``(experiment, seed, model)`` in the order slices run them, restricted to ``experiments`` if given."""
    names = list(EXPERIMENTS) if experiments is None else list(experiments)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ConfigError(f"experiments must be among {list(EXPERIMENTS)}, got {unknown}")
    return [(name, seed, model) for name, seed in SLICE_ORDER if name in names for model in MODEL_NAMES]


def run_slice(data_root, archive: Path, *, time_budget: float | None = None, work_dir: Path = Path("runs/slice"),
              committed: Path | None = None, experiments=None, profile: Profile | None = None,
              adjust: Callable[[Profile], Profile] | None = None, device=None,
              progress: bool = False, log: Callable[[str], None] = print,
              run_cost: Callable[[str, str], float] | None = None,
              clock: Callable[[], float] = time.perf_counter) -> dict:
    """Run the next runs of the slice order that fit ``time_budget`` (committed runs skipped; the first
    whose expected cost does not fit ends the slice), pack them into ``archive``; returns its manifest.

    Args:
        work_dir: holds the slice's ``results/<experiment>`` (emptied first: only this slice's runs
            are packed) and ``checkpoints/<experiment>`` (kept: an unfinished run resumes there).
        committed: the results folder with the finished runs to skip (default
            :func:`skinseg.paths.results_dir`); on the same hardware they give a run's expected cost.
        experiments: only these of :data:`skinseg.lab.order.EXPERIMENTS` (default all).
        profile: one profile for every experiment instead of each one's own (checks on a CPU).
        adjust: applied to each experiment's profile (a compile setting, a variant of the recipe).
        run_cost: ``(experiment, model) -> seconds`` instead of :class:`~skinseg.lab.plan.RunCosts`.
        clock: seconds, for the time left (tests pass one that follows ``run_cost``).
    """
    committed, work_dir = Path(committed or results_dir()), Path(work_dir)
    results = work_dir / "results"
    if committed.resolve().is_relative_to(results.resolve()):
        raise ConfigError(f"the slice's work folder {work_dir} holds the committed results {committed}: "
                          "choose another --work-dir")
    # this slice packs only its own runs: those of an earlier slice in the same work folder were
    # packed (and perhaps merged) already; their checkpoints stay, so an unmerged one re-evaluates
    shutil.rmtree(results, ignore_errors=True)
    started = clock()
    lines: list[str] = []

    def say(message: str) -> None:
        lines.append(message)
        log(message)

    runners: dict[str, ExperimentRunner] = {}
    costs: dict[str, RunCosts] = {}
    device_env = None
    for name, seed, model in slice_order(experiments):
        spec = EXPERIMENTS[name]
        if (committed / name / "runs" / f"{model}_seed{seed}.json").exists():
            continue
        if name not in runners:
            recipe = profile or get_profile(spec.profile)
            recipe = adjust(recipe) if adjust else recipe
            runner = runners[name] = ExperimentRunner(data_root, results / name, recipe, seeds=spec.seeds,
                                                      protocol=spec.protocol, work_dir=work_dir / "checkpoints" / name,
                                                      device=device, progress=progress, log=say,
                                                      committed=[committed / name])
            problem = folder_mismatch(committed / name, runner.config)
            if problem:
                raise ConfigError(f"{committed / name} holds finished runs of {problem}; "
                                  "this slice's runs could not be merged into it")
            costs[name] = RunCosts(recipe, runner.sizes, runner.device, earlier=[committed / name, runner.out_dir], log=say)
            device_env = runner.config["environment"]
        runner = runners[name]
        if runner.done(model, seed):
            continue
        cost = run_cost(name, model) if run_cost else costs[name].estimate(model)
        left = None if time_budget is None else time_budget - (clock() - started)
        if not budget_allows(cost, left, say, f"{name}: {model} seed {seed}"):
            break
        say(f"{name}: {model} seed {seed} ({spec.label}), expected {cost:.0f} s")
        runner.run(model, seed)
    for runner in runners.values():
        if any((runner.out_dir / "runs").glob("*.json")):
            write_summary(runner.out_dir)
    if not runners:
        say("every run of the slice order is already in " + str(committed))
    seconds = clock() - started
    manifest = pack_slice({name: r.out_dir for name, r in runners.items()}, Path(archive),
                          environment=device_env or environment(resolve_device(device)),
                          budget_seconds=time_budget, seconds=seconds, log_text="\n".join(lines) + "\n")
    added = sum(len(e["runs"]) for e in manifest["experiments"].values())
    log(f"wrote {archive}: {added} finished run(s) in {seconds:.0f} s")
    return manifest
