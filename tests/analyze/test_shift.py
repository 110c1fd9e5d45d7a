"""Shift detection with tiny planted shifts: the validation split turned a quarter (or darkened) must be named
first, with its evidence; an unshifted one must not be blamed on a shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from honed.analyze import analyze_run
from honed.config import DataConfig, ModelConfig, PreprocessConfig, RunConfig, TrainConfig
from honed.training.fit import train

SIZE = 16
CLASSES = ("stripes", "ramp", "corner")  # all drawn upright: a quarter turn makes each look new, not another class


def band_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A noisy image of its class in a random colour: horizontal stripes, a top-to-bottom ramp, or a bright
    top-left corner. Turned a quarter, each is still its class (as a sideways photo is), but looks unseen."""
    image = rng.integers(0, 50, (SIZE, SIZE, 3)).astype(np.float64)
    colour = rng.integers(150, 256, 3).astype(np.float64)
    rows = np.arange(SIZE)[:, None, None]
    if kind == "stripes":
        period = int(rng.integers(3, 5))
        image += colour * ((rows // (period // 2 + 1)) % 2 == 0)
    elif kind == "ramp":
        image += colour * (1 - rows / SIZE)
    else:
        side = int(rng.integers(5, 8))
        image[:side, :side] += colour
    return np.clip(image, 0, 255).astype(np.uint8)


def write_split(root, split: str, n: int, seed: int, change=lambda a: a) -> None:
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        folder = root / split / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.ascontiguousarray(change(band_image(kind, rng)))).save(folder / f"{i}.png")


def trained(root, change) -> RunConfig:
    write_split(root / "data", "train", 40, seed=0)
    write_split(root / "data", "val", 20, seed=1, change=change)
    config = RunConfig(name="base", workspace=str(root / "ws"), data=DataConfig(source=str(root / "data")),
                       model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=SIZE),
                       train=TrainConfig(epochs=4, batch_size=16, lr=1e-2, workers=0, seed=0))
    return train(config)


@pytest.fixture(scope="module")
def turned(tmp_path_factory):
    """A run whose validation images are all turned a quarter clockwise, and its analysis."""
    result = trained(tmp_path_factory.mktemp("turned"), lambda a: np.rot90(a, k=-1))
    return result, analyze_run(result.run_dir, workers=0, reference_images=60, probes=["rotation", "size", "blur"])


def test_a_quarter_turn_of_the_validation_images_is_named_first(turned):
    result, analysis = turned
    assert analysis.summary["train_accuracy"] - analysis.summary["val_accuracy"] > 0.2, analysis.summary
    top = analysis.shifts["candidates"][0]
    assert top["name"] == "turned a quarter clockwise" and top["significant"], analysis.shifts["candidates"][:3]
    assert top["share_of_gap"] > 0.75 and top["back_failure"] < top["val_failure"] / 2
    assert analysis.factors[0].name == "rotation" and analysis.factors[0].shift == top["name"]
    first = analysis.recommendations[0]
    assert first.group == "orientation" and first.policy == "quarter_turn@0.5"
    assert first.training == {"epochs": 8.0}  # the augmentation gets the epochs to pay for it
    assert "regularization" not in [r.group for r in analysis.recommendations[:1]]


def test_the_evidence_shows_the_worst_images_and_the_same_turned_back(turned):
    result, analysis = turned
    evidence = analysis.shifts["evidence"]
    assert evidence["shift"] == "turned a quarter clockwise" and len(evidence["paths"]) > 0
    assert evidence["before"] != evidence["targets"] and evidence["recovered"] >= len(evidence["paths"]) // 2
    assert all(b != t for b, t in zip(evidence["before"], evidence["targets"]))  # they were failures
    assert (result.run_dir / "analysis" / "shift_evidence.png").stat().st_size > 0
    assert analysis.files["shift_evidence"] == "shift_evidence.png"


def test_darker_validation_images_are_a_brightness_shift(tmp_path):
    result = trained(tmp_path, lambda a: (a * 0.3).astype(np.uint8))
    analysis = analyze_run(result.run_dir, workers=0, reference_images=60, probes=["brightness", "rotation"],
                           save=False)
    statistics = analysis.shifts["statistics"]["brightness"]
    assert statistics["val_median"] < 0.5 * statistics["train_median"] and statistics["auc"] < 0.1
    named = [c for c in analysis.shifts["candidates"] if c["significant"]]
    assert analysis.summary["train_accuracy"] - analysis.summary["val_accuracy"] > 0.2  # the darkening costs
    assert named and named[0]["factor"] in ("brightness", "contrast"), analysis.shifts["candidates"][:3]
    assert named[0]["share_of_gap"] > 0.75
    first = analysis.recommendations[0]  # brightness alone, reaching beyond the 0.3x measured
    assert first.group == "colour" and first.policy.startswith("brightness:"), first.policy
    assert float(first.policy.split(":")[1].split("@")[0]) >= 1 / 0.3
    assert not any(c["group"] == "orientation" for c in named)


def test_an_unshifted_validation_split_names_no_geometric_shift(tmp_path):
    result = trained(tmp_path, lambda a: a)
    analysis = analyze_run(result.run_dir, workers=0, reference_images=60, probes=["rotation"], save=False)
    assert not any(c["significant"] and c["group"] in ("orientation", "scale")
                   for c in analysis.shifts["candidates"]), analysis.shifts["candidates"][:3]


def test_the_report_shows_the_shift_and_its_evidence(turned, tmp_path):
    from honed.report import build_report

    result, analysis = turned
    html = build_report(result.run_dir, tmp_path / "report.html").read_text()
    assert "Shift between training and validation images" in html
    assert "<b>turned a quarter clockwise</b>" in html  # significant: in bold
    assert 'alt="worst validation images and the same transformed back"' in html


def textured_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A patch of its class on a plain noisy background: a one-pixel checkerboard, one-pixel stripes, or a
    solid colour. Shrunk to half, the fine patterns average out to a solid colour: zooming back in cannot
    bring them back, as it cannot bring back a shrunk photo's detail."""
    image = np.full((SIZE, SIZE, 3), rng.integers(20, 60, 3), dtype=np.float64) + rng.normal(0, 3, (SIZE, SIZE, 3))
    colour = rng.integers(150, 256, 3).astype(np.float64)
    rows, cols = np.mgrid[:10, :10]
    pattern = {"checks": (rows + cols) % 2, "lines": rows % 2, "solid": np.full((10, 10), 0.5)}[kind]
    image[3:13, 3:13] = colour * (0.25 + 1.5 * pattern[..., None]) / 1.75 + 40
    return np.clip(image, 0, 255).astype(np.uint8)


def _half_size(a: np.ndarray) -> np.ndarray:
    from honed.analyze.factors import shrink

    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255
    return (shrink(x, 0.5, torch.Generator())[0].permute(1, 2, 0) * 255).round().byte().numpy()


def _small_objects_run(root, *, stored: int = 1):
    """A run at SIZE px whose validation objects are half the size; the files are ``stored`` times SIZE."""
    for split, n, seed, change in (("train", 40, 0, lambda a: a), ("val", 20, 1, _half_size)):
        rng = np.random.default_rng(seed)
        for kind in ("checks", "lines", "solid"):
            (root / "data" / split / kind).mkdir(parents=True)
            for i in range(n):
                pixels = np.kron(change(textured_image(kind, rng)), np.ones((stored, stored, 1), np.uint8))
                Image.fromarray(pixels).save(root / "data" / split / kind / f"{i}.png")
    config = RunConfig(name="base", workspace=str(root / "ws"), data=DataConfig(source=str(root / "data")),
                       model=ModelConfig(name="test_resnet"), preprocess=PreprocessConfig(image_size=SIZE),
                       train=TrainConfig(epochs=4, batch_size=16, lr=1e-2, workers=0, seed=0))
    return train(config)


def test_smaller_objects_whose_detail_is_lost_are_named_by_simulating_them_on_training_images(tmp_path):
    result = _small_objects_run(tmp_path)
    analysis = analyze_run(result.run_dir, workers=0, reference_images=60, probes=["size", "blur"], save=False)
    assert analysis.summary["train_accuracy"] - analysis.summary["val_accuracy"] > 0.3, analysis.summary
    top = analysis.shifts["candidates"][0]
    assert top["group"] == "scale" and top["significant"], analysis.shifts["candidates"][:3]
    assert top["measured_by"] == "simulated on training images" and top["statistics_explained"] >= 0.5
    assert top["back_failure"] > top["val_failure"] - 0.1  # zooming back in did not restore the detail
    assert analysis.recommendations[0].group == "scale"
    assert "training images made so" in analysis.recommendations[0].reason
    assert "image_size" not in analysis.recommendations[0].training  # the files are no larger than the input


def test_a_fix_for_small_objects_trains_at_a_larger_input_when_the_originals_hold_the_detail(tmp_path):
    """The same run from files stored at 3x the model's input: the scale fix asks for twice the side, which
    gives the half-size validation objects their training size in pixels again, and no more than 2x."""
    result = _small_objects_run(tmp_path, stored=3)
    analysis = analyze_run(result.run_dir, workers=0, reference_images=60, probes=["size", "blur"], save=False)
    first = analysis.recommendations[0]
    assert first.group == "scale" and first.evidence["shift"]["strength"] == 0.5, analysis.shifts["candidates"][:2]
    assert first.training["image_size"] == 2 * SIZE and analysis.training["image_size"] == 2 * SIZE
    assert f"train at {2 * SIZE} px (4.0x the compute)" in first.reason and "median side 48 px" in first.reason


def test_split_statistics_tell_which_change_makes_training_images_look_like_validation_ones():
    from honed.analyze import shift
    from honed.analyze.factors import shrink

    rng = np.random.default_rng(0)
    images = np.stack([textured_image(("checks", "lines", "solid")[i % 3], rng) for i in range(120)])
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    train, val = batch[:60], batch[60:]
    same = shift.split_statistics(train, val)
    assert not shift.splits_differ(same)  # two samples of one distribution: nothing to explain
    smaller = (shrink(val.float() / 255, 0.5, torch.Generator()) * 255).round().to(torch.uint8)
    stats = shift.split_statistics(train, smaller)
    assert shift.splits_differ(stats)
    named = {c.name: shift.statistics_explained(shift._transformed(train, c.forward), stats)
             for c in shift.candidates(stats)}
    assert named["objects 0.5x smaller"] > 0.8, named
    others = max(v for k, v in named.items() if "smaller" not in k)  # darker, flatter, blurred: side effects
    assert others < named["objects 0.5x smaller"] - shift.STAT_MARGIN, named
    assert max(v for k, v in named.items() if "turned" in k or "mirrored" in k) < 0.05, named


def photo_crops(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """``n`` uint8 crops of scikit-learn's two sample photographs (a temple, a flower), at half resolution."""
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(np.array(p)).permute(2, 0, 1)[:, ::2, ::2] for p in load_sample_images().images]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        photo = photos[i % 2]
        top, left = (int(rng.integers(0, photo.shape[k] - size)) for k in (1, 2))
        crops.append(photo[:, top:top + size, left:left + size])
    return torch.stack(crops).contiguous()


@pytest.mark.parametrize("sigma", [1.0, 2.5, 5.0])
def test_the_blur_of_the_validation_images_is_measured_not_guessed(sigma):
    from honed.analyze import shift
    from honed.analyze.factors import blur

    train, val = photo_crops(64, seed=0), photo_crops(64, seed=1)
    blurred = (blur(val.float() / 255, sigma, torch.Generator()) * 255).round().to(torch.uint8)
    stats = shift.split_statistics(train, blurred)
    assert abs(np.log(stats["sharpness"]["matched_sigma"] / sigma)) < np.log(1.4), stats["sharpness"]
    candidate = next(c for c in shift.candidates(stats) if c.factor == "blur")
    assert f"blur:{min(1.25 * stats['sharpness']['matched_sigma'], 8):.3g}@0.5" in candidate.policy
    assert "matched_sigma" not in shift.split_statistics(train, val)["sharpness"]  # as sharp: nothing to match
