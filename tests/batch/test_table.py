"""The per-class summary of a results table."""

from __future__ import annotations

from vnnbridge.batch.table import class_summary, format_summary


def _row(cls: str, status: str, apothem: str = "", calls: str = "4", seconds: str = "1.0") -> dict[str, str]:
    return {"id": "x", "label": cls, "true_label": cls, "status": status, "apothem": apothem, "calls": calls,
            "seconds": seconds}


def test_class_summary() -> None:
    rows = [_row("1", "certified", "0.1"), _row("1", "certified", "0.3", "6", "3.0"), _row("1", "not certified"),
            _row("10", "failed", calls="", seconds="0.5"), _row("2", "certified", "0.2")]
    by = {s["class"]: s for s in class_summary(rows)}
    assert list(by) == ["1", "2", "10", "all"]  # numeric order, then the total
    one = by["1"]
    assert one["count"] == 3 and abs(one["certified_pct"] - 200 / 3) < 1e-9 and one["failed"] == 0
    assert one["mean_apothem"] == 0.2 and one["median_apothem"] == 0.2  # over certified inputs only
    assert abs(one["mean_calls"] - 14 / 3) < 1e-9 and abs(one["mean_seconds"] - 5 / 3) < 1e-9
    assert by["10"]["mean_apothem"] is None and by["10"]["failed"] == 1 and by["10"]["mean_calls"] is None
    assert by["all"]["count"] == 5 and by["all"]["certified_pct"] == 60.0
    text = format_summary(class_summary(rows)).splitlines()
    assert text[0].split()[:3] == ["class", "count", "certified"] and text[-1].split()[:3] == ["all", "5", "60.0"]


def test_true_label_unknown_groups_by_label() -> None:
    rows = [{"id": "a", "label": "3", "true_label": "", "status": "certified", "apothem": "0.5"}]
    assert [s["class"] for s in class_summary(rows)] == ["3", "all"]
