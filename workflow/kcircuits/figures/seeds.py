"""Training replicates in figures: read every seed's table, summarise curves over seeds.

Curves show the mean over seeds and a 95% bootstrap confidence interval of that mean: the percentile
interval of 1000 resampled means, as seaborn's `errorbar=("ci", 95)`, but with a fixed generator per
curve point, so the same tables always give the same interval (and the same figure bytes). With two
or three seeds the bootstrap interval is about the range of the seeds; with one seed there is none.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import TableError, read_table

N_BOOT = 1000
LEVEL = 95
SEED_IN_PATH = re.compile(r"seed-(\d+)")


def path_seed(path: str | Path, position: int) -> int:
    """The replicate a table without a `seed` column belongs to: `seed-N` in its path, else its
    position among the inputs (0 for a single table, as before the seed layout)."""
    found = SEED_IN_PATH.findall(str(path))
    return int(found[-1]) if found else position


def read_seed_tables(paths: list[str | Path] | str | Path, columns=(), label: str = "table",
                     empty_ok: bool = True) -> pd.DataFrame:
    """Every seed's table in one, with an int `seed` column (kept where a table already has one); each
    read by kcircuits.io.read_table (checked for `columns` and rows where asked)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise TableError(f"{label}: no tables given")
    frames = []
    for i, path in enumerate(paths):
        table = read_table(path, columns, label, empty_ok)
        if "seed" not in table.columns:
            table.insert(0, "seed", path_seed(path, i))
        frames.append(table)
    out = pd.concat(frames, ignore_index=True)
    out["seed"] = out["seed"].astype(int)
    return out


def bootstrap_interval(values: np.ndarray, n_boot: int = N_BOOT, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` [n]; (v, v) for a single value."""
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(0)  # per call: the interval does not depend on which curves came before
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)  # [n_boot]
    lo, hi = np.percentile(means, [(100 - level) / 2, 100 - (100 - level) / 2])
    return float(lo), float(hi)


def seed_summary(frame: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    """One row per `by` group: mean over seeds, interval (lo, hi) and n_seeds.

    `frame` must hold at most one row per seed and group (average within a seed first, e.g. over
    tasks); NaN values (a cell a seed lacks) are left out of that group.
    """
    dup = frame.duplicated([*by, "seed"])
    if dup.any():
        raise ValueError(f"several rows per seed and {by}: average within each seed first")
    rows = []
    for key, part in frame.dropna(subset=[value]).groupby(by, sort=False, dropna=False):
        values = part[value].to_numpy(dtype=float)
        lo, hi = bootstrap_interval(values)
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "mean": float(values.mean()),
                     "lo": lo, "hi": hi, "n_seeds": len(values)})
    return pd.DataFrame(rows, columns=[*by, "mean", "lo", "hi", "n_seeds"])


def draw_curve(ax, curve: pd.DataFrame, x: str, color, label: str | None = None, **line) -> None:
    """Mean line of one seed_summary curve and, with several seeds, its interval as a band."""
    curve = curve.sort_values(x)
    ax.plot(curve[x], curve["mean"], color=color, label=label, **line)
    if (curve["n_seeds"] > 1).any():
        ax.fill_between(curve[x], curve["lo"], curve["hi"], color=color, alpha=0.2, linewidth=0)


__all__ = ["read_seed_tables", "bootstrap_interval", "seed_summary", "draw_curve", "path_seed"]
