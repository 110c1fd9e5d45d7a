"""Training for real on small data: it learns, saves what it says, reloads to the same predictions, resumes."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import honed
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.errors import HonedError
from honed.tracking.ledger import Ledger
from honed.training.fit import train


def tiny_config(source, workspace, **train_kwargs) -> RunConfig:
    defaults = dict(epochs=3, batch_size=8, lr=3e-3, workers=0, seed=0)
    defaults.update(train_kwargs)
    return RunConfig(name="tiny", workspace=str(workspace), data=DataConfig(source=str(source), val_fraction=0.25),
                     model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=16),
                     train=TrainConfig(**defaults))


def test_train_learns_saves_and_reloads(color_folder, tmp_path):
    result = train(tiny_config(color_folder, tmp_path / "ws"))
    assert result.metrics["accuracy"] >= 0.9  # two colours: trivially separable
    run = result.run_dir
    for name in ("config.yaml", "labels.json", "metrics.csv", "best.safetensors", "last.safetensors",
                 "last.optimizer.safetensors", "state.json", "predictions_val.parquet", "curves.png",
                 "manifest.parquet"):
        assert (run / name).is_file(), name
    assert len(pd.read_csv(run / "metrics.csv")) == 3
    with Ledger(tmp_path / "ws") as ledger:
        record = ledger.get("tiny")
    assert record.status == "done" and record.score == pytest.approx(result.score)
    assert record.data_fingerprint and record.metric == "accuracy"

    saved = pd.read_parquet(run / "predictions_val.parquet")
    predictor = honed.load(run)
    probs = predictor.predict_proba(saved["path"].tolist(), workers=0)
    np.testing.assert_allclose(probs, saved[[f"p:{c}" for c in predictor.classes]].to_numpy(), atol=1e-5)
    table = predictor.predict(saved["path"].tolist()[:3], top_k=2, workers=0)
    assert list(table.columns[:5]) == ["path", "prediction", "probability", "prediction_2", "probability_2"]


def test_train_returns_the_settled_config_and_leaves_the_callers_alone(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, epochs=1)
    config.name, config.model.pretrained = "", True  # test_resnet has no pretrained weights: scratch drops them
    config.model.strategy = "scratch"
    before = copy.deepcopy(config)
    result = train(config)
    assert config == before
    settled = result.config
    assert settled.name == result.name == result.run_dir.name and settled.name
    assert settled.preprocess.mean and settled.preprocess.std and not settled.model.pretrained
    assert settled.data.skipped_files == 0
    assert RunConfig.from_yaml(result.run_dir / "config.yaml") == settled


def test_existing_run_name_is_refused(color_folder, tmp_path):
    train(tiny_config(color_folder, tmp_path, epochs=1))
    with pytest.raises(HonedError, match="already exists.*--resume tiny"):
        train(tiny_config(color_folder, tmp_path, epochs=1))


class _StopAfter:
    """A reporter that interrupts training after a given epoch, as Ctrl-C would."""

    def __init__(self, epoch):
        self.epoch = epoch

    def message(self, text): ...
    def phase_started(self, label, total): ...
    def advance(self, steps=1): ...
    def phase_finished(self): ...

    def epoch_finished(self, row):
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt


def test_resume_continues_and_matches_an_uninterrupted_run(color_folder, tmp_path):
    full = train(tiny_config(color_folder, tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(color_folder, tmp_path / "b"), reporter=_StopAfter(2))
    with Ledger(tmp_path / "b") as ledger:
        assert ledger.get("tiny").status == "interrupted"
    assert json.loads((tmp_path / "b" / "tiny" / "state.json").read_text())["epoch"] == 2
    resumed = train(RunConfig.from_yaml(tmp_path / "b" / "tiny" / "config.yaml"), resume=True)
    assert list(resumed.history["epoch"]) == [1, 2, 3]
    a = load_file(str(full.run_dir / "last.safetensors"))
    b = load_file(str(resumed.run_dir / "last.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # CPU, fixed seed: bit-identical


def test_head_strategy_freezes_backbone_and_bn_statistics(color_folder, tmp_path):
    config = tiny_config(color_folder, tmp_path, epochs=1)
    config.model.strategy = "head"
    torch.manual_seed(config.train.seed)
    from honed.models.factory import build_model

    before = build_model(RunConfig.from_dict(config.to_dict()).model, 2).state_dict()
    result = train(config)
    after = load_file(str(result.run_dir / "last.safetensors"))
    changed = [k for k in after if not torch.equal(before[k], after[k])]
    assert changed and all(k.startswith("fc.") for k in changed), changed


def test_bad_image_is_skipped_and_listed_or_refused_when_strict(color_folder, tmp_path):
    (color_folder / "red" / "broken.png").write_bytes(b"<html>not an image</html>")
    result = train(tiny_config(color_folder, tmp_path / "ws", epochs=1))
    listed = pd.read_csv(result.run_dir / "bad_files.csv")
    assert listed["path"].str.endswith("broken.png").tolist() == [True]
    assert "skipped_files: 1" in (result.run_dir / "config.yaml").read_text()
    strict = tiny_config(color_folder, tmp_path / "ws2", epochs=1)
    strict.data.strict = True
    with pytest.raises(HonedError, match="cannot be decoded.*broken.png"):
        train(strict)


def test_regression_from_a_csv(tmp_path):
    from tests.conftest import write_image

    rows = []
    for i in range(40):
        level = int(i * 6)
        write_image(tmp_path / "img" / f"{i}.png", (level, level, level), noise_seed=i)
        rows.append({"path": f"img/{i}.png", "brightness": level / 255})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    config = tiny_config(tmp_path / "m.csv", tmp_path / "ws", epochs=12, lr=1e-2)
    config.data.task, config.data.target_columns = "regress", ["brightness"]
    result = train(config)
    assert result.metric == "mae"
    spread = np.abs(np.array([r["brightness"] for r in rows]) - 0.46).mean()
    assert result.metrics["mae"] < spread  # better than predicting the mean brightness
    out = honed.load(result.run_dir).predict([str(tmp_path / "img" / "0.png")], workers=0)
    assert "brightness" in out.columns


def test_kfold_trains_one_run_per_fold(color_folder, tmp_path):
    from honed.training.crossval import cross_validate

    config = tiny_config(color_folder, tmp_path, epochs=1)
    config.data.folds = 2
    result = cross_validate(config)
    assert len(result.folds) == 2
    with Ledger(tmp_path) as ledger:
        assert {r.name for r in ledger.children("tiny")} == {"tiny-fold0", "tiny-fold1"}
        assert ledger.get("tiny").kind == "cv"


class _Collect(_StopAfter):
    def __init__(self):
        super().__init__(epoch=-1)
        self.messages = []

    def message(self, text):
        self.messages.append(text)


def test_training_warns_about_leakage_before_it_starts(color_folder, tmp_path):
    import shutil

    data = tmp_path / "split"
    shutil.copytree(color_folder, data / "train")
    for cls in ("red", "blue"):
        (data / "val" / cls).mkdir(parents=True)
        shutil.copy(color_folder / cls / "0.png", data / "val" / cls / "dup.png")  # the same bytes as a train image
    reporter = _Collect()
    train(tiny_config(data, tmp_path / "ws", epochs=1), reporter=reporter)
    assert any("leakage" in m and "train and val" in m for m in reporter.messages), reporter.messages


def test_training_on_a_users_own_dataset(tmp_path):
    class Stripes(torch.utils.data.Dataset):
        """Horizontal vs vertical stripes as float tensors: the user's own Dataset, no files."""

        classes = ["horizontal", "vertical"]

        def __init__(self, n, seed):
            self.n, self.seed = n, seed
            self.targets = [i % 2 for i in range(n)]

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(self.seed * 1000 + i)
            stripes = (torch.arange(16) // 2 % 2).float().view(16, 1).expand(16, 16)
            image = stripes if i % 2 == 0 else stripes.T
            return (0.7 * image + 0.3 * torch.rand(16, 16, generator=g)).expand(3, 16, 16), i % 2

    manifest = honed.from_datasets({"train": Stripes(48, 0), "val": Stripes(16, 1)})
    config = tiny_config("stripes", tmp_path, epochs=4)
    result = train(config, manifest=manifest)
    assert result.metrics["accuracy"] >= 0.9
    assert honed.load(result.run_dir).predict([Stripes(4, 2)[i][0] for i in range(4)])["prediction"].tolist() == [
        "horizontal", "vertical", "horizontal", "vertical"]


def test_a_run_that_fails_before_it_starts_leaves_no_folder_behind(color_folder, tmp_path):
    workspace = tmp_path / "ws"
    broken = tiny_config(color_folder, workspace)
    broken.model.name = "no_such_model_anywhere"
    with pytest.raises(HonedError):
        train(broken)
    assert not (workspace / "tiny").exists()
    assert train(tiny_config(color_folder, workspace, epochs=1)).run_dir == workspace / "tiny"
