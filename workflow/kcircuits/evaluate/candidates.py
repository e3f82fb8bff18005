"""The candidate values a full-value rank is taken among, and the prefix trie they are scored through.

Candidates of an attribute are the values it has in the world: every entity's current and original
value in entities.parquet (the data stage's output, so a candidate set is what the corpora can have
shown the model; the pool files are only the entities stage's input, and a pool value no entity has
appears in no text). Birthdays are dates, too many to score whole (about 1,650 in the default world,
24,000 in its year range), and a random other date is wrong in every field at once. A birthday is
ranked among its own date(s) (current, and original for revised entities) and, around each in turn,
dates one field away: another month that has its day, another day of its month, another year of the
world's range, taken month, day, year, month, ... from seeded shuffles (a stream per entity from the
seed and its id: the same at every checkpoint and for every prompt), `birthday_candidates` in all,
written as its own date is (month or day first). Full-value top-1 thus means the model prefers the
true date to every date that gets a single field wrong.

A value is scored as ' value' (its leading space, as it follows a prompt in text), tokenized after a
fixed reference context; the evaluation checks that each item's own value tokens agree.
"""
from __future__ import annotations

import calendar
import functools
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import ATTRIBUTES
from ..data.entities import MONTHS

REFERENCE = "It is"  # context before ' value' when candidates are tokenized (checked against every item's own)
SAMPLED = "birthday"  # the attribute whose candidates are drawn per entity (dates one field away)


@dataclass(frozen=True, eq=False)
class Candidates:
    """One candidate set and its trie: node m is a token prefix of some value (length >= 1).

    values [C], tokens [C] (ids of ' value'); token [M] (last token of node m), parent [M] (the node
    one token shorter; -1: the context), depth [M] (prefix length - 1), leaf [C] (node of each whole
    value), inner [M] (whether some longer value continues node m). Nodes are sorted by depth.
    """
    values: tuple[str, ...]
    tokens: tuple[tuple[int, ...], ...]
    token: np.ndarray
    parent: np.ndarray
    depth: np.ndarray
    leaf: np.ndarray
    inner: np.ndarray

    def index(self, value: str) -> int:
        return self.values.index(value)


def build_trie(values: tuple[str, ...], tokens: tuple[tuple[int, ...], ...]) -> Candidates:
    """The prefix trie of token sequences (shared prefixes become shared nodes)."""
    prefixes = sorted({t[:k] for t in tokens for k in range(1, len(t) + 1)}, key=lambda p: (len(p), p))
    node = {p: m for m, p in enumerate(prefixes)}
    parent = np.array([node.get(p[:-1], -1) for p in prefixes], dtype=np.int64)  # [M]
    inner = np.zeros(len(prefixes), dtype=bool)
    inner[parent[parent >= 0]] = True
    return Candidates(values, tokens, np.array([p[-1] for p in prefixes], dtype=np.int64), parent,
                      np.array([len(p) - 1 for p in prefixes], dtype=np.int64),
                      np.array([node[t] for t in tokens], dtype=np.int64), inner)


def value_tokens(tok, values: list[str]) -> list[tuple[int, ...]]:
    """Token ids of ' value' after REFERENCE, for each value."""
    from .scoring import encode

    if not values:
        return []
    context = encode(tok, [REFERENCE])[0]
    out = []
    for value, ids in zip(values, encode(tok, [f"{REFERENCE} {v}" for v in values])):
        if ids[: len(context)] != context or len(ids) == len(context):
            raise ValueError(f"tokenizer merges the value {value!r} with the text before it")
        out.append(tuple(ids[len(context):]))
    return out


def world_values(entities: pd.DataFrame, attribute: str) -> list[str]:
    """Every value `attribute` has in the world (current and original), sorted."""
    both = pd.concat([entities[attribute], entities[f"orig_{attribute}"]]).dropna()
    return sorted(set(both.astype(str)))


def _style(text: str, day: int, month: int, year: int):
    """The writing `text` follows (month first, or day first as the imported original's), or None."""
    for style in (lambda d, m, y: f"{MONTHS[m - 1]} {d}, {y}", lambda d, m, y: f"{d} {MONTHS[m - 1]}, {y}"):
        if style(day, month, year) == text:
            return style
    return None


@functools.lru_cache(maxsize=None)
def _days(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def date_neighbours(day: int, month: int, year: int, years: tuple[int, int], rng: np.random.Generator):
    """Valid dates one field away, (day, month, year), lazily: another month that has the day,
    another day of the month, another year of the range (that has the day); each field's options
    shuffled and taken in turn: month, day, year, month, ..."""
    months = [m for m in range(1, 13) if m != month and day <= _days(year, m)]
    days = [d for d in range(1, _days(year, month) + 1) if d != day]
    others = [y for y in range(years[0], years[1] + 1) if y != year and day <= _days(y, month)]
    lists = [[(day, int(m), year) for m in rng.permutation(months)],
             [(int(d), month, year) for d in rng.permutation(days)],
             [(day, month, int(y)) for y in rng.permutation(others)]]
    return (lst[i] for i in range(max(map(len, lists))) for lst in lists if i < len(lst))


class CandidateSets:
    """Which candidates each (entity, attribute) is ranked among (module docstring); a birthday's are
    drawn from a stream of its own (the seed and the entity id), so they do not depend on which
    entities are evaluated. Values are tokenized, and tries built, once."""

    def __init__(self, tok, entities: pd.DataFrame, birthday_candidates: int, seed: int):
        self.tok, self.n_birthdays, self.seed = tok, birthday_candidates, seed
        self.pools = {a: tuple(world_values(entities, a)) for a in ATTRIBUTES if a != SAMPLED}
        pooled = [v for p in self.pools.values() for v in p]
        self.ids = dict(zip(pooled, value_tokens(tok, pooled)))  # value -> token ids, filled as sets are asked for
        self.rows = {int(r["entity_id"]): r for r in entities.to_dict("records")}
        years = pd.concat([entities["birth_year"], entities["orig_birth_year"]]).dropna().astype(int)
        self.years = (int(years.min()), int(years.max())) if len(years) else (0, -1)
        self.world_birthdays = world_values(entities, SAMPLED)

    def values(self, entity_id: int, attribute: str) -> tuple[str, ...]:
        return self.birthdays(int(entity_id)) if attribute == SAMPLED else self.pools[attribute]

    def get(self, entity_id: int, attribute: str) -> Candidates:
        return self._trie(self.values(entity_id, attribute))

    @functools.lru_cache(maxsize=None)
    def birthdays(self, entity_id: int) -> tuple[str, ...]:
        """The entity's own birthday(s) and, around each in turn, dates one field away (written as its
        own), `birthday_candidates` in all; other world birthdays around a date in no known style."""
        from ..stats import stage_rng

        rng, row = stage_rng(self.seed, f"evaluate_full_value/{entity_id}"), self.rows[entity_id]
        own, near = [], []
        for p in ("", "orig_"):
            text, day, month, year = (row[f"{p}{c}"] for c in ("birthday", "birth_day", "birth_month", "birth_year"))
            if isinstance(text, str):
                own.append(text)
                style = _style(text, int(day), int(month), int(year)) if not pd.isna(day) else None
                near.append((style(*d) for d in date_neighbours(int(day), int(month), int(year), self.years, rng))
                            if style else (self.world_birthdays[i] for i in rng.permutation(len(self.world_birthdays))))
        chosen = dict.fromkeys(own)
        for text in (t for column in itertools.zip_longest(*near) for t in column if t is not None):
            if len(chosen) >= self.n_birthdays:
                break
            chosen.setdefault(text)
        return tuple(sorted(chosen))

    @functools.lru_cache(maxsize=None)
    def _trie(self, values: tuple[str, ...]) -> Candidates:
        missing = [v for v in values if v not in self.ids]
        self.ids.update(zip(missing, value_tokens(self.tok, missing)))
        return build_trie(values, tuple(self.ids[v] for v in values))

    def lookup(self, entity_ids, attributes, values: list[str], tokens: list) -> tuple[list[Candidates], np.ndarray]:
        """Candidates and the true value's index for each item; tokens: the item's own ids of the
        value in its text (or just the first), which must agree with the candidates' tokens."""
        sets, truth = [], np.empty(len(values), dtype=np.int64)
        keys = list(zip(entity_ids, attributes))
        missing = sorted({v for e, a in set(keys) for v in self.values(e, a)} - self.ids.keys())
        self.ids.update(zip(missing, value_tokens(self.tok, missing)))  # one call: tokenizing is costly per call
        for k, ((entity, attr), value, own) in enumerate(zip(keys, values, tokens)):
            sets.append(self.get(entity, attr))
            truth[k] = sets[-1].index(value)
            if tuple(own) != sets[-1].tokens[truth[k]][: len(own)]:
                raise ValueError(f"the {attr} value {value!r} is tokenized as {list(own)} in its text but as "
                                 f"{list(sets[-1].tokens[truth[k]])} after {REFERENCE!r}: the tokenizer makes a "
                                 "value's tokens depend on the text before it, and full-value ranks cannot share them")
        return sets, truth

    def sizes(self) -> dict[str, int]:
        """Candidates per attribute (birthdays: as many as asked, fewer only in a world too small)."""
        return {**{a: len(p) for a, p in self.pools.items()}, SAMPLED: self.n_birthdays}
