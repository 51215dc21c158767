"""Command-line interface: `parkcast --help` lists every command."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from parkcast.settings import Settings, get_settings, mask_url

__all__ = ["app"]

app = typer.Typer(help="parkcast: scheduled forecasts of theme-park ride wait times.", no_args_is_help=True)


@app.callback()
def _prepare() -> None:
    # Prefect's local mode fails with "unable to open database file" when
    # PREFECT_HOME names a folder that does not exist yet.
    if prefect_home := os.environ.get("PREFECT_HOME"):
        Path(prefect_home).expanduser().mkdir(parents=True, exist_ok=True)


@app.command()
def run() -> None:
    """Run the daily_forecast flow once: ingest, retrain if needed, write forecasts."""
    from parkcast.flows.daily_forecast import daily_forecast
    from parkcast.summary import format_daily_summary

    summary = daily_forecast()
    typer.echo(format_daily_summary(summary))


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings, with any database password masked."""
    settings = get_settings()
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if name == "database_url":
            value = mask_url(value)
        typer.echo(f"PARKCAST_{name.upper():<28} {value}")


@app.command()
def backtest(
    seeds: int = typer.Option(1, help="MLPs trained with consecutive seeds; their mean is the MLP forecast"),
    lightgbm: bool = typer.Option(True, help="Also score LightGBM (needs the bench extra)"),
    hparam: list[str] = typer.Option([], help="MLP hyper-parameter as NAME=VALUE (JSON value), repeatable"),
) -> None:
    """Run the WDW-2019H2 benchmark on PARKCAST_DATA_DIR and print every model's test scores."""
    import json

    from parkcast.models.mlp import HyperParameters
    from parkcast.tasks.backtest import format_backtest, run_backtest

    values: dict[str, object] = {}
    for item in hparam:
        name, sep, text = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--hparam {item!r}: write NAME=VALUE, e.g. dropout_rate=0.2")
        try:
            values[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[name.strip()] = text
    hparams = HyperParameters.parse(**values)
    typer.echo(f"MLP hyper-parameters: {hparams.model_dump()}")
    result = run_backtest(get_settings().data_dir, hparams=hparams, seeds=seeds, include_lightgbm=lightgbm)
    typer.echo(format_backtest(result))


@app.command()
def sweep(
    out_dir: Path = typer.Option(Path("var/sweep"), help="Folder for sweep.csv, sweep.md and the PNG plots"),
    rates: str = typer.Option("0.0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", help="Comma-separated dropout rates"),
    placements: str = typer.Option("first,every", help="Comma-separated dropout placements"),
    batch_norm: str = typer.Option("off,on", help="Comma-separated batch normalization settings: off, on"),
    sample_share: float = typer.Option(0.25, help="Share of training cells each configuration fits on"),
    max_epochs: int = typer.Option(6, help="Epochs per configuration (early stopping may end sooner)"),
) -> None:
    """Run the dropout sweep flow on the WDW-2019H2 training window; score on its validation slice."""
    from parkcast.flows.sweep import dropout_sweep

    def split(text: str) -> list[str]:
        return [part.strip() for part in text.split(",") if part.strip()]

    try:
        rate_values = tuple(float(part) for part in split(rates))
    except ValueError:
        raise typer.BadParameter(f"--rates {rates!r}: give numbers such as 0.0,0.1,0.5") from None
    norms = {"off": False, "on": True}
    if bad := [part for part in split(batch_norm) if part not in norms]:
        raise typer.BadParameter(f"--batch-norm {bad}: use off and/or on")
    table = dropout_sweep(
        data_dir=get_settings().data_dir, out_dir=out_dir, rates=rate_values, placements=tuple(split(placements)),
        batch_norms=tuple(norms[part] for part in split(batch_norm)), sample_share=sample_share, max_epochs=max_epochs,
    )
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    typer.echo(f"Outputs in {out_dir}")


if __name__ == "__main__":
    app()
