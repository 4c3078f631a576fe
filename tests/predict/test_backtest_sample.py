"""Rolling-origin backtest of road wear on the committed sample (PCI surveys, real PostGIS)."""

import pytest

from predict.evaluate import backtest


@pytest.mark.slow
def test_sample_backtest_beats_persistence_and_trend_at_every_horizon(sample_engine, tmp_path):
    # Six monthly origins, 2025-11-20 to 2026-04-19 (the newest that leaves 180 days and the
    # window scorable): figures in docs/benchmarks.md ("Road wear, rolling origins").
    # The plots as a PNG (the HTML report is read in test_survey_scenario.py).
    png = tmp_path / "backtest.png"
    report = backtest(sample_engine, "pci", [30, 90, 180], origins=6, step_days=30, report=png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report["report"] == str(png)
    assert len(report["origins"]) == 6
    for horizon in (30, 90, 180):
        h = report["horizons"][horizon]
        assert h["rows"] > 250
        assert h["mae"]["model"] < h["mae"]["persistence"], (horizon, h["mae"])
        assert h["mae"]["model"] < h["mae"]["trend"], (horizon, h["mae"])
        crossings = h["crossings"]
        assert crossings["model"]["recall"] >= crossings["linear_trend"]["recall"]
        # The crossing's earliest date (the interval's pessimistic end) finds most crossings.
        assert crossings["model_earliest"]["recall"] >= 0.85, crossings
    for horizon in (30, 90, 180):
        assert 0.75 <= report["horizons"][horizon]["coverage"] <= 0.85, report["horizons"]
