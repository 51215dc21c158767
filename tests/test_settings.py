"""Settings from PARKCAST_* variables and password masking in logs."""

import logging

import pytest
from pydantic import ValidationError

from parkcast.logs import PasswordMaskingFilter
from parkcast.settings import Settings, mask_url


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("PARKCAST_HORIZON_DAYS", "14")
    monkeypatch.setenv("PARKCAST_MODEL_DIR", str(tmp_path))
    settings = Settings()
    assert settings.horizon_days == 14
    assert settings.model_dir == tmp_path


def test_out_of_range_setting_is_rejected(monkeypatch):
    monkeypatch.setenv("PARKCAST_HORIZON_DAYS", "0")
    with pytest.raises(ValidationError, match="horizon_days"):
        Settings()


def test_trial_combine_setting(monkeypatch):
    monkeypatch.setenv("PARKCAST_TRIAL_COMBINE", "average")
    assert Settings().trial_combine == "average"
    monkeypatch.setenv("PARKCAST_TRIAL_COMBINE", "median")
    with pytest.raises(ValidationError, match=r"trial_combine\n  Input should be 'best' or 'average'.*input_value='median'"):
        Settings()


def test_mask_url_hides_password():
    masked = mask_url("postgresql+psycopg://app:s3cret@db.example:5432/parkcast")
    assert "s3cret" not in masked
    assert masked == "postgresql+psycopg://app:***@db.example:5432/parkcast"


def test_log_filter_masks_password_in_message():
    record = logging.LogRecord("parkcast", logging.ERROR, __file__, 1, "cannot reach %s", ("postgresql://u:hunter2@h/db",), None)
    PasswordMaskingFilter().filter(record)
    assert "hunter2" not in record.getMessage()
    assert "postgresql://u:***@h/db" in record.getMessage()


def test_settings_command_masks_password(monkeypatch):
    from typer.testing import CliRunner

    from parkcast.cli import app
    from parkcast.settings import get_settings

    monkeypatch.setenv("PARKCAST_DATABASE_URL", "postgresql+psycopg://app:s3cret@localhost/parkcast")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["settings"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0
    assert "s3cret" not in result.output
    assert "PARKCAST_DATABASE_URL" in result.output
