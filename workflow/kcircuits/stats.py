"""Statistics every summary shares: one seeded generator per stage, the stratified bootstrap of means
with one interval format, pooled rows, and JSON numbers.
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


def with_all(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`frame` plus copies with each subset of `columns` set to ALL (pooled rows)."""
    out = [frame]
    for column in columns:
        out = out + [part.assign(**{column: ALL}) for part in out]
    return pd.concat(out, ignore_index=True)


def json_number(x, digits: int = 4):
    """A JSON number rounded to `digits` (None for NaN / missing)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)
