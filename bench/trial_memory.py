"""Measure peak RSS and wall time of one retrain's trials at N=1, 5 and 20,
and the RSS of one process across many retrains.

Each N runs in its own Python process, so the peak resident set size
(ru_maxrss) belongs to that N alone. The data is a real slice: three rides,
January to March 2019, from the bundled TouringPlans files.

    .venv/bin/python bench/trial_memory.py              # N=1, 5 and 20
    .venv/bin/python bench/trial_memory.py --child 5    # one N, prints JSON
    .venv/bin/python bench/trial_memory.py --retrains 30  # 30 retrains in one process, reused and fresh models
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIALS = (1, 5, 20)
MAX_EPOCHS = 2


def _slice_cells(folder: str):
    from parkcast.db import make_engine, migrate
    from parkcast.tasks.features import load_cells, load_context, with_history
    from parkcast.tasks.ingest import ingest_folder
    from parkcast.tasks.train import split_by_days
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.conftest import write_slice

    engine = make_engine(f"sqlite:///{folder}/bench.db")
    migrate(engine)
    ingest_folder.fn(engine, write_slice(Path(folder) / "slice"), 500)
    cells = load_cells.fn(engine)
    context = with_history(load_context.fn(engine), cells)
    engine.dispose()
    return split_by_days(cells, 14)[0], context


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_retrains(retrains: int, reuse: bool) -> dict:
    """Retrain `retrains` times in this process, as `parkcast serve` and `parkcast replay` do.

    Without `reuse`, the shared compiled model is dropped before each call,
    which is what every retrain did before tasks/train.py kept it.
    """
    from parkcast.models.mlp import HyperParameters
    from parkcast.tasks import train

    with tempfile.TemporaryDirectory() as folder:
        train_cells, context = _slice_cells(folder)
    hparams = HyperParameters.parse(seed=7, max_epochs=MAX_EPOCHS)
    rss, maes = [], []
    started = time.perf_counter()
    for _ in range(retrains):
        if not reuse:
            train._shared_model = None
        maes.append(train.train_best_candidate.fn(train_cells, context, hparams, 1, 28).validation.mae)
        rss.append(_rss_mib())
    return {"reuse": reuse, "retrains": retrains, "rss_after_first_mib": rss[0], "rss_after_last_mib": rss[-1],
            "growth_per_retrain_mib": (rss[-1] - rss[1]) / max(1, retrains - 2), "seconds": time.perf_counter() - started,
            "validation_mae_first_last": [maes[0], maes[-1]]}


def run_child(trials: int) -> dict:
    import resource

    from parkcast.models.mlp import HyperParameters
    from parkcast.tasks.train import train_best_candidate

    with tempfile.TemporaryDirectory() as folder:
        train_cells, context = _slice_cells(folder)
    hparams = HyperParameters.parse(seed=7, max_epochs=MAX_EPOCHS)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    best = train_best_candidate.fn(train_cells, context, hparams, trials, 28)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"trials": trials, "cells": len(train_cells), "peak_rss_mib": peak / 1024,
            "peak_before_training_mib": before / 1024, "seconds": elapsed, "best_val_mae": best.validation.mae}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(run_child(int(sys.argv[2]))))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--retrains-child":
        print(json.dumps(run_retrains(int(sys.argv[2]), sys.argv[3] == "reuse")))
        return
    root = Path(__file__).resolve().parent.parent
    if len(sys.argv) == 3 and sys.argv[1] == "--retrains":
        results = {}
        for mode in ("fresh", "reuse"):
            output = subprocess.run([sys.executable, __file__, "--retrains-child", sys.argv[2], mode], cwd=root,
                                    check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(output.strip().splitlines()[-1])
            print(json.dumps(results[mode]))
        print(f"RSS growth per retrain: {results['reuse']['growth_per_retrain_mib']:.2f} MiB reused, "
              f"{results['fresh']['growth_per_retrain_mib']:.2f} MiB with a new model each time")
        return
    results = []
    for trials in TRIALS:
        output = subprocess.run([sys.executable, __file__, "--child", str(trials)], cwd=root, check=True,
                                capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    one, many = results[0], results[-1]
    print(f"peak RSS N={many['trials']} / N={one['trials']}: {many['peak_rss_mib'] / one['peak_rss_mib']:.3f}; "
          f"training growth {many['peak_rss_mib'] - many['peak_before_training_mib']:.0f} MiB vs "
          f"{one['peak_rss_mib'] - one['peak_before_training_mib']:.0f} MiB; "
          f"time per trial {many['seconds'] / many['trials']:.2f} s vs {one['seconds']:.2f} s")


if __name__ == "__main__":
    main()
