"""Forgetting corpora (other entities, conflicting facts) and the replay mix."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import SMALL_WORLD, YEARS
from kcircuits import ATTRIBUTES
from kcircuits.data.entities import BIRTH_FIELDS, VALUE_COLUMNS, generate_entities, other_entities
from kcircuits.stats import stage_rng
from kcircuits.studies.interplay.forgetting import (
    CORPORA,
    conflicting_entities,
    corpus_paragraphs,
    followed_facts,
    replay_mix,
)


@pytest.fixture(scope="module")
def world(small_world):
    return small_world


def probed_ids(world):
    return world.loc[world["type"] != "background", "entity_id"].tolist()


def test_corpora_names():
    assert CORPORA == ("other_entities", "conflicting")


# ---- other entities ------------------------------------------------------------------------------------
def test_other_entities_are_fresh(world, pools):
    other = other_entities(world, pools, 25, YEARS, 3, stage_rng(0, "x"))
    assert len(other) == 25
    assert list(other.columns) == list(world.columns)
    assert other.dtypes.to_dict() == world.dtypes.to_dict()
    assert other["name"].is_unique and not set(other["name"]) & set(world["name"])
    assert all(len(name.split()) == 3 for name in other["name"])
    assert other["entity_id"].tolist() == list(range(world["entity_id"].max() + 1, world["entity_id"].max() + 26))
    assert (other["type"] == "other").all() and (other["frequency"] == 3).all() and other["freq_group"].isna().all()
    for col in VALUE_COLUMNS:
        assert other[col].notna().all() and other[f"orig_{col}"].isna().all()
    assert other["birth_year"].between(YEARS["min"], YEARS["max"]).all()
    for attr, pool in (("city", "cities"), ("company", "companies")):
        assert other[attr].isin(pools[pool]).all()


def test_other_entity_ids_follow_the_largest_id(world, pools):
    main = world.drop(index=[3, 4])  # ids with a gap: the count is no longer the next id
    other = other_entities(main, pools, 3, YEARS, 1, stage_rng(0, "x"))
    top = int(world["entity_id"].max())
    assert other["entity_id"].tolist() == [top + 1, top + 2, top + 3]


def test_other_entities_are_seeded(world, pools):
    def run(seed):
        return other_entities(world, pools, 10, YEARS, 2, stage_rng(seed, "x"))

    pd.testing.assert_frame_equal(run(1), run(1))
    assert not run(1)["name"].equals(run(2)["name"])


def test_other_entities_avoid_every_main_name(world, pools):
    """With pools of exactly n + used names, the n drawn are exactly the unused ones."""
    tiny = {**pools, "first_names": ["Ann", "Bo", "Cy"], "middle_names": ["Lee"], "last_names": ["Ray", "Sun"]}
    main = world.copy()
    main.loc[0, "name"], main.loc[1, "name"] = "Ann Lee Ray", "Cy Lee Sun"
    other = other_entities(main, tiny, 4, YEARS, 1, stage_rng(0, "x"))
    assert sorted(other["name"]) == ["Ann Lee Sun", "Bo Lee Ray", "Bo Lee Sun", "Cy Lee Ray"]
    with pytest.raises(ValueError, match="fresh entities need unused names"):
        other_entities(main, tiny, 5, YEARS, 1, stage_rng(0, "x"))


# ---- conflicting entities ------------------------------------------------------------------------------
def test_conflicting_entities_change_every_attribute(world, pools):
    ids = probed_ids(world)[::-1]  # any order in, id order out
    conf = conflicting_entities(world, ids, pools, YEARS, 4, stage_rng(0, "x"))
    old = world.set_index("entity_id").loc[sorted(ids)].reset_index()
    assert conf["entity_id"].tolist() == sorted(ids)
    assert list(conf.columns) == list(world.columns) and conf.dtypes.to_dict() == world.dtypes.to_dict()
    for col in ("name", "type", "freq_group"):
        assert conf[col].tolist() == old[col].tolist()
    assert (conf["frequency"] == 4).all()
    for attr in ATTRIBUTES:
        assert (conf[attr] != old[attr]).all(), attr
    new_birth = list(zip(*(conf[f] for f in BIRTH_FIELDS)))
    old_birth = list(zip(*(old[f] for f in BIRTH_FIELDS)))
    assert all(a != b for a, b in zip(new_birth, old_birth))
    for col in VALUE_COLUMNS:
        assert conf[f"orig_{col}"].tolist() == old[col].tolist(), col


def test_conflicting_entities_with_two_values_take_the_other(pools):
    """With two values per attribute pool, the changed value can only be the other one."""
    two = {**pools, **{name: pools[name][:2] for name in ("cities", "majors", "universities", "companies")}}
    world = generate_entities(SMALL_WORLD, two, stage_rng(0, "x"))[0]
    ids = probed_ids(world)
    conf = conflicting_entities(world, ids, two, YEARS, 1, stage_rng(0, "x"))
    for attr, name in (("city", "cities"), ("major", "majors"), ("university", "universities"),
                       ("company", "companies")):
        other = {two[name][0]: two[name][1], two[name][1]: two[name][0]}
        assert conf[attr].tolist() == [other[v] for v in conf[f"orig_{attr}"]], attr


def test_conflicting_entities_reject_unknown_or_background(world, pools):
    with pytest.raises(ValueError, match="no entity"):
        conflicting_entities(world, [10**6], pools, YEARS, 1, stage_rng(0, "x"))
    bg = world.loc[world["type"] == "background", "entity_id"].iloc[0]
    with pytest.raises(ValueError, match="no current attribute values"):
        conflicting_entities(world, [bg], pools, YEARS, 1, stage_rng(0, "x"))


# ---- paragraphs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("corpus", CORPORA)
def test_corpus_paragraphs_state_the_tables_values(world, pools, templates, corpus):
    rng = stage_rng(0, "x")
    if corpus == "other_entities":
        table = other_entities(world, pools, 6, YEARS, 3, rng)
    else:
        table = conflicting_entities(world, probed_ids(world)[:6], pools, YEARS, 2, rng)
    table.loc[0, "frequency"] = 5  # counts follow the table's frequency column
    rows = corpus_paragraphs(table, templates, stage_rng(1, "x"))
    assert len(rows) == table["frequency"].sum()
    by_id = table.set_index("entity_id")
    for row in rows:
        assert set(row) == {"entity_id", "paragraph", "text", "spans", "layout"}
        e = by_id.loc[row["entity_id"]]
        assert e["name"] in row["text"]
        assert sorted(a for a, _ in row["layout"]) == sorted(ATTRIBUTES)
        for attr, (a, b) in row["spans"].items():
            assert row["text"][a:b] == e[attr]
            if corpus == "conflicting":
                assert row["text"][a:b] != e[f"orig_{attr}"]
    counts = pd.Series([r["entity_id"] for r in rows]).value_counts()
    assert counts.to_dict() == by_id["frequency"].to_dict()
    assert corpus_paragraphs(table, templates, stage_rng(1, "x")) == rows


# ---- replay mix ----------------------------------------------------------------------------------------
def blocks(n: int, sign: int, size: int = 4) -> np.ndarray:
    """n distinguishable blocks: row i is filled with sign * (i + 1)."""
    return np.repeat(sign * np.arange(1, n + 1, dtype=np.int64)[:, None], size, axis=1)


NEW, REPLAY = blocks(7, 1), blocks(5, -1)


@pytest.mark.parametrize("share", [0.0, 0.1, 0.2, 0.4, 0.6, 1.0])
def test_replay_mix_holds_the_share(share):
    n = 50
    out, is_replay = replay_mix(NEW, REPLAY, n, share, stage_rng(0, "x"))
    assert out.shape == (n, 4) and out.dtype == np.int64 and is_replay.shape == (n,) and is_replay.dtype == bool
    assert is_replay.sum() == round(share * n)
    assert (out[is_replay] < 0).all() and (out[~is_replay] > 0).all()
    for rows, source in ((out[is_replay], REPLAY), (out[~is_replay], NEW)):
        assert all((row == source).all(axis=1).any() for row in rows)
        if len(rows):  # read without replacement until a source is exhausted: counts differ by at most 1
            counts = np.bincount(np.abs(rows[:, 0]) - 1, minlength=len(source))
            assert counts.max() - counts.min() <= 1


def test_replay_mix_reads_each_pass_without_repetition():
    out, is_replay = replay_mix(NEW, REPLAY, 40, 0.5, stage_rng(0, "x"))
    for rows, n_source in ((out[~is_replay], len(NEW)), (out[is_replay], len(REPLAY))):
        ids = rows[:, 0]
        for start in range(0, len(ids) - n_source + 1, n_source):  # every full pass is a permutation
            assert sorted(np.abs(ids[start:start + n_source])) == list(range(1, n_source + 1))


def test_replay_mix_positions_are_random():
    _, is_replay = replay_mix(NEW, REPLAY, 200, 0.3, stage_rng(0, "x"))
    assert is_replay[:100].any() and is_replay[100:].any()
    assert not is_replay[:60].all()  # not simply the first positions


def test_replay_mix_is_seeded():
    a = replay_mix(NEW, REPLAY, 30, 0.4, stage_rng(0, "x"))
    b = replay_mix(NEW, REPLAY, 30, 0.4, stage_rng(0, "x"))
    c = replay_mix(NEW, REPLAY, 30, 0.4, stage_rng(1, "x"))
    assert all((x == y).all() for x, y in zip(a, b))
    assert not all((x == y).all() for x, y in zip(a, c))


def test_replay_mix_errors():
    rng = stage_rng(0, "x")
    with pytest.raises(ValueError, match="block sizes"):
        replay_mix(NEW, blocks(5, -1, size=3), 10, 0.2, rng)
    for share in (-0.1, 1.1):
        with pytest.raises(ValueError, match="share"):
            replay_mix(NEW, REPLAY, 10, share, rng)
    empty = np.zeros((0, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="replay corpus is empty"):
        replay_mix(NEW, empty, 10, 0.2, rng)
    with pytest.raises(ValueError, match="new corpus is empty"):
        replay_mix(empty, REPLAY, 10, 0.2, rng)
    # an empty source no example needs is fine
    assert not replay_mix(NEW, empty, 10, 0.0, rng)[1].any()
    assert replay_mix(empty, REPLAY, 10, 1.0, rng)[1].all()


def test_followed_facts_sample_every_attribute_of_n_entities_per_cell():
    probed = pd.DataFrame({"entity_id": np.arange(40), "type": ["new", "revised"] * 20,
                           "freq_group": ["low"] * 10 + ["high"] * 30})
    facts = followed_facts(probed, 4, np.random.default_rng(0))
    per_cell = facts.drop_duplicates("entity_id").groupby(["type", "freq_group"]).size()
    assert per_cell.to_dict() == {("new", "high"): 4, ("new", "low"): 4, ("revised", "high"): 4, ("revised", "low"): 4}
    assert (facts.groupby("entity_id")["attribute"].apply(list) == [list(ATTRIBUTES)] * 16).all()
    assert facts["entity_id"].is_monotonic_increasing
    assert facts.equals(followed_facts(probed, 4, np.random.default_rng(0)))
    assert not facts.equals(followed_facts(probed, 4, np.random.default_rng(1)))
    assert len(followed_facts(probed, None, np.random.default_rng(0))) == 40 * len(ATTRIBUTES)
    assert len(followed_facts(probed, 100, np.random.default_rng(0))) == 40 * len(ATTRIBUTES)  # all where fewer
