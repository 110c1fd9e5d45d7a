"""A finished workflow's report shows its own row as done: the report is written after the row is closed."""

from __future__ import annotations

from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.report.collect import collect
from honed.workflow import WorkflowSpec, run_workflow


def test_the_report_of_a_finished_workflow_says_done(color_folder, tmp_path):
    workspace = tmp_path / "ws"
    base = RunConfig(name="", workspace=str(workspace), data=DataConfig(source=str(color_folder)),
                     model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=16),
                     train=TrainConfig(epochs=1, batch_size=8, workers=0, seed=0))
    spec = WorkflowSpec(name="wf", base=base, budget_s=600, strategy="full", lr=3e-3, improve_rounds=0,
                        tune_trials=0, tta="", ensemble_size=0, refit=False)
    result = run_workflow(spec)

    rows = {row.name: row for row in collect(result.folder, workspace=workspace).steps}
    assert rows["wf"].kind == "workflow" and rows["wf"].status == "done"
    html = result.report.read_text()
    top = html[html.index(">wf<"):][:600]  # the workflow's own row in the report's step table
    assert "running" not in top and "done" in top
