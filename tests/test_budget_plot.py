"""tools/plot_inversion_budget.py reads the right rows of an evaluate_inversion recording."""

import json

import pytest

from .helpers import load_tool


def _row(setting: str, ap50: float, stop: float, **extra) -> dict:
    return {"setting": setting, "score": "leave_one_out", "selection": "best", "polish_sweeps": 0, "AP": ap50 / 3,
            "AP50": ap50, "AP75": ap50 / 2, "mean_stop_step": stop, **extra}


def _write(tmp_path, rows: list[dict]) -> str:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"rows": rows}))
    return str(path)


def test_rows_of_the_requested_restart_count_split_into_budgets_and_patience(tmp_path):
    rows = [
        _row("budget 300, best of 1", 10.0, 300), _row("budget 100, best of 1", 2.0, 100),
        _row("patience 10 (max 300), best of 1", 12.0, 250),
        _row("budget 100, best of 4", 8.0, 100), _row("budget 300, best of 4", 9.0, 300),
        _row("patience 10 (max 300), best of 4", 11.0, 260),
        _row("budget 300, best of 4, polished x2", 50.0, 300, polish_sweeps=2),
        _row("budget 300, best of 4", 60.0, 300, selection="pooled"),
        _row("budget 300, best of 4", 70.0, 300, score="constant"),
    ]
    plot = load_tool("plot_inversion_budget")
    path = _write(tmp_path, rows)

    budgets, patiences = plot.budget_and_patience_rows(path, "leave_one_out")  # default: the most runs recorded
    assert [(row["AP50"], row["mean_stop_step"]) for row in budgets] == [(8.0, 100), (9.0, 300)]
    assert [row["AP50"] for row in patiences] == [11.0]

    budgets, patiences = plot.budget_and_patience_rows(str(tmp_path), "leave_one_out", restarts=1)  # the folder
    assert [row["AP50"] for row in budgets] == [2.0, 10.0]
    assert [row["AP50"] for row in patiences] == [12.0]

    with pytest.raises(ValueError, match=r"best of 2 runs \(recorded: \[1, 4\]\)"):
        plot.budget_and_patience_rows(path, "leave_one_out", restarts=2)


def test_a_single_run_recording_has_rows_without_a_restart_suffix(tmp_path):
    plot = load_tool("plot_inversion_budget")
    path = _write(tmp_path, [_row("budget 500", 3.0, 500), _row("budget 100", 1.0, 100),
                             _row("patience 30 (max 500)", 4.0, 400)])
    budgets, patiences = plot.budget_and_patience_rows(path, "leave_one_out", restarts=1)
    assert [row["mean_stop_step"] for row in budgets] == [100, 500]
    assert [row["setting"] for row in patiences] == ["patience 30 (max 500)"]
    with pytest.raises(ValueError, match="no unpolished"):
        plot.budget_and_patience_rows(path, "margin")
