import pytest

from honed.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from honed.errors import HonedError


def test_yaml_round_trip(tmp_path):
    config = RunConfig(name="x", data=DataConfig(source="d", target_columns=["a"]),
                       model=ModelConfig(name="resnet18", strategy="head"), train=TrainConfig(epochs=2, lr=0.01))
    path = tmp_path / "c.yaml"
    path.write_text(config.to_yaml())
    assert RunConfig.from_yaml(path) == config


@pytest.mark.parametrize("build, message", [
    (lambda: TrainConfig(epochs=0), "--epochs"),
    (lambda: TrainConfig(optimizer="adam9"), "--optimizer"),
    (lambda: ModelConfig(strategy="magic"), "--strategy"),
    (lambda: DataConfig(val_fraction=1.5), "--val-fraction"),
    (lambda: RunConfig.from_dict({"train": {"epochz": 3}}), "unknown key"),
    (lambda: RunConfig.from_dict({"bogus": 1}), "unknown config key"),
    (lambda: RunConfig(train=TrainConfig(metric="mae")).main_metric(), "does not fit"),
])
def test_bad_values_name_the_option(build, message):
    with pytest.raises(HonedError, match=message):
        build()
