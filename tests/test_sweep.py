"""The dropout sweep flow on a small real slice: outputs written, bad values rejected."""

import pandas as pd
import pytest

from parkcast.flows.sweep import dropout_sweep
from parkcast.models.mlp import InvalidHyperParametersError

from .conftest import write_slice


@pytest.fixture(scope="module")
def sweep_slice(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("sweep"), rides=["soarin"], start="03/01/2019", end="07/31/2019")


@pytest.mark.slow
def test_sweep_writes_table_and_plots(prefect_harness, sweep_slice, tmp_path):
    table = dropout_sweep(
        data_dir=sweep_slice, out_dir=tmp_path, rates=(0.0, 0.5), placements=("first", "every"),
        batch_norms=(False,), sample_share=0.5, max_epochs=1,
    )
    assert len(table) == 4
    assert table["val_mae"].is_monotonic_increasing  # best first
    assert set(table["dropout_placement"]) == {"first", "every"}
    written = pd.read_csv(tmp_path / "sweep.csv")
    assert len(written) == 4
    # Validation days lie inside the training window, before the test window starts.
    assert "..2019-06-30" in (tmp_path / "sweep.md").read_text()
    for name in ["sweep_val_mae.png", "sweep_loss_curves.png"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"rates": (0.2, 1.0)}, "dropout_rate=1.0"), ({"placements": ("middle",)}, "dropout_placement='middle'")],
    ids=["rate-one", "unknown-placement"],
)
def test_sweep_rejects_bad_configuration_before_training(prefect_harness, tmp_path, arguments, message):
    # The data folder does not exist: the check must fail before any file is read.
    with pytest.raises(InvalidHyperParametersError, match=message):
        dropout_sweep(data_dir=tmp_path / "missing", out_dir=tmp_path, **arguments)
