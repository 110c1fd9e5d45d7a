"""The one Registry behind every extension point: registration, lookup errors that help, wildcard listing."""

import pytest

from honed.errors import HonedError
from honed.registry import Registry, unknown_name


def make() -> Registry:
    reg = Registry("augmentation")
    for name in ("hflip", "vflip", "rotate", "resize"):
        reg.register(name, name.upper())
    return reg


def test_register_as_decorator_and_as_call_returns_the_object():
    reg = Registry("optimizer")

    @reg.register("sgd")
    def sgd():
        return "sgd"

    adamw = reg.register("adamw", lambda: "adamw")
    assert reg["sgd"] is sgd and reg.get("adamw") is adamw and sgd() == "sgd"
    assert "sgd" in reg and "adam" not in reg and ["not", "hashable"] not in reg
    assert len(reg) == 2 and list(reg) == ["sgd", "adamw"]  # registration order


def test_duplicate_names_are_refused_unless_overridden():
    reg = make()
    with pytest.raises(HonedError, match="augmentation 'rotate' is already registered"):
        reg.register("rotate", "other")
    assert reg["rotate"] == "ROTATE"
    reg.register("rotate", "other", override=True)
    assert reg["rotate"] == "other" and len(reg) == 4
    with pytest.raises(HonedError, match="non-empty name"):
        reg.register("", "x")


def test_unknown_name_names_the_kind_suggests_close_names_and_lists_all():
    with pytest.raises(HonedError) as err:
        make().get("hfilp")
    message = str(err.value)
    assert message.startswith("unknown augmentation 'hfilp' (did you mean hflip")
    assert message.endswith("use one of hflip, resize, rotate, vflip")  # sorted for scanning
    assert "\n" not in message
    with pytest.raises(HonedError, match=r"unknown augmentation 'zzz': use one of"):  # nothing close: no hint
        make()["zzz"]
    with pytest.raises(HonedError, match="unknown augmentation"):
        make()[["unhashable"]]  # a list from a hand-edited YAML file is a user error, not a TypeError


def test_suggestions_and_extra_valid_names():
    reg = make()
    assert reg.suggest("rotat") == ["rotate"] and reg.suggest("qqqq") == [] and reg.suggest(3) == []
    error = reg.unknown("flip", extra=["flips"], tail=", or aug:NAME")
    assert set(reg.suggest("flip")) == {"hflip", "vflip"}
    assert "flips" in str(error).split("use one of")[0] and str(error).endswith("vflip, or aug:NAME")
    assert str(unknown_name("logger", "x", [])) == "unknown logger 'x': no logger is registered"


def test_names_filter_with_wildcards_in_registration_order():
    reg = make()
    assert reg.names() == ["hflip", "vflip", "rotate", "resize"]
    assert reg.names("r*") == ["rotate", "resize"]
    assert reg.names("*flip") == ["hflip", "vflip"]
    assert reg.names("nothing*") == []


def test_copy_is_independent():
    reg = make()
    twin = reg.copy()
    twin.register("blur", "BLUR")
    assert "blur" in twin and "blur" not in reg and twin.kind == reg.kind


def test_every_extension_point_uses_the_registry():
    from honed.augment import AUGMENTATIONS
    from honed.combine.rules import METHODS
    from honed.export.formats import EXPORT_FORMATS
    from honed.models.heads import HEADS
    from honed.models.strategies import STRATEGIES
    from honed.optim import OPTIMIZERS, SCHEDULES
    from honed.runtime import PRECISIONS
    from honed.tracking.loggers import LOGGERS
    from honed.tta.views import VIEWS

    expected = {
        AUGMENTATIONS: {"hflip", "mixup"}, METHODS: {"soft", "hard"}, EXPORT_FORMATS: {"onnx", "torchscript"},
        HEADS: {"logreg", "svm", "ridge", "svr", "gbm"}, STRATEGIES: {"probe", "full"},
        OPTIMIZERS: {"adamw", "sgd"}, SCHEDULES: {"cosine", "onecycle", "constant", "cyclic"},
        PRECISIONS: {"auto", "32", "bf16", "16"}, LOGGERS: {"tensorboard", "mlflow"}, VIEWS: {"identity", "hflip"},
    }
    for registry, names in expected.items():
        assert isinstance(registry, Registry) and names <= set(registry.names()), registry.kind
    assert OPTIMIZERS.names()[0] == "adamw" and SCHEDULES.names()[0] == "cosine"  # defaults first


def test_config_messages_start_with_the_flag_and_list_registry_names():
    from honed.config import ModelConfig, TrainConfig

    with pytest.raises(HonedError, match=r"^--optimizer must be one of adamw, sgd, not 'lbfgs'$"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(HonedError, match=r"^--schedule must be one of cosine, onecycle, constant, cyclic, not "
                                         r"'cosin' \(did you mean cosine\?\)$"):
        TrainConfig(schedule="cosin")
    with pytest.raises(HonedError, match=r"^--precision must be one of auto, 32, bf16, 16"):
        TrainConfig(precision="64")
    with pytest.raises(HonedError, match=r"^--head-model must be one of logreg, svm, ridge, svr, gbm"):
        ModelConfig(head_model="forest")
    assert ModelConfig(head_model="gbm").head_model == "gbm" and ModelConfig().head_model == ""
