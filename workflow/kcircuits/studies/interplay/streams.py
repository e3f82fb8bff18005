"""Order corpus and streams (Ou et al. 2025, RQ4: does learning knowledge type A first help or hurt B?).

The corpus is built once: per-fact sentences, one attribute of one entity per sentence, each fact
stated frequency x repeats times with freshly drawn biography templates. Every fact belongs to one
knowledge type (`order.types`: name -> attributes, or name -> entity types). A stream is an order
of the same sentences: one random order, and for every ordered pair (A, B) of types the random
order with every A sentence after the first B sentence moved to just before that first B sentence
(all A before all B; A's relative order kept; everything else keeps its relative place). So the
streams differ only where the A-B order demands it, and every run sees exactly the same text.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ... import ATTRIBUTES, TYPES
from ...data.biographies import fill_sentence
from ...resources import Templates

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
RANDOM = "random"
COLUMNS = ["sentence", "entity_id", "type", "freq_group", "frequency", "attribute", "knowledge", "template", "text"]


# ---- knowledge types -------------------------------------------------------------------------------------
def _kind(member) -> str | None:
    """"attribute", "entity" or None (neither an attribute nor an entity type)."""
    if member in ATTRIBUTES:
        return "attribute"
    return "entity" if member in TYPES else None


def _check_type(name, members) -> None:
    """One type's name and members on their own; raises ValueError naming order.types.<name>."""
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise ValueError(f"order.types.{name}: a type name must match {NAME_PATTERN} (lower case, digits, _)")
    if not isinstance(members, (list, tuple)) or not members:
        raise ValueError(f"order.types.{name}: needs a non-empty list of members")
    for m in members:
        if not isinstance(m, str) or _kind(m) is None:
            raise ValueError(f"order.types.{name}: unknown member {m!r}; members are attributes "
                             f"{list(ATTRIBUTES)} or entity types {list(TYPES)}")


def knowledge_types(value: list | dict) -> dict[str, list[str]]:
    """order.types as name -> members. The config's form is a list (so a config merged over another
    replaces it whole): an item is a member, naming a type of its own ("city" -> {"city": ["city"]}),
    or a one-key mapping {name: [members]}. A mapping is taken as it is."""
    if isinstance(value, dict):
        return {name: list(members) for name, members in value.items()}
    out: dict[str, list[str]] = {}
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {item: [item]}
        if not isinstance(item, dict) or len(item) != 1:
            raise ValueError(f"order.types[{i}]: expected a member name or {{name: [members]}}, got {item!r}")
        ((name, members),) = item.items()
        if name in out:
            raise ValueError(f"order.types[{i}]: the type name {name!r} is used twice")
        out[name] = list(members) if isinstance(members, list) else members
    return out


def check_types(types: dict[str, list[str]], entity_types: list[str]) -> str:
    """Validate the knowledge types; return their grouping, "attribute" or "entity".

    Types need >= 2 names matching NAME_PATTERN, each with a non-empty member list; members are all
    attributes or all entity types, each in one type only; entity-type members must be among the
    corpus's entity_types. Every error is a ValueError whose message names the offending key.
    """
    if not isinstance(types, dict) or len(types) < 2:
        raise ValueError(f"order.types: needs at least two knowledge types (a stream per ordered pair), got "
                         f"{list(types) if isinstance(types, dict) else types!r}")
    owner: dict[str, str] = {}  # member -> the type that holds it
    first = None  # (type name, kind) of the first member: every other member must share the kind
    for name, members in types.items():
        _check_type(name, members)
        for m in members:
            if first is None:
                first = (name, _kind(m))
            elif _kind(m) != first[1]:
                raise ValueError(f"order.types.{name}: member {m!r} is of kind {_kind(m)} but order.types."
                                 f"{first[0]} holds {first[1]} members; all types must group by attribute "
                                 f"or all by entity type")
            if m in owner:
                where = "twice" if owner[m] == name else f"also in order.types.{owner[m]}"
                raise ValueError(f"order.types.{name}: member {m!r} is {where}; types must be disjoint")
            owner[m] = name
    grouping = first[1]
    if grouping == "entity":
        for m, name in owner.items():
            if m not in entity_types:
                raise ValueError(f"order.entity_types: {m!r} (a member of order.types.{name}) is not among "
                                 f"the corpus's entity types {list(entity_types)}")
    return grouping


def type_of_fact(types: dict[str, list[str]], grouping: str, attribute: str, entity_type: str) -> str | None:
    """The knowledge type a fact (an entity's attribute) belongs to; None: it is in no type."""
    key = attribute if grouping == "attribute" else entity_type
    return next((name for name, members in types.items() if key in members), None)


# ---- corpus ----------------------------------------------------------------------------------------------
def fact_sentences(entities: pd.DataFrame, templates: Templates, types: dict[str, list[str]], repeats: int,
                   rng: np.random.Generator) -> pd.DataFrame:
    """The order corpus: one row per sentence, columns COLUMNS, `sentence` = 0..n-1.

    For every entity (entity_id order) and every attribute (ATTRIBUTES order) whose fact is in a
    knowledge type, `repeats` sentences, each from a biography template drawn uniformly (one
    rng.integers call of that many draws per fact), filled with fill_sentence. Every fact is seen
    equally often: the entity's frequency in the main study does not carry over (these runs start
    from epoch-000, before any of it was seen); it stays a column for reference.
    """
    if repeats < 1:
        raise ValueError(f"order.repeats must be >= 1, got {repeats}")
    grouping = check_types(types, list(TYPES))
    rows = []
    for e in entities.sort_values("entity_id", kind="stable").itertuples(index=False):
        for attr in ATTRIBUTES:
            knowledge = type_of_fact(types, grouping, attr, e.type)
            if knowledge is None:
                continue
            value = getattr(e, attr)
            if not isinstance(value, str) or not value:
                raise ValueError(f"fact_sentences: entity {e.entity_id} has no {attr} value")
            pool = templates.biography[attr]
            filled = [fill_sentence(t, e.name, attr, value)[0] for t in pool]  # [templates]
            choice = rng.integers(len(pool), size=repeats)  # [repeats]
            rows += [(int(e.entity_id), e.type, e.freq_group, int(e.frequency), attr, knowledge, int(c), filled[c])
                     for c in choice]
    df = pd.DataFrame(rows, columns=COLUMNS[1:])
    df.insert(0, "sentence", np.arange(len(df), dtype=np.int64))
    return df.astype({"entity_id": np.int64, "frequency": np.int64, "template": np.int64})


# ---- streams ---------------------------------------------------------------------------------------------
def stream_names(types: dict[str, list[str]]) -> list[str]:
    """"random", then "A-B" for every ordered pair of distinct types (types in dict order)."""
    return [RANDOM, *[f"{a}-{b}" for a in types for b in types if a != b]]


def parse_stream(name: str) -> tuple[str, str] | None:
    """(A, B) of an "A-B" stream name; None for "random"."""
    if name == RANDOM:
        return None
    parts = name.split("-")
    if len(parts) != 2 or not all(re.match(NAME_PATTERN, p) for p in parts) or parts[0] == parts[1]:
        raise ValueError(f"not a stream name: {name!r} (expected 'random' or 'A-B')")
    return parts[0], parts[1]


def random_stream(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random order of n sentences: [n] int64 permutation of 0..n-1."""
    return rng.permutation(n).astype(np.int64)


def reorder(stream: np.ndarray, knowledge: np.ndarray, a: str, b: str) -> np.ndarray:
    """The stream with every A sentence after the first B sentence moved to just before it.

    stream: [n] sentence indices in training order; knowledge: [sentences] type name of each sentence
    (None or "" for none). A sentences before the first B keep their positions, the moved ones keep
    their relative order, every other sentence keeps its order. Unchanged if B never occurs.
    """
    if a == b:
        raise ValueError(f"reorder: A and B must differ, got {a!r} twice")
    stream = np.asarray(stream, dtype=np.int64)
    labels = np.asarray(knowledge, dtype=object)[stream]  # [n] type of each position
    is_b = labels == b
    if not is_b.any():
        return stream.copy()
    first = int(np.argmax(is_b))
    late_a = (labels == a) & (np.arange(len(stream)) > first)  # [n] A sentences to move
    return np.concatenate([stream[:first], stream[late_a], stream[first:][~late_a[first:]]])


def _check_ids(sentences: pd.DataFrame) -> None:
    if not np.array_equal(sentences["sentence"].to_numpy(), np.arange(len(sentences))):
        raise ValueError("sentences: the `sentence` column must be 0..n-1 in row order")


def build_streams(sentences: pd.DataFrame, types: dict[str, list[str]],
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every stream of stream_names(types): name -> [n] sentence indices in training order.

    One random stream is drawn; every A-B stream is reorder(random, ..., A, B).
    """
    _check_ids(sentences)
    base = random_stream(len(sentences), rng)
    knowledge = sentences["knowledge"].to_numpy(dtype=object)  # [n]
    streams = {RANDOM: base}
    for name in stream_names(types)[1:]:
        streams[name] = reorder(base, knowledge, *parse_stream(name))
    return streams


def streams_frame(streams: dict[str, np.ndarray]) -> pd.DataFrame:
    """The streams as a tidy table: stream, position (0..n-1 within it), sentence."""
    parts = [pd.DataFrame({"stream": name, "position": np.arange(len(s), dtype=np.int64),
                           "sentence": np.asarray(s, dtype=np.int64)}) for name, s in streams.items()]
    if not parts:
        return pd.DataFrame({"stream": pd.Series(dtype=object), "position": pd.Series(dtype=np.int64),
                             "sentence": pd.Series(dtype=np.int64)})
    return pd.concat(parts, ignore_index=True)


def stream_texts(sentences: pd.DataFrame, stream: np.ndarray) -> list[str]:
    """The sentence texts in stream order (what the packer tokenises)."""
    _check_ids(sentences)
    texts = sentences["text"].to_numpy(dtype=object)  # [n]
    return texts[np.asarray(stream, dtype=np.int64)].tolist()
