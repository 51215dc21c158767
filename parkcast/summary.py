"""Plain-text run summaries that the CLI prints."""

from __future__ import annotations

__all__ = ["format_daily_summary", "format_date_ranges"]

READ_QUERY = (
    "SELECT r.code, f.park_day, f.hour, f.predicted_wait FROM forecasts f "
    "JOIN rides r ON r.id = f.ride_id ORDER BY f.park_day, r.code, f.hour;"
)


def format_daily_summary(summary) -> str:
    """Render a DailySummary as a few readable lines."""
    ingest, forecast, result = summary.ingest, summary.forecast, summary.retrain
    lines = [
        f"Ingest: {ingest.files_read} files read, {ingest.files_skipped} unchanged; "
        f"{ingest.rows_read} rows read, {ingest.rows_stored} stored, {ingest.rows_rejected} rejected",
    ]
    lines += [f"  rejected for {reason}: {count}" for reason, count in sorted(ingest.rejected_by_reason.items())]
    lines += [f"  FAILED {name}: {message}" for name, message in sorted(ingest.failed_files.items())]
    lines += [f"  resumed {ingest.files_resumed} grown files where the last run stopped"] * bool(ingest.files_resumed)
    lines += [f"  WARNING ride {code!r} is in no attractions file; park from PARKCAST_DEFAULT_PARK"
              for code in ingest.rides_added]
    if result is None:
        lines.append("Model: no new records since the champion was chosen; retrain skipped")
    else:
        if result.champion is not None:
            champion = f"{result.champion.mae:.2f}"
        elif result.champion_id is not None:
            champion = f"{result.champion_id} could not be loaded to score"
        else:
            champion = "none"
        lines.append(
            f"Model: challenger {result.challenger_id} MAE {result.challenger.mae:.2f} min on the freshest "
            f"{result.challenger.cells} cells (champion {champion}, seasonal-naive baseline "
            f"{result.baseline.mae:.2f}); {'promoted' if result.promoted else 'rejected'}: {result.reason}"
        )
    lines.append(f"Champion in use: {summary.champion_id}")
    lines += [f"  WARNING champion model: {problem}" for problem in summary.champion_problems]
    state = "unchanged, already stored" if forecast.unchanged else "written"
    lines.append(
        f"Forecasts: {forecast.rows} rows {state} for the park days after {forecast.as_of} "
        f"({forecast.fallback_days} days without metadata used typical hours)"
    )
    if forecast.fallback_dates:
        lines.append(
            f"  WARNING no park-day metadata for {format_date_ranges(forecast.fallback_dates)}: those rows use the "
            "ride's typical hours and calendar-only features (forecasts.from_metadata is false)"
        )
    if forecast.rides_without_history:
        lines.append(
            f"  WARNING no observations of {', '.join(forecast.rides_without_history)}: no forecasts for them; "
            "ingest their wait-time files"
        )
    lines.append(f"Database: {summary.database}")
    lines.append(f"Read them: {READ_QUERY}")
    return "\n".join(lines)


def format_date_ranges(days) -> str:
    """Render sorted dates as comma-separated runs, such as '2021-09-01 to 2021-09-04'."""
    runs: list[list] = []
    for day in days:
        if runs and (day - runs[-1][-1]).days == 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]} to {run[-1]}" for run in runs)
