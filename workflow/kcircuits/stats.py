"""Statistics every summary shares: one seeded generator per stage, the stratified bootstrap of means
(rows resampled within each training seed), pooled rows, and JSON numbers.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

ALL = "all"  # the pooled level of a grouping column (with_all)


def stage_rng(seed: int, stage: str) -> np.random.Generator:
    """An independent, reproducible random stream per stage (changing one stage leaves the others)."""
    return np.random.default_rng([seed, zlib.crc32(stage.encode())])


def stratified_means(columns: np.ndarray, strata: np.ndarray, n_bootstrap: int,
                     rng: np.random.Generator) -> np.ndarray:
    """[n_bootstrap, k] resampled means of `columns` [n, k]: rows resampled with replacement within
    each stratum (e.g. training seed; strata in sorted order), pooled into one mean. The columns of a
    row are drawn together (paired)."""
    total = np.zeros((n_bootstrap, columns.shape[1]))
    for stratum in np.unique(strata):
        values = columns[strata == stratum]  # [n_s, k]
        draws = rng.integers(0, len(values), size=(n_bootstrap, len(values)))  # [B, n_s]
        for j in range(columns.shape[1]):
            total[:, j] += values[draws, j].sum(axis=1)
    return total / len(columns)


def with_all(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`frame` plus copies with each subset of `columns` set to ALL (pooled rows)."""
    out = [frame]
    for column in columns:
        out = out + [part.assign(**{column: ALL}) for part in out]
    return pd.concat(out, ignore_index=True)


def json_number(x, digits: int = 4):
    """A JSON number rounded to `digits` (None for NaN / missing)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)
