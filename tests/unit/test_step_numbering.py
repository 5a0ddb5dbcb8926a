"""One step convention (issue 25 item 1): steps are numbered 1..S; step s ends at boundary s, which
the stepper shows as "Step s / S". Branches store it; older branches (counted from 0) are read
shifted, so nothing cached changes meaning."""

from __future__ import annotations

import numpy as np

from app.panels import branches as panel
from backend.plots import fill
from backend.plots import importance as plots
from backend.plots.figures import step_label
from backend.store.runs import branch_step


def test_branch_step_reads_new_and_old_branches_alike():
    assert branch_step({"branch_at": 3, "branch": {"kind": "resample", "step_base": 1}}) == 3
    assert branch_step({"branch_at": 2, "branch": {"kind": "resample"}}) == 3  # written counting from 0
    assert branch_step({}) is None


def test_every_view_names_boundary_s_step_s():
    texts = ["a. ", "b. ", "c. "]
    rows = plots.strip_rows(3, {"ablation": [0.1, 0.2, 0.3], "attention": None}, [{"step": 2, "loss_delta": 0.5}])
    assert np.isnan(rows["resampling"][[0, 2]]).all() and rows["resampling"][1] == 0.5  # step 2 = column 2
    fig = plots.importance_strip(rows, texts)
    assert list(fig.data[0].x) == [1, 2, 3]
    assert "step 1:" in fig.data[0].text[0][0]
    assert plots.top_steps_table(rows, texts)["step"].tolist() == [3, 2, 1]
    assert step_label(2, 3) == "Step 2 / 3"
    marks = panel.marks(type("V", (), {"n_steps": 3})())
    assert marks["texts"][panel.START_LABEL] == [
        "Branch at step 1",
        "Branch at step 1",
        "Branch at step 2",
        "Branch at step 3",
    ]
    at = [fill.html_at(marks["fill"][panel.AT_ID], b) for b in range(4)]
    assert 'data-step="2"' in at[2] and "step 2 / 3, on screen" in at[2]
    assert 'data-step="1"' in at[0] and "the first step (the cursor is at the start)" in at[0]
