"""Measure peak RSS and wall time of one retrain's trials at N=1, 5 and 20.

Each N runs in its own Python process, so the peak resident set size
(ru_maxrss) belongs to that N alone. The data is a real slice: three rides,
January to March 2019, from the bundled TouringPlans files.

    .venv/bin/python bench/trial_memory.py            # N=1, 5 and 20
    .venv/bin/python bench/trial_memory.py --child 5  # one N, prints JSON
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


def run_child(trials: int) -> dict:
    import resource

    from parkcast.db import make_engine, migrate
    from parkcast.models.mlp import HyperParameters
    from parkcast.tasks.features import load_cells, load_context, with_history
    from parkcast.tasks.ingest import ingest_folder
    from parkcast.tasks.train import split_by_days, train_best_candidate
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.conftest import write_slice

    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{folder}/bench.db")
        migrate(engine)
        ingest_folder.fn(engine, write_slice(Path(folder) / "slice"), 500)
        cells = load_cells.fn(engine)
        context = with_history(load_context.fn(engine), cells)
        train_cells, _ = split_by_days(cells, 14)
        hparams = HyperParameters.parse(seed=7, max_epochs=MAX_EPOCHS)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        best = train_best_candidate.fn(train_cells, context, hparams, trials, 28)
        elapsed = time.perf_counter() - started
        engine.dispose()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"trials": trials, "cells": len(train_cells), "peak_rss_mib": peak / 1024,
            "peak_before_training_mib": before / 1024, "seconds": elapsed, "best_val_mae": best.validation.mae}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(run_child(int(sys.argv[2]))))
        return
    root = Path(__file__).resolve().parent.parent
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
