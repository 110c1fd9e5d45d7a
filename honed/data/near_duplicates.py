"""Pairs of 64-bit perceptual hashes within a few bits of each other, without comparing all pairs.

Two hashes within ``d`` bits of each other agree exactly on at least one of ``d + 1`` bit bands
(pigeonhole), so only hashes sharing a band value are compared, with vectorised XOR and popcount.
"""

from __future__ import annotations

import numpy as np


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Index pairs ``[k, 2]`` (i < j, sorted) of 64-bit hashes that differ in at most ``max_distance`` bits."""
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be in 0..63, got {max_distance}")
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    codes = [np.empty(0, dtype=np.int64)]
    for shift, width in _bands(max_distance + 1):
        keys = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable")
        codes.append(_close_pairs_sharing_key(keys[order], order, hashes, max_distance))
    unique = np.unique(np.concatenate(codes))
    return np.stack([unique // max(n, 1), unique % max(n, 1)], axis=1)


# --- hashing --------------------------------------------------------------------------------------------


def _bands(count: int) -> list[tuple[int, int]]:
    """(shift, width) of ``count`` contiguous bit bands covering 64 bits, widths differing by at most one."""
    widths = [64 // count + (1 if i < 64 % count else 0) for i in range(count)]
    shifts = np.concatenate([[0], np.cumsum(widths)[:-1]]).tolist()
    return list(zip(shifts, widths))


def _close_pairs_sharing_key(
    sorted_keys: np.ndarray, order: np.ndarray, hashes: np.ndarray, max_distance: int
) -> np.ndarray:
    """Pair codes ``i * n + j`` (i < j) of hashes with equal band key and distance <= max_distance.

    Equal keys sit next to each other once sorted, so comparing each position with the one ``offset`` later,
    for offset 1, 2, ... while any run of equal keys is longer than offset, visits every same-key pair once.
    """
    n = len(sorted_keys)
    if n < 2:
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    run_end = np.repeat(np.r_[starts[1:], n], np.diff(np.r_[starts, n]))  # end of each position's run
    active = np.arange(n)
    found = []
    offset = 1
    while True:
        active = active[run_end[active] - active > offset]
        if active.size == 0:
            break
        a, b = order[active], order[active + offset]
        close = _popcount(hashes[a] ^ hashes[b]) <= max_distance
        low, high = np.minimum(a[close], b[close]), np.maximum(a[close], b[close])
        found.append(low.astype(np.int64) * n + high)
        offset += 1
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _popcount(values: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (numpy >= 2 has it built in; the fallback is the classic SWAR count)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    x = values - ((values >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)
