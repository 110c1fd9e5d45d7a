"""Train / val / test folders of symlinks for the calibration and backbone benchmarks (issue 19).

A temperature is fitted on the validation split and judged on images it never saw, so every set here has
all three: ``train`` and ``val`` drawn (seeded, disjoint) from the source's training photos, ``test`` from its
own held-out folder (hymenoptera's and flowers' ``val/``, CIFAR-10's ``test/``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# name -> (source folder, its test folder name, train per class, val per class, test per class); None: all
SETS = {
    "hymenoptera": ("/work/data/hymenoptera", "val", None, 30, None),  # ~90 train, 30 val per class, 153 test
    "flowers": ("/work/data/flowers", "val", 60, 30, 40),
    "cifar10": ("/tmp/i19b/cifar10", "test", 50, 30, 50),
}


def build(name: str, root: Path, seed: int = 0) -> Path:
    """The folders of ``name`` under ``root`` (made once; ``done`` marks a finished set)."""
    source, test_name, train_n, val_n, test_n = SETS[name]
    source, dest = Path(source), root / name
    if (dest / "done").exists():
        return dest
    rng = np.random.default_rng(seed)
    for cls in sorted(p.name for p in (source / "train").iterdir() if p.is_dir()):
        pool = sorted(p.name for p in (source / "train" / cls).iterdir())
        order = [pool[i] for i in rng.permutation(len(pool))]
        val, train = order[:val_n], order[val_n:]
        train = train if train_n is None else train[:train_n]
        tests = sorted(p.name for p in (source / test_name / cls).iterdir())
        tests = tests if test_n is None else [tests[i] for i in sorted(rng.permutation(len(tests))[:test_n])]
        for split, names, folder in (("train", train, "train"), ("val", val, "train"), ("test", tests, test_name)):
            (dest / split / cls).mkdir(parents=True, exist_ok=True)
            for file in names:
                link = dest / split / cls / file
                if not link.exists():
                    link.symlink_to(source / folder / cls / file)
    (dest / "done").write_text("")
    return dest
