"""ImageClassifier and ImageRegressor on tiny real data: every kind of input fits and predicts, probabilities
come in the order of ``classes_``, evaluate gives the task's metrics, the scikit-learn contract holds, and a
fitted estimator survives export and load with the same predictions."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch.utils.data import Dataset

import honed
from honed.config import RunConfig, config_options
from honed.errors import HonedError
from honed.estimator import ImageClassifier, ImageRegressor, load
from tests.conftest import write_image

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(workspace: Path, cls=ImageClassifier, **overrides):
    settings = dict(model="test_resnet", pretrained=False, strategy="full", image_size=16, epochs=2, batch_size=8,
                    lr=3e-3, workers=0, val_fraction=0.25, workspace=str(workspace))
    settings.update(overrides)
    return cls(**settings)


def paths_and_labels(folder: Path) -> tuple[list[str], list[str]]:
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    return paths, [Path(p).parent.name for p in paths]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One classifier fitted on a folder, shared by the tests that only read it."""
    from tests.conftest import write_color_folder

    root = tmp_path_factory.mktemp("est")
    folder = write_color_folder(root / "colors")
    return tiny(root / "ws").fit(str(folder)), folder


def test_fit_on_a_folder_returns_itself_and_predicts_labels_and_ordered_probabilities(fitted):
    clf, folder = fitted
    paths, labels = paths_and_labels(folder)
    assert list(clf.classes_) == ["blue", "red"] and clf.run_dir_.is_dir()
    predicted = clf.predict(paths)
    assert isinstance(predicted, np.ndarray) and predicted.shape == (len(paths),)
    assert (predicted == np.asarray(labels)).mean() >= 0.9  # two colours: trivially separable
    proba = clf.predict_proba(paths)
    assert proba.shape == (len(paths), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], predicted)
    reference = honed.load(clf.run_dir_)  # the run's own predictor: its columns are its classes, in order
    assert reference.classes == list(clf.classes_)
    np.testing.assert_allclose(proba, reference.predict_proba(paths, workers=0), atol=1e-6)
    # a folder, a CSV of paths and a DataFrame predict the same images alike
    np.testing.assert_allclose(clf.predict_proba(str(folder)), proba, atol=1e-6)
    frame = pd.DataFrame({"path": paths, "label": labels})
    np.testing.assert_allclose(clf.predict_proba(frame), proba, atol=1e-6)
    assert clf.score(paths, labels) == (predicted == np.asarray(labels)).mean()  # scikit-learn's score(X, y)


def test_evaluate_gives_the_tasks_metrics_on_folders_csvs_and_dataframes(fitted, tmp_path):
    clf, folder = fitted
    paths, labels = paths_and_labels(folder)
    scores = clf.evaluate(str(folder))
    assert set(scores) == {"accuracy", "macro_f1", "log_loss"} and scores["accuracy"] >= 0.9
    csv = tmp_path / "list.csv"
    pd.DataFrame({"path": [str(Path(p).relative_to(folder)) for p in paths], "label": labels}).to_csv(csv)
    moved = folder / "list.csv"  # relative paths resolve against the CSV's own folder
    moved.write_text(csv.read_text())
    assert clf.evaluate(str(moved)) == pytest.approx(scores)
    flipped = pd.DataFrame({"path": paths, "label": ["red" if l == "blue" else "blue" for l in labels]})
    assert clf.evaluate(flipped)["accuracy"] == pytest.approx(1 - scores["accuracy"])
    with pytest.raises(HonedError, match="not classes of this model"):
        clf.evaluate(pd.DataFrame({"path": paths, "label": ["green"] * len(paths)}))


def test_fit_on_a_csv_and_on_a_dataframe_of_paths(color_folder, tmp_path):
    paths, labels = paths_and_labels(color_folder)
    csv = color_folder / "train.csv"
    pd.DataFrame({"file": [str(Path(p).relative_to(color_folder)) for p in paths], "kind": labels}).to_csv(csv)
    clf = tiny(tmp_path / "ws", path_column="file", label_column="kind").fit(str(csv))
    assert clf.evaluate(str(csv))["accuracy"] >= 0.9
    frame = pd.DataFrame({"path": paths, "label": labels})
    other = tiny(tmp_path / "ws").fit(frame)
    assert other.run_dir_ != clf.run_dir_ and other.evaluate(frame)["accuracy"] >= 0.9


def test_fit_on_dataframes_of_images_in_memory_with_a_validation_frame(color_folder, tmp_path):
    paths, labels = paths_and_labels(color_folder)
    images = [Image.open(p).convert("RGB") for p in paths]
    train = pd.DataFrame({"path": images[::2], "label": labels[::2]})  # PIL images
    val = pd.DataFrame({"path": [np.asarray(i) for i in images[1::2]], "label": labels[1::2]})  # HWC arrays
    clf = tiny(tmp_path / "ws", epochs=4).fit(train, val=val)
    manifest = pd.read_parquet(clf.run_dir_ / "manifest.parquet")
    assert (manifest["split"] == "val").sum() == len(val) and (manifest["split"] == "train").sum() == len(train)
    scores = clf.evaluate(val)
    assert scores["accuracy"] >= 0.9
    # the same pixels as files train the same model: memory changes where images come from, nothing else
    from_files = tiny(tmp_path / "ws", epochs=4).fit(pd.DataFrame({"path": paths[::2], "label": labels[::2]}),
                                                    val=pd.DataFrame({"path": paths[1::2], "label": labels[1::2]}))
    assert from_files.metrics_["log_loss"] == pytest.approx(clf.metrics_["log_loss"], abs=1e-5)
    # the same pixels from memory and from the files give the same probabilities
    np.testing.assert_allclose(clf.predict_proba(list(val["path"])), clf.predict_proba(paths[1::2]), atol=1e-6)
    with pytest.raises(HonedError, match="same kind"):
        tiny(tmp_path / "ws").fit(train, val=pd.DataFrame({"path": paths[1::2], "label": labels[1::2]}))


class ColorDataset(Dataset):
    classes = ["blue", "red"]

    def __init__(self, paths: list[str], labels: list[str]):
        self.images = [Image.open(p).convert("RGB") for p in paths]
        self.targets = [self.classes.index(l) for l in labels]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def test_fit_on_a_torch_dataset(color_folder, tmp_path):
    paths, labels = paths_and_labels(color_folder)
    dataset = ColorDataset(paths, labels)
    clf = tiny(tmp_path / "ws").fit(dataset)
    assert list(clf.classes_) == ColorDataset.classes
    assert (clf.predict(dataset) == np.asarray(labels)).mean() >= 0.9
    assert clf.evaluate(dataset)["accuracy"] >= 0.9
    with pytest.raises(HonedError, match="regression"):
        tiny(tmp_path / "ws", cls=ImageRegressor).fit(dataset)


def test_parameters_are_the_cli_options_with_the_configs_defaults():
    defaults = config_options(RunConfig())
    for cls in (ImageClassifier, ImageRegressor):
        params = cls().get_params()
        for name, value in params.items():
            if name in ("model", "pretrained", "strategy", "target", "name"):
                continue  # the workflow's model and strategy (honed.estimator.estimators); name: as the CLI's
            expected = defaults[name]
            assert (list(value) if isinstance(value, tuple) else value) == expected, name
    assert ImageClassifier().get_params()["strategy"] == "auto"
    signature = inspect.signature(ImageClassifier)
    assert all(p.kind == p.KEYWORD_ONLY for name, p in signature.parameters.items() if name != "model")


def test_clone_get_params_and_set_params(fitted):
    clf, _ = fitted
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and copy is not clf
    assert not hasattr(copy, "predictor_")
    with pytest.raises(NotFittedError):
        copy.predict(["x.png"])
    assert copy.set_params(epochs=7, lr=0.01) is copy and copy.epochs == 7 and copy.lr == 0.01
    assert clf.epochs == 2  # the original is untouched
    with pytest.raises(ValueError):
        copy.set_params(not_an_option=1)


def test_export_and_load_give_back_the_same_predictions(fitted, tmp_path):
    clf, folder = fitted
    paths, _ = paths_and_labels(folder)
    bundle = clf.export(tmp_path / "bundle")
    assert (bundle / "bundle.json").is_file()
    expected = clf.predict_proba(paths)
    for loaded in (load(bundle), ImageClassifier.load(clf.run_dir_), load(clf.run_dir_)):
        assert isinstance(loaded, ImageClassifier) and list(loaded.classes_) == list(clf.classes_)
        np.testing.assert_allclose(loaded.predict_proba(paths), expected, atol=1e-5)
        assert loaded.model == "test_resnet" and loaded.image_size == 16
    from_run = load(clf.run_dir_)  # a run folder also knows how it was trained (a bundle only how to predict)
    assert from_run.epochs == 2 and from_run.lr == 3e-3 and from_run.get_params()["name"] == ""
    assert ImageClassifier.load(clf.run_dir_).metrics_["accuracy"] == clf.metrics_["accuracy"]
    with_onnx = clf.export(tmp_path / "onnx", format="onnx")  # parity-checked against the model
    assert (with_onnx / "model.onnx").is_file() and (with_onnx / "model.safetensors").is_file()
    with pytest.raises(HonedError, match="exported already"):
        load(bundle).export(tmp_path / "again")
    with pytest.raises(HonedError, match="ImageClassifier"):
        ImageRegressor.load(bundle)


def test_an_undecodable_input_is_an_error_naming_it(fitted, tmp_path):
    clf, folder = fitted
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(HonedError, match="broken.png"):
        clf.predict([str(broken)])


def test_time_limit_stops_between_epochs(color_folder, tmp_path):
    stopped = tiny(tmp_path / "ws", epochs=6).fit(str(color_folder), time_limit=1e-3)
    assert len(pd.read_csv(stopped.run_dir_ / "metrics.csv")) == 1  # the first epoch always runs
    full = tiny(tmp_path / "ws", epochs=3).fit(str(color_folder), time_limit=600)
    assert len(pd.read_csv(full.run_dir_ / "metrics.csv")) == 3
    with pytest.raises(HonedError, match="time_limit"):
        tiny(tmp_path / "ws").fit(str(color_folder), time_limit=0)


def brightness_frame(root: Path, n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        level = float(rng.uniform(0.1, 0.9))
        gray = int(level * 255)
        rows.append((str(write_image(root / f"{i}.png", (gray, gray, gray), noise_seed=i)), level, 1 - level))
    return pd.DataFrame(rows, columns=["path", "bright", "dark"])


def test_regressor_predicts_values_and_evaluates_mae_rmse(tmp_path):
    frame = brightness_frame(tmp_path / "gray")
    reg = tiny(tmp_path / "ws", cls=ImageRegressor, target="bright", epochs=4).fit(frame)
    values = reg.predict(frame)
    assert values.shape == (len(frame),) and reg.target_columns_ == ["bright"]
    scores = reg.evaluate(frame)
    assert set(scores) == {"mae", "rmse"}
    assert scores["mae"] == pytest.approx(np.abs(values - frame["bright"].to_numpy()).mean(), rel=1e-4)
    assert not hasattr(reg, "predict_proba")
    truth = frame["bright"].to_numpy()
    assert reg.score(frame, truth) == pytest.approx(1 - ((values - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum(),
                                                    rel=1e-4)  # scikit-learn's R^2
    two = tiny(tmp_path / "ws", cls=ImageRegressor, target=["bright", "dark"], epochs=1).fit(frame)
    assert two.predict(frame["path"].tolist()).shape == (len(frame), 2)
    assert load(two.run_dir_).target == ["bright", "dark"]
