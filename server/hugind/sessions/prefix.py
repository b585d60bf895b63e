"""Longest common token prefix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SMALL = 64


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    if n <= _SMALL:
        i = 0
        while i < n and a[i] == b[i]:
            i += 1
        return i
    # Long histories: compare in numpy rather than a Python loop over thousands of tokens.
    diff = np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64)
    first = int(np.argmax(diff))
    return first if diff[first] else n
