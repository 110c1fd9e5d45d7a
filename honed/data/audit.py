"""Audit a dataset before training on it: balance, sizes, bad files, duplicates and leakage across splits.

Backs ``honed data check DATA`` and the quick look training takes first (``cheap=True``). What each file
says of itself (content hash, header, and unless cheap its pixels' statistics and perceptual hash) comes from
``honed.data.file_facts``; this module turns those facts into the dataset's report.

Near duplicates come from ``honed.data.near_duplicates`` (no all-pairs comparison); ``honed.data.audit_tables``
renders a report for the terminal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from honed.data.decode import DEFAULT_MAX_PIXELS, ImageInfo
from honed.data.file_facts import FileFacts, inspect_files
from honed.data.near_duplicates import near_duplicate_pairs
from honed.data.quality import QualityReport, quality_flags, quality_warnings
from honed.data.scan import BadFile
from honed.errors import HonedError

MAX_NEAR_DISTANCE = 16  # bits of 64: beyond this, unrelated images start to count as near duplicates
IMBALANCE_WARN = 5.0  # warn when the largest train class has this many times the images of the smallest
TINY_SIDE = 8  # px: images with a shorter side are flagged
EXTREME_ASPECT = 10.0  # longer side / shorter side: a centre crop keeps under 10% of such images
DARK_MEAN = 20.0  # mean grey level (0..255) under which an image counts as very dark
LOW_ENTROPY_BITS = 2.0  # grey-level entropy (of 8 bits) under which an image carries little information
SPLIT_ORDER = ("train", "val", "test")


@dataclass
class DuplicateGroup:
    """Files with the same content (exact) or a similar look (near)."""

    paths: list[str]
    splits: list[str]  # one per path
    labels: list[str]  # one per path; empty without labels

    @property
    def spanned_splits(self) -> list[str]:
        return ordered_splits(set(self.splits))

    @property
    def conflicting_labels(self) -> bool:
        return len(set(self.labels)) > 1


@dataclass
class AuditReport:
    n_images: int
    split_counts: dict[str, int]  # split -> images
    class_counts: dict[str, dict[str, int]]  # label -> split -> images; empty without labels
    imbalance_ratio: float | None  # largest / smallest class count in train
    sizes: dict[str, dict[str, float]]  # "width"/"height" -> "min"/"median"/"max", upright pixels
    modes: dict[str, int]  # colour mode as stored -> images
    formats: dict[str, int]  # file format -> images
    bad_files: list[BadFile]
    exact_duplicates: list[DuplicateGroup]
    near_duplicates: list[DuplicateGroup]  # excludes pairs that are exact duplicates
    labels_in_one_split: dict[str, str]  # label -> the only split it appears in (when there are several splits)
    labels_missing_from_train: list[str]
    flags: dict[str, list[str]]  # "tiny", ..., "low_information" and the quality flags (honed.data.quality) -> paths
    cheap: bool
    quality: QualityReport = field(default_factory=QualityReport)  # thresholds from the data, shares per split
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-ready data."""
        return asdict(self)


def audit(
    frame: pd.DataFrame,
    *,
    near_duplicate_distance: int = 4,
    cheap: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Audit the images of a manifest frame (columns ``path``, ``split`` and, for classification, ``label``).

    ``cheap`` reads headers and hashes bytes only: no decoding, so no near duplicates, no pixel statistics,
    and only the bad files visible without decoding. ``progress`` gets increments of files done.
    """
    _validate(frame, near_duplicate_distance)
    paths = frame["path"].astype(str).tolist()
    splits = frame["split"].astype(str).tolist()
    labels = frame["label"].astype(str).tolist() if "label" in frame.columns else []
    facts = inspect_files(paths, cheap=cheap, max_pixels=max_pixels, threads=threads, progress=progress)
    class_counts = _class_counts(splits, labels)
    report = AuditReport(
        n_images=len(paths),
        split_counts=dict(Counter(splits)),
        class_counts=class_counts,
        imbalance_ratio=_imbalance_ratio(class_counts),
        sizes=_size_stats([f.info for f in facts if f.info is not None]),
        modes=dict(Counter(f.info.mode for f in facts if f.info is not None).most_common()),
        formats=dict(Counter(f.info.format for f in facts if f.info is not None).most_common()),
        bad_files=[BadFile(p, f.error.reason, f.error.detail) for p, f in zip(paths, facts) if f.error],
        exact_duplicates=_exact_duplicates(paths, splits, labels, facts),
        near_duplicates=[] if cheap else _near_duplicates(paths, splits, labels, facts, near_duplicate_distance),
        labels_in_one_split=_labels_in_one_split(class_counts, set(splits)),
        labels_missing_from_train=_labels_missing_from_train(class_counts, set(splits)),
        flags=_flags(paths, facts),
        cheap=cheap,
        quality=quality_flags(paths, splits, [f.quality for f in facts]),
    )
    report.flags.update(report.quality.flags)
    report.warnings = _warnings(report)
    return report


# --- per file -------------------------------------------------------------------------------------------


# --- aggregation ----------------------------------------------------------------------------------------


def _validate(frame: pd.DataFrame, near_duplicate_distance: int) -> None:
    missing = [c for c in ("path", "split") if c not in frame.columns]
    if missing:
        raise HonedError(f"the data table lacks column(s) {missing}: give a manifest with 'path' and 'split'")
    if not 0 <= near_duplicate_distance <= MAX_NEAR_DISTANCE:
        raise HonedError(
            f"near-duplicate distance {near_duplicate_distance} is out of range: "
            f"use 0..{MAX_NEAR_DISTANCE} bits (4 is a good default)"
        )


def _class_counts(splits: list[str], labels: list[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for split, label in zip(splits, labels):
        per_split = counts.setdefault(label, {})
        per_split[split] = per_split.get(split, 0) + 1
    return {label: counts[label] for label in sorted(counts)}


def _imbalance_ratio(class_counts: dict[str, dict[str, int]]) -> float | None:
    train = [per_split["train"] for per_split in class_counts.values() if per_split.get("train")]
    return float(max(train) / min(train)) if train else None


def _size_stats(infos: list[ImageInfo]) -> dict[str, dict[str, float]]:
    if not infos:
        return {}
    stats = {}
    for name, values in (("width", [i.width for i in infos]), ("height", [i.height for i in infos])):
        array = np.asarray(values)
        stats[name] = {"min": int(array.min()), "median": float(np.median(array)), "max": int(array.max())}
    return stats


def _exact_duplicates(paths, splits, labels, facts: list[FileFacts]) -> list[DuplicateGroup]:
    by_digest: dict[str, list[int]] = {}
    for index, f in enumerate(facts):
        if f.digest:
            by_digest.setdefault(f.digest, []).append(index)
    members = [indices for indices in by_digest.values() if len(indices) > 1]
    return _groups(members, paths, splits, labels)


def _near_duplicates(paths, splits, labels, facts: list[FileFacts], max_distance: int) -> list[DuplicateGroup]:
    hashed = [i for i, f in enumerate(facts) if f.phash is not None]
    hashes = np.array([facts[i].phash for i in hashed], dtype=np.uint64)
    pairs = [
        (hashed[a], hashed[b])
        for a, b in near_duplicate_pairs(hashes, max_distance).tolist()
        if facts[hashed[a]].digest != facts[hashed[b]].digest
    ]
    return _groups(_connected(pairs), paths, splits, labels)


def _connected(pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (size >= 2) of the graph the pairs draw, by union-find."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in pairs:
        parent[root(a)] = root(b)
    components: dict[int, list[int]] = {}
    for node in parent:
        components.setdefault(root(node), []).append(node)
    return [sorted(c) for c in components.values() if len(c) > 1]


def _groups(members: list[list[int]], paths, splits, labels) -> list[DuplicateGroup]:
    groups = [
        DuplicateGroup(
            paths=[paths[i] for i in indices],
            splits=[splits[i] for i in indices],
            labels=[labels[i] for i in indices] if labels else [],
        )
        for indices in members
    ]
    return sorted(groups, key=lambda g: (-len(g.spanned_splits), -len(g.paths), g.paths[0]))


def _labels_in_one_split(class_counts: dict[str, dict[str, int]], splits: set[str]) -> dict[str, str]:
    if len(splits) < 2:
        return {}
    return {label: next(iter(per)) for label, per in class_counts.items() if len(per) == 1}


def _labels_missing_from_train(class_counts: dict[str, dict[str, int]], splits: set[str]) -> list[str]:
    if "train" not in splits:
        return []
    return [label for label, per_split in class_counts.items() if "train" not in per_split]


def _flags(paths: list[str], facts: list[FileFacts]) -> dict[str, list[str]]:
    tests = {
        "tiny": lambda f: f.info is not None and min(f.info.width, f.info.height) < TINY_SIDE,
        "extreme_aspect": lambda f: f.info is not None
        and max(f.info.width, f.info.height) > EXTREME_ASPECT * min(f.info.width, f.info.height),
        "dark": lambda f: f.brightness is not None and f.brightness < DARK_MEAN,
        "low_information": lambda f: f.entropy is not None and f.entropy < LOW_ENTROPY_BITS,
    }
    return {name: [p for p, f in zip(paths, facts) if test(f)] for name, test in tests.items()}


# --- warnings -------------------------------------------------------------------------------------------


def _warnings(report: AuditReport) -> list[str]:
    """Human-readable findings, most serious first."""
    exact_leak = "{count} in both {a} and {b} (leakage)", ("image appears", "images appear")
    near_leak = "{count} {a} and {b} (likely leakage)", ("near-duplicate group spans", "near-duplicate groups span")
    return [
        *_bad_file_warnings(report),
        *_duplicate_warnings(report.exact_duplicates, exact_leak, "identical"),
        *_duplicate_warnings(report.near_duplicates, near_leak, "similar"),
        *_class_warnings(report),
        *_flag_warnings(report),
        *quality_warnings(report.quality),
    ]


def _bad_file_warnings(report: AuditReport) -> list[str]:
    if not report.bad_files:
        return []
    reasons = Counter(b.reason for b in report.bad_files).most_common()
    summary = ", ".join(f"{count} {reason}" for reason, count in reasons)
    files = plural(len(report.bad_files), "file", "files")
    return [f"{files} cannot be decoded and will be skipped in training: {summary}"]


def _duplicate_warnings(groups: list[DuplicateGroup], leak: tuple[str, tuple[str, str]], alike: str) -> list[str]:
    template, nouns = leak
    found = []
    for a, b in combinations(SPLIT_ORDER, 2):
        count = sum(1 for g in groups if a in g.splits and b in g.splits)
        if count:
            found.append(template.format(count=plural(count, *nouns), a=a, b=b))
    conflicts = sum(1 for g in groups if g.conflicting_labels)
    if conflicts:
        found.append(f"{plural(conflicts, 'group', 'groups')} of {alike} images with different labels")
    for split in SPLIT_ORDER:
        within = [g for g in groups if g.splits.count(split) > 1]
        if within:
            files = sum(g.splits.count(split) for g in within)
            found.append(f"{split}: {files} files in {plural(len(within), 'group', 'groups')} of {alike} images")
    return found


def _class_warnings(report: AuditReport) -> list[str]:
    found = []
    train = {label: per["train"] for label, per in report.class_counts.items() if per.get("train")}
    if report.imbalance_ratio is not None and report.imbalance_ratio >= IMBALANCE_WARN:
        rare, common = min(train, key=train.get), max(train, key=train.get)
        found.append(
            f"class {rare!r} has {ratio_text(report.imbalance_ratio)} fewer images than {common!r} in train"
        )
    for label in report.labels_missing_from_train:
        elsewhere = " and ".join(ordered_splits(set(report.class_counts[label])))
        found.append(f"class {label!r} appears in {elsewhere} but not in train: the model cannot learn it")
    for label, split in report.labels_in_one_split.items():
        if split == "train":
            found.append(f"class {label!r} appears only in train: it is never evaluated")
    return found


def _flag_warnings(report: AuditReport) -> list[str]:
    texts = {
        "tiny": f"smaller than {TINY_SIDE} px on a side",
        "extreme_aspect": f"over {EXTREME_ASPECT:.0f}x longer than wide (a centre crop keeps little)",
        "dark": f"very dark (mean grey level under {DARK_MEAN:.0f} of 255)",
        "low_information": f"of little information (grey-level entropy under {LOW_ENTROPY_BITS} bits)",
    }
    return [
        f"{plural(len(report.flags[name]), 'image is', 'images are')} {text}"
        for name, text in texts.items()
        if report.flags.get(name)
    ]


# --- words, shared with honed.data.audit_tables -------------------------------------------------------


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def ratio_text(ratio: float) -> str:
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def ordered_splits(splits: set[str]) -> list[str]:
    return sorted(splits, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
