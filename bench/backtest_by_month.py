"""Bias and MAE by test month of the backtest's MLP (seed 42) and LightGBM.

Bias is the mean of forecast minus observed wait, in minutes: negative means
the ride was busier than forecast. Needs the bench extra for LightGBM.

    .venv/bin/python bench/backtest_by_month.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from parkcast.tasks.backtest import load_benchmark_cells, run_backtest, split_benchmark


def main(data_dir: Path = Path("data/touringplans")) -> None:
    result = run_backtest(data_dir, include_classic=False)
    _, test = split_benchmark(load_benchmark_cells(data_dir))
    pd.set_option("display.width", 200)
    for model in result.models[1:]:
        cells = test.assign(bias=model.predictions - test["wait"].to_numpy(), month=test["park_day"].dt.strftime("%Y-%m"))
        cells["error"] = cells["bias"].abs()
        print(f"\n{model.name}: MAE {cells['error'].mean():.2f}")
        print(cells.groupby("month").agg(cells=("error", "size"), mae=("error", "mean"), bias=("bias", "mean")).round(2))
        print(cells.pivot_table(index="ride_code", columns="month", values="bias", aggfunc="mean").round(1))


if __name__ == "__main__":
    main()
