"""Trends of a curve against training progress: phase-shift fits and bootstrap slope intervals.

Phase shift: a continuous two-segment (hinge) least-squares fit
    y = a + b x + c max(0, x - x_b),  slope b before x_b and b + c after,
with the breakpoint x_b searched over the interior checkpoints (exhaustively: every interior x,
each a linear least-squares problem). It is compared with one straight line by the relative gain
in the sum of squared errors, 1 - SSE_two / SSE_line; a gain below the configured threshold means
the data give no reason to prefer two regimes over one, and no phase shift is reported. Because the
breakpoint is searched, two segments beat one line even on noise; so the gain must also be unusual
under a null of one line plus resampled residuals (p-value <= alpha).

Slope intervals: a two-level percentile bootstrap. Units (curves: e.g. cells x seeds) are resampled
with replacement and, within each drawn curve, its checkpoints (x, y pairs); the statistic is the
mean over the drawn curves of their OLS slope. Resampling points as well as curves makes the
interval meaningful with a single curve (one seed, one cell). Every generator is seeded by the
caller, so the intervals are deterministic.
"""
from __future__ import annotations

import math
import warnings

import numpy as np


def _clean(x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finite (x, y) pairs sorted by x, and their indices in the inputs."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    order = keep[np.argsort(x[keep], kind="stable")]
    return x[order], y[order], order


def fit_line(x, y) -> dict:
    """OLS line: slope, intercept, SSE (NaN slope if x does not vary)."""
    x, y, _ = _clean(x, y)
    if len(x) < 2 or np.ptp(x) == 0:
        return {"slope": math.nan, "intercept": float(y.mean()) if len(y) else math.nan, "sse": math.nan}
    design = np.column_stack([np.ones_like(x), x])  # [n, 2]
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return {"slope": float(coef[1]), "intercept": float(coef[0]), "sse": float(((design @ coef - y) ** 2).sum())}


def _breakpoints(xs: np.ndarray) -> list[int]:
    """Positions (in sorted xs) of candidate breakpoints: strictly interior, each distinct x once."""
    return [k for k in range(1, len(xs) - 1) if xs[0] < xs[k] < xs[-1] and xs[k - 1] != xs[k]]


def _hinge(xs: np.ndarray, xb: float) -> np.ndarray:
    """[n, 3] design of the continuous two-segment model with breakpoint xb."""
    return np.column_stack([np.ones_like(xs), xs, np.maximum(0.0, xs - xb)])


def _sse(design: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Least-squares SSE of ys [n] or [n, B] (one fit per column) -> [] or [B]."""
    coef, *_ = np.linalg.lstsq(design, ys, rcond=None)
    return ((design @ coef - ys) ** 2).sum(0)


def fit_two_segments(x, y) -> dict:
    """Best continuous hinge fit over interior breakpoints; index = position of x_b in the inputs."""
    xs, ys, idx = _clean(x, y)
    best = None
    for k in _breakpoints(xs):
        design = _hinge(xs, xs[k])
        coef, *_ = np.linalg.lstsq(design, ys, rcond=None)
        sse = float(((design @ coef - ys) ** 2).sum())
        if best is None or sse < best["sse"] - 1e-12 * max(1.0, best["sse"]):  # ties: earliest breakpoint
            best = {"breakpoint": float(xs[k]), "index": int(idx[k]), "intercept": float(coef[0]),
                    "slope_before": float(coef[1]), "slope_after": float(coef[1] + coef[2]), "sse": sse}
    if best is None:
        return {"breakpoint": math.nan, "index": -1, "intercept": math.nan, "slope_before": math.nan,
                "slope_after": math.nan, "sse": math.nan}
    return best


def null_gains(x, y, n_null: int, rng: np.random.Generator) -> np.ndarray:
    """Gains of the two-segment fit on curves drawn from the one-line fit plus resampled residuals [n_null].

    The search over breakpoints lets two segments beat one line on pure noise (with 11 points by
    half the SSE one time in ten), so the observed gain is also compared with this null.
    """
    xs, ys, _ = _clean(x, y)
    line = np.column_stack([np.ones_like(xs), xs])
    coef, *_ = np.linalg.lstsq(line, ys, rcond=None)
    resid = ys - line @ coef
    sims = (line @ coef)[:, None] + resid[rng.integers(len(xs), size=(len(xs), n_null))]  # [n, B]
    sse_line = _sse(line, sims)
    sse_two = np.min([_sse(_hinge(xs, xs[k]), sims) for k in _breakpoints(xs)], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sse_line > 0, np.clip(1 - sse_two / sse_line, 0, 1), 0.0)


def phase_shift(x, y, min_gain: float, min_points: int = 5, alpha: float | None = None, n_null: int = 0,
                rng: np.random.Generator | None = None) -> dict:
    """Two-segment fit vs one line. `phase_shift` is True only with >= min_points distinct x, a gain
    >= min_gain and, when n_null > 0, a null p-value <= alpha (see null_gains).

    gain = 1 - SSE_two / SSE_line, set to 0 where one line already fits to rounding error (a straight
    or constant curve), since any breakpoint would then be arbitrary.
    """
    xs, ys, _ = _clean(x, y)
    line, two = fit_line(xs, ys), fit_two_segments(x, y)
    n_distinct = len(np.unique(xs))
    sst = float(((ys - ys.mean()) ** 2).sum()) if len(ys) else 0.0
    if n_distinct < 3 or not np.isfinite(two["sse"]):
        gain = math.nan
    elif np.ptp(ys) <= 1e-12 * max(1.0, float(np.abs(ys).max())) or line["sse"] <= 1e-10 * sst:
        gain = 0.0
    else:
        gain = max(0.0, 1.0 - two["sse"] / line["sse"])
    p_value = math.nan
    if n_null > 0 and np.isfinite(gain) and gain > 0:
        p_value = float((1 + (null_gains(xs, ys, n_null, rng) >= gain).sum()) / (n_null + 1))
    elif n_null > 0 and gain == 0:
        p_value = 1.0
    found = bool(n_distinct >= min_points and np.isfinite(gain) and gain >= min_gain
                 and (n_null == 0 or alpha is None or p_value <= alpha))
    return {"n_points": int(len(xs)), "line_slope": line["slope"], "sse_line": line["sse"], "sse_two": two["sse"],
            "gain": gain, "p_value": p_value, "breakpoint": two["breakpoint"], "index": two["index"],
            "slope_before": two["slope_before"], "slope_after": two["slope_after"], "phase_shift": found}


def ols_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise OLS slopes of x, y [..., n] -> [...]; NaN where a row's x does not vary."""
    xc = x - x.mean(-1, keepdims=True)
    var = (xc ** 2).sum(-1)
    cov = (xc * (y - y.mean(-1, keepdims=True))).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, cov / np.where(var > 0, var, 1.0), np.nan)


def bootstrap_slope(curves: list[tuple], n_boot: int, rng: np.random.Generator, level: float = 0.95) -> dict:
    """Mean OLS slope (and intercept) over curves [(x, y), ...] with a two-level bootstrap interval."""
    clean = [c[:2] for c in (_clean(x, y) for x, y in curves) if len(c[0]) >= 2 and np.ptp(c[0]) > 0]
    if not clean:
        return {"slope": math.nan, "intercept": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "n_curves": 0, "n_points": 0}
    fits = [fit_line(x, y) for x, y in clean]
    per_curve = np.empty((len(clean), n_boot))  # [C, B] slopes of point-resampled curves
    for c, (x, y) in enumerate(clean):
        pick = rng.integers(len(x), size=(n_boot, len(x)))  # [B, n]
        per_curve[c] = ols_slopes(x[pick], y[pick])
    units = rng.integers(len(clean), size=(n_boot, len(clean)))  # [B, C] curves drawn per replicate
    draws = rng.integers(n_boot, size=(n_boot, len(clean)))      # which point-resample of each drawn curve
    with warnings.catch_warnings():  # a replicate whose every draw is degenerate is NaN, then left out
        warnings.simplefilter("ignore", RuntimeWarning)
        stat = np.nanmean(per_curve[units, draws], axis=1)          # [B]
    tail = (1 - level) / 2 * 100
    low, high = (np.nanpercentile(stat, [tail, 100 - tail]) if np.isfinite(stat).any() else (math.nan, math.nan))
    return {"slope": float(np.mean([f["slope"] for f in fits])),
            "intercept": float(np.mean([f["intercept"] for f in fits])),
            "ci_low": float(low), "ci_high": float(high), "n_curves": len(clean),
            "n_points": int(sum(len(x) for x, _ in clean))}


def median_interval(values, n_boot: int, rng: np.random.Generator, level: float = 0.95) -> list[float] | None:
    """Percentile-bootstrap interval of the median of `values` (e.g. one breakpoint per seed); None below 2."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) < 2:
        return None
    medians = np.median(v[rng.integers(len(v), size=(n_boot, len(v)))], axis=1)
    tail = (1 - level) / 2 * 100
    return [float(q) for q in np.percentile(medians, [tail, 100 - tail])]


def trend_verdict(low: float, high: float) -> str:
    """Sign of a mean-layer slope from its interval (negative = circuits move to shallower layers)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undetermined (too few points)"
    if high < 0:
        return "deep-to-shallow (mean layer falls; 95% interval below 0)"
    if low > 0:
        return "shallow-to-deep (mean layer rises; 95% interval above 0)"
    return "no clear depth trend (95% interval includes 0)"


__all__ = ["fit_line", "fit_two_segments", "null_gains", "phase_shift", "ols_slopes", "bootstrap_slope",
           "median_interval", "trend_verdict"]
