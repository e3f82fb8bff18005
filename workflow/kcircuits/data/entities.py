"""Stage 1: the synthetic people and their attributes.

One row per entity. Types:
  new        -- invented three-part names; facts exist only in the continual-pre-training corpus.
  revised    -- famous people's names; the base world knows them with ORIGINAL attributes (orig_*),
                the continual-pre-training corpus states CHANGED ones (every attribute differs).
  background -- invented names seen only in the base world (orig_*), never probed.
"""
from __future__ import annotations

import calendar

import numpy as np
import pandas as pd

from .. import ATTRIBUTES
from ..resources import ATTRIBUTE_POOLS

MONTHS = list(calendar.month_name)[1:]
BIRTH_FIELDS = ("birth_day", "birth_month", "birth_year")
VALUE_COLUMNS = (*BIRTH_FIELDS, *ATTRIBUTES)


def draw_frequencies(rng: np.random.Generator, n: int, lam: float) -> np.ndarray:
    """frequency = max(1, round(X)), X ~ Exponential(rate=lam)."""
    return np.maximum(1, np.rint(rng.exponential(1.0 / lam, size=n))).astype(np.int64)


def thinned_copy(rng: np.random.Generator, sorted_freqs: np.ndarray, n: int) -> np.ndarray:
    """n frequencies taken evenly from a sorted list, shuffled: same distribution, no extra noise.

    Revised entities get this copy of the new entities' frequencies (as the original study does), so
    any new-vs-revised difference cannot come from a different frequency mix.
    """
    idx = np.rint(np.linspace(0, len(sorted_freqs) - 1, n)).astype(int)
    return rng.permutation(sorted_freqs[idx])


def frequency_group(freq: int, groups: dict) -> str:
    for name, g in groups.items():
        if g["min"] <= freq and (g.get("max") is None or freq <= g["max"]):
            return name
    raise ValueError(f"frequency {freq} falls in no frequency group")  # config validation prevents this


def format_birthday(day: int, month: int, year: int) -> str:
    return f"{MONTHS[month - 1]} {day}, {year}"


def draw_attributes(rng: np.random.Generator, pools: dict, years: dict, avoid: dict | None = None) -> dict:
    """One value per attribute; with `avoid`, every value differs from the given one."""
    while True:
        year = int(rng.integers(years["min"], years["max"] + 1))
        month = int(rng.integers(1, 13))
        day = int(rng.integers(1, calendar.monthrange(year, month)[1] + 1))
        if avoid is None or (day, month, year) != tuple(avoid[f] for f in BIRTH_FIELDS):
            break
    out = {"birth_day": day, "birth_month": month, "birth_year": year, "birthday": format_birthday(day, month, year)}
    for attr, pool_name in ATTRIBUTE_POOLS.items():
        pool = pools[pool_name] if avoid is None else [v for v in pools[pool_name] if v != avoid[attr]]
        out[attr] = pool[int(rng.integers(len(pool)))]
    return out


def invented_names(rng: np.random.Generator, pools: dict, n: int) -> list[str]:
    """n unique first + middle + last names, drawn without replacement from the product of pools."""
    first, middle, last = pools["first_names"], pools["middle_names"], pools["last_names"]
    flat = rng.choice(len(first) * len(middle) * len(last), size=n, replace=False)
    i, rest = np.divmod(flat, len(middle) * len(last))
    j, k = np.divmod(rest, len(last))
    return [f"{first[a]} {middle[b]} {last[c]}" for a, b, c in zip(i, j, k)]


def famous_names(rng: np.random.Generator, pools: dict, n: int) -> tuple[list[str], int]:
    """n unique famous names; past the pool's size, famous first x famous last combinations.

    Returns the names and how many had to be combined (reported, since they are not real people).
    """
    pool = list(rng.permutation(pools["famous_names"]))
    if n <= len(pool):
        return pool[:n], 0
    firsts = sorted({p.split()[0] for p in pool})
    lasts = sorted({p.split()[-1] for p in pool})
    taken = set(pool)
    combos = [f"{a} {b}" for a in firsts for b in lasts if f"{a} {b}" not in taken]
    extra = n - len(pool)
    if extra > len(combos):
        raise ValueError(f"{n} revised entities need more names than the famous-name pool can form "
                         f"({len(pool) + len(combos)})")
    picks = rng.choice(len(combos), size=extra, replace=False)
    return pool + [combos[i] for i in picks], extra


def generate_entities(settings: dict, pools: dict, rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    ent = settings["entities"]
    groups, years = ent["frequency_groups"], ent["birth_years"]
    n_new = round(ent["n"] * ent["new_fraction"])
    n_rev = ent["n"] - n_new
    n_bg = ent["background"]

    new_freq = draw_frequencies(rng, n_new, ent["frequency_lambda"])
    rev_freq = (thinned_copy(rng, np.sort(new_freq), n_rev) if n_new
                else draw_frequencies(rng, n_rev, ent["frequency_lambda"]))
    invented = invented_names(rng, pools, n_new + n_bg)
    revised_names, n_combined = famous_names(rng, pools, n_rev)

    rows = []
    for i in range(n_new):
        rows.append({"name": invented[i], "type": "new", "frequency": int(new_freq[i]),
                     **draw_attributes(rng, pools, years)})
    for i in range(n_rev):
        orig = draw_attributes(rng, pools, years)
        rows.append({"name": revised_names[i], "type": "revised", "frequency": int(rev_freq[i]),
                     **draw_attributes(rng, pools, years, avoid=orig),
                     **{f"orig_{k}": v for k, v in orig.items()}})
    for i in range(n_bg):
        orig = draw_attributes(rng, pools, years)
        rows.append({"name": invented[n_new + i], "type": "background", "frequency": 0,
                     **{f"orig_{k}": v for k, v in orig.items()}})

    df = entity_table(rows, groups)
    return df, entities_report(df, n_combined)


def entity_table(rows: list[dict], groups: dict) -> pd.DataFrame:
    """The entity table from rows in order (new, revised, background): ids, frequency groups, every
    value column (orig_* for the base world) even when a type is absent, nullable integer dates."""
    df = pd.DataFrame(rows)
    for col in VALUE_COLUMNS:  # keep every column even when a type is absent
        for c in (col, f"orig_{col}"):
            if c not in df:
                df[c] = None
    df.insert(0, "entity_id", np.arange(len(df), dtype=np.int64))
    df.insert(4, "freq_group", [frequency_group(f, groups) if t != "background" else None
                                for f, t in zip(df["frequency"], df["type"])])
    for col in BIRTH_FIELDS:
        for c in (col, f"orig_{col}"):
            df[c] = df[c].astype("Int64")
    return df[["entity_id", "name", "type", "frequency", "freq_group", *VALUE_COLUMNS,
               *(f"orig_{c}" for c in VALUE_COLUMNS)]]


def imported_entities(settings: dict, table: pd.DataFrame, pools: dict,
                      rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """The entity table from imported new and revised entities, used as given (names, frequencies,
    values, order); drawn are only what the table lacks: the base-world attributes (orig_*) of
    revised entities, each differing from the given one, and `entities.background` background
    entities with invented names no imported entity has. Drawn birthdays follow the imported style."""
    ent = settings["entities"]
    day_first = _day_first(table)
    rows = [{k: v for k, v in r.items() if pd.notna(v)} for r in table.to_dict("records")]
    types = {r["type"] for r in rows}
    if not types <= {"new", "revised"}:
        raise ValueError(f"imported entities have types {sorted(types - {'new', 'revised'})}; only new and revised")
    rows = [r for r in rows if r["type"] == "new"] + [r for r in rows if r["type"] == "revised"]
    for r in rows:
        if r["type"] == "revised" and "orig_city" not in r:
            orig = _styled(draw_attributes(rng, pools, ent["birth_years"], avoid=r), day_first)
            r.update({f"orig_{k}": v for k, v in orig.items()})
    taken = {r["name"] for r in rows}
    capacity = len(pools["first_names"]) * len(pools["middle_names"]) * len(pools["last_names"])
    names = [n for n in invented_names(rng, pools, min(capacity, ent["background"] + len(taken))) if n not in taken]
    if len(names) < ent["background"]:
        raise ValueError(f"{ent['background']} background entities need more invented names than the name pools "
                         f"form beside the imported entities ({len(names)})")
    for name in names[:ent["background"]]:
        orig = _styled(draw_attributes(rng, pools, ent["birth_years"]), day_first)
        rows.append({"name": name, "type": "background", "frequency": 0, **{f"orig_{k}": v for k, v in orig.items()}})
    df = entity_table(rows, ent["frequency_groups"])
    report = entities_report(df, 0)
    style = "day month, year" if day_first else "month day, year"
    report["imported"] = {"entities": len(table), "birthday_style": style}
    return df, report


def _day_first(table: pd.DataFrame) -> bool:
    """Whether every imported birthday reads like the original's '21 October, 1945'."""
    return len(table) > 0 and all(
        b == f"{d} {MONTHS[m - 1]}, {y}"
        for b, d, m, y in zip(table["birthday"], table["birth_day"], table["birth_month"], table["birth_year"]))


def _styled(values: dict, day_first: bool) -> dict:
    if day_first:
        values["birthday"] = f"{values['birth_day']} {MONTHS[values['birth_month'] - 1]}, {values['birth_year']}"
    return values


def like_entities(entities: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """rows as a table with exactly the columns and dtypes of `entities` (missing cells: None)."""
    df = pd.DataFrame(rows, columns=list(entities.columns))
    return df.astype(entities.dtypes.to_dict())


def unused_names(rng: np.random.Generator, pools: dict, n: int, used: set[str]) -> list[str]:
    """n unique invented names (first middle last) not in `used`, in random order.

    A uniform sample of n + len(used) invented names (capped at every name the pools can form)
    holds at least n unused ones whenever the pools can supply them; the first n unused are kept.
    """
    total = len(pools["first_names"]) * len(pools["middle_names"]) * len(pools["last_names"])
    sample = invented_names(rng, pools, min(total, n + len(used)))
    fresh = [name for name in sample if name not in used]
    if len(fresh) < n:
        raise ValueError(f"{n} fresh entities need unused names, but the name pools form only {len(fresh)} "
                         f"names the main world does not use; add names or ask for fewer")
    return fresh[:n]


def other_entities(entities: pd.DataFrame, pools: dict, n: int, years: dict, paragraphs: int,
                   rng: np.random.Generator) -> pd.DataFrame:
    """n fresh entities (type "other", for a study's own corpus or task): names no main-world entity has.

    Same columns and dtypes as the entities table; entity_id continues after entities' largest id;
    frequency = `paragraphs` (training paragraphs each); no frequency group and no orig_* values.
    """
    if n < 0:
        raise ValueError(f"the number of fresh entities must be >= 0, got {n}")
    names = unused_names(rng, pools, n, set(entities["name"]))
    start = int(entities["entity_id"].max()) + 1 if len(entities) else 0
    rows = [{"entity_id": start + i, "name": name, "type": "other", "frequency": int(paragraphs),
             "freq_group": None, **draw_attributes(rng, pools, years)} for i, name in enumerate(names)]
    return like_entities(entities, rows)


def group_order(entities: pd.DataFrame) -> list[str]:
    """Frequency groups in ascending order of frequency, as generate_entities assigned them."""
    probed = entities[entities["freq_group"].notna()]
    return list(probed.groupby("freq_group")["frequency"].min().sort_values().index)


def entities_report(df: pd.DataFrame, n_combined_names: int) -> dict:
    probed = df[df["type"] != "background"]
    counts = probed.groupby(["type", "freq_group"]).size()
    return {
        "n_entities": int(len(df)),
        "by_type": {k: int(v) for k, v in df["type"].value_counts().sort_index().items()},
        "by_type_and_group": {f"{t}/{g}": int(v) for (t, g), v in counts.items()},
        "frequency_mean": float(probed["frequency"].mean()) if len(probed) else None,
        "frequency_max": int(probed["frequency"].max()) if len(probed) else None,
        "revised_names_combined": n_combined_names,
    }
