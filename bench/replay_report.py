"""Score the forecasts stored in a replay database, also while the replay is still running.

Usage:
    PARKCAST_DATABASE_URL=sqlite:///var/source.db \\
        .venv/bin/python bench/replay_report.py sqlite:///var/replay.db [--plot replay.png]

The actual waits come from the source database (PARKCAST_DATABASE_URL). The
report covers the as-of days that have a forecast set in the replay database, so a
replay stopped or still running gives the numbers of the part it finished.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import sqlalchemy as sa

from parkcast import schema
from parkcast.db import make_engine
from parkcast.flows.replay import ReplayReport, _promotion_history, format_replay_report, plot_replay_report, score_served_forecasts
from parkcast.settings import get_settings
from parkcast.tasks.features import load_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("replay_url", help="SQLAlchemy URL of the replay database")
    parser.add_argument("--plot", type=Path, help="Write MAE by horizon and by ride to this PNG file")
    args = parser.parse_args()

    source = make_engine(get_settings().database_url)
    target = make_engine(args.replay_url)
    sets = schema.forecast_sets
    with target.connect() as connection:
        first, last, days = connection.execute(
            sa.select(sa.func.min(sets.c.as_of), sa.func.max(sets.c.as_of), sa.func.count())).one()
    by_horizon, by_ride, overall = score_served_forecasts(target, load_cells.fn(source))
    report = ReplayReport(days, 0.0, by_horizon, by_ride, _promotion_history(target), overall)
    overall_text = f"{overall:.2f}" if overall is not None else "n/a"
    print(f"Forecast sets for as-of days {first} to {last} ({days} sets); MAE of served forecasts {overall_text} min")
    # The first line of the flow's report gives the replay's wall time, which this database does not store.
    print(format_replay_report(report).split("\n", 1)[1])
    if args.plot is not None:
        plot_replay_report(report, args.plot)
        print(f"Plot written to {args.plot}")
    source.dispose()
    target.dispose()


if __name__ == "__main__":
    main()
