import pandas as pd

from honed.data.manifest import Manifest
from honed.data.splits import with_validation


def _manifest(n_per_class=50, split="train"):
    labels = ["a"] * n_per_class + ["b"] * n_per_class * 3
    frame = pd.DataFrame({"path": [f"/x/{i}.png" for i in range(len(labels))], "label": labels, "split": split})
    return Manifest(frame=frame, classes=["a", "b"])


def test_holdout_is_stratified_and_seeded():
    m = with_validation(_manifest(), val_fraction=0.2, seed=3)
    val = m.split("val")
    assert len(val) == 40
    assert (val["label"] == "a").sum() == 10  # same class balance as the whole
    again = with_validation(_manifest(), val_fraction=0.2, seed=3)
    assert list(again.split("val")["path"]) == list(val["path"])
    other = with_validation(_manifest(), val_fraction=0.2, seed=4)
    assert list(other.split("val")["path"]) != list(val["path"])


def test_explicit_validation_is_kept():
    m = _manifest()
    m.frame.loc[:9, "split"] = "val"
    out = with_validation(m, val_fraction=0.5)
    assert list(out.frame["split"]) == list(m.frame["split"])


def test_kfold_partitions_the_pool():
    seen = []
    for fold in range(4):
        m = with_validation(_manifest(), folds=4, fold=fold, seed=0)
        seen.append(set(m.split("val")["path"]))
    assert sum(len(s) for s in seen) == 200
    assert set.union(*seen) == set(_manifest().frame["path"])
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])
