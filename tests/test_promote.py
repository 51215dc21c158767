"""Promotion rule: beat the baseline first, then the champion by the margin."""

import pytest

from parkcast.tasks.evaluate import Scores
from parkcast.tasks.promote import decide


def _scores(mae: float) -> Scores:
    return Scores(mae=mae, rmse=mae * 1.4, within_10=0.5, cells=100)


@pytest.mark.parametrize(
    ("challenger", "champion", "baseline", "promote"),
    [
        (10.0, None, 12.0, True),
        (12.5, None, 12.0, False),
        (9.5, 10.0, 12.0, True),
        (9.95, 10.0, 12.0, False),
        (10.5, 10.0, 12.0, False),
    ],
    ids=["first-beats-baseline", "first-loses-to-baseline", "beats-champion-by-margin", "within-margin", "worse-than-champion"],
)
def test_decide(challenger, champion, baseline, promote):
    decision = decide(_scores(challenger), _scores(champion) if champion else None, _scores(baseline), margin=0.1)
    assert decision.promote is promote
    assert f"{challenger:.2f}" in decision.reason


def test_decide_names_unscored_champion():
    """A champion that exists but could not be scored is named, not called a first model."""
    decision = decide(_scores(10.0), None, _scores(12.0), margin=0.1, unscored_champion_id="v-old")
    assert decision.promote
    assert decision.reason == "champion v-old could not be scored: MAE 10.00 beats seasonal-naive baseline 12.00"
