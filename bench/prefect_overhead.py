"""Measure how much of a daily run's wall time Prefect's local mode costs.

Runs three commands in fresh processes, one after another, on the machine at
hand: importing parkcast's flow module, a flow with as many no-op tasks as the
daily flow has task calls, and `parkcast run` itself. Orchestration is the
no-op flow minus the import; real work is the daily run minus the no-op flow.

Usage: .venv/bin/python bench/prefect_overhead.py [--repeats 3]
The database named by PARKCAST_DATABASE_URL decides which run is measured:
an empty one measures a first run (ingest and training), a filled one the
steady-state daily run (nothing new to ingest, no retrain).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMPORT_ONLY = "import parkcast.flows.daily_forecast"
NOOP_FLOW = """
import parkcast.flows.daily_forecast
from prefect import flow, task

@task
def step():
    return None

@flow
def noop():
    for _ in range({tasks}):
        step()

noop()
"""
# Task calls in one steady-state daily run: ingest_folder, load_cells,
# load_context, load_champion, write_forecasts.
DAILY_TASK_CALLS = 5


def _wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    python = sys.executable
    parkcast = str(Path(python).with_name("parkcast"))

    samples: dict[str, list[float]] = {"import": [], "noop_flow": [], "daily_run": []}
    for _ in range(args.repeats):
        samples["import"].append(_wall([python, "-c", IMPORT_ONLY]))
        samples["noop_flow"].append(_wall([python, "-c", NOOP_FLOW.format(tasks=DAILY_TASK_CALLS)]))
        samples["daily_run"].append(_wall([parkcast, "run"]))
    median = {name: statistics.median(values) for name, values in samples.items()}
    orchestration = median["noop_flow"] - median["import"]
    real_work = median["daily_run"] - median["noop_flow"]
    print(f"median of {args.repeats} runs, seconds:")
    for name, value in median.items():
        print(f"  {name:<10} {value:7.2f}   (all: {', '.join(f'{v:.2f}' for v in samples[name])})")
    print(f"  imports       {median['import']:7.2f}  {median['import'] / median['daily_run']:6.1%} of the daily run")
    print(f"  orchestration {orchestration:7.2f}  {orchestration / median['daily_run']:6.1%}")
    print(f"  real work     {real_work:7.2f}  {real_work / median['daily_run']:6.1%}")


if __name__ == "__main__":
    main()
