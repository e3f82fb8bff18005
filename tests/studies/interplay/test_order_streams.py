"""Order study corpus and streams (kcircuits.studies.interplay.streams): fast, no Snakemake, no torch."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from kcircuits import ATTRIBUTES
from kcircuits.data.biographies import fill_sentence
from kcircuits.studies.interplay.streams import (
    build_streams,
    check_types,
    fact_sentences,
    knowledge_types,
    parse_stream,
    random_stream,
    reorder,
    stream_names,
    stream_texts,
    streams_frame,
    type_of_fact,
)

DEFAULT_TYPES = {"city": ["city"], "company": ["company"], "major": ["major"]}


def entities_table() -> pd.DataFrame:
    """Three entities, ids out of order; a name that contains another entity's value as a word."""
    rows = [
        (7, "Ada Paris Lowe", "revised", 2, "low", "March 1, 1990", "Boston", "Biology", "Yale University", "Acme"),
        (2, "Bo Chen", "new", 1, "low", "May 9, 1985", "Paris", "History", "MIT", "Globex"),
        (4, "Cy Dunn", "new", 3, "high", "June 30, 2001", "Oslo", "Physics", "Rice University", "Initech"),
    ]
    return pd.DataFrame(rows, columns=["entity_id", "name", "type", "frequency", "freq_group", *ATTRIBUTES])


def invariants(stream, knowledge, a, b) -> None:
    """Every property reorder(stream, knowledge, a, b) must have, checked against the input."""
    stream = np.asarray(stream)
    out = reorder(stream, knowledge, a, b)
    labels, new = np.asarray(knowledge, dtype=object)[stream], np.asarray(knowledge, dtype=object)[out]
    assert out.dtype == np.int64 and sorted(out.tolist()) == sorted(stream.tolist())  # nothing lost or doubled
    is_a = labels == a
    assert out[new == a].tolist() == stream[is_a].tolist()  # A's relative order kept
    assert out[new != a].tolist() == stream[~is_a].tolist()  # everything else keeps its relative order
    if not (labels == b).any():
        assert out.tolist() == stream.tolist()
        return
    first = int(np.argmax(labels == b))
    if (new == a).any():
        assert np.flatnonzero(new == a).max() < np.flatnonzero(new == b).min()  # all A before all B
    assert out[:first].tolist() == stream[:first].tolist()  # what came before the first B stays put
    late = np.flatnonzero(is_a & (np.arange(len(stream)) > first))
    position = {s: i for i, s in enumerate(out.tolist())}
    for p in np.flatnonzero(~is_a):  # non-A from the first B on: shifted only by the A's moved before them
        assert position[int(stream[p])] == (p + int((late > p).sum()) if p >= first else p)


# ---- reorder ---------------------------------------------------------------------------------------------
HAND = ["A", "C", "B", "A", "C", "B", "A", "B", "A", "C"]


def test_reorder_by_hand():
    knowledge = np.array(HAND, dtype=object)
    # identity stream: the first B is at position 2; A's at 3, 6, 8 move to just before it
    assert reorder(np.arange(10), knowledge, "A", "B").tolist() == [0, 1, 3, 6, 8, 2, 4, 5, 7, 9]
    # B before C: the first C is at position 1, B's at 2, 5, 7 move before it
    assert reorder(np.arange(10), knowledge, "B", "C").tolist() == [0, 2, 5, 7, 1, 3, 4, 6, 8, 9]
    # a non-identity stream: labels in stream order are C A B A B C A C B A
    stream = np.array([9, 0, 2, 3, 5, 4, 6, 1, 7, 8])
    assert reorder(stream, knowledge, "A", "B").tolist() == [9, 0, 3, 6, 8, 2, 5, 4, 1, 7]
    for a in "ABC":
        for b in "ABC":
            if a != b:
                invariants(np.arange(10), knowledge, a, b)
                invariants(stream, knowledge, a, b)


def test_reorder_leaves_a_stream_without_b_or_late_a_unchanged():
    knowledge = np.array(["A", "A", "C", "B", "B", None, ""], dtype=object)
    stream = np.arange(7)
    assert reorder(stream, knowledge, "A", "D").tolist() == stream.tolist()  # no D at all
    assert reorder(stream, knowledge, "A", "B").tolist() == stream.tolist()  # every A already first
    assert reorder(stream, knowledge, "B", "A").tolist() == [3, 4, 0, 1, 2, 5, 6]
    with pytest.raises(ValueError):
        reorder(stream, knowledge, "A", "A")


@pytest.mark.parametrize("n_types", [2, 3, 5])
def test_reorder_properties_on_random_streams(n_types):
    rng = np.random.default_rng(n_types)
    names = [f"t{i}" for i in range(n_types)]
    for _ in range(60):
        n = int(rng.integers(0, 40))
        knowledge = rng.choice(np.array([*names, None], dtype=object), size=n)  # some sentences in no type
        stream = rng.permutation(n)
        for a in names:
            for b in names:
                if a != b:
                    invariants(stream, knowledge, a, b)


# ---- streams ---------------------------------------------------------------------------------------------
def corpus(n: int, types: list[str], seed: int) -> pd.DataFrame:
    knowledge = np.random.default_rng(seed).choice(types, size=n)
    return pd.DataFrame({"sentence": np.arange(n, dtype=np.int64), "knowledge": knowledge,
                         "text": [f"sentence {i}." for i in range(n)]})


def test_stream_names_and_parse():
    assert stream_names({"x": [], "y": [], "z": []}) == ["random", "x-y", "x-z", "y-x", "y-z", "z-x", "z-y"]
    assert parse_stream("random") is None
    assert parse_stream("city-major") == ("city", "major")
    assert [parse_stream(n) for n in stream_names(DEFAULT_TYPES)[1:]] == [
        (a, b) for a in DEFAULT_TYPES for b in DEFAULT_TYPES if a != b]
    for bad in ("city", "a-b-c", "city-city", "City-major"):
        with pytest.raises(ValueError):
            parse_stream(bad)


def test_random_stream_is_a_seeded_permutation():
    s = random_stream(50, np.random.default_rng(1))
    assert s.dtype == np.int64 and sorted(s.tolist()) == list(range(50)) and s.tolist() != list(range(50))
    assert s.tolist() == random_stream(50, np.random.default_rng(1)).tolist()


def test_build_streams():
    types = {"x": ["city"], "y": ["major"], "z": ["company"]}
    sentences = corpus(200, list(types), seed=0)
    streams = build_streams(sentences, types, np.random.default_rng(3))
    assert list(streams) == stream_names(types)
    for s in streams.values():
        assert s.dtype == np.int64 and sorted(s.tolist()) == list(range(200))
    again = build_streams(sentences, types, np.random.default_rng(3))
    other = build_streams(sentences, types, np.random.default_rng(4))
    assert all(np.array_equal(streams[k], again[k]) for k in streams)
    assert not np.array_equal(streams["random"], other["random"])
    knowledge = sentences["knowledge"].to_numpy(dtype=object)
    for name, s in streams.items():
        if name != "random":
            a, b = parse_stream(name)
            assert np.array_equal(s, reorder(streams["random"], knowledge, a, b))
            assert not np.array_equal(s, streams["random"])  # 200 random sentences: some A follows a B
            labels = knowledge[s]
            assert np.flatnonzero(labels == a).max() < np.flatnonzero(labels == b).min()


def test_streams_frame_and_texts():
    sentences = corpus(6, ["x", "y"], seed=1)
    streams = {"random": np.array([5, 3, 1, 0, 2, 4]), "x-y": np.array([0, 1, 2, 3, 4, 5])}
    frame = streams_frame(streams)
    assert list(frame.columns) == ["stream", "position", "sentence"] and len(frame) == 12
    assert frame["stream"].tolist() == ["random"] * 6 + ["x-y"] * 6
    assert frame["position"].tolist() == list(range(6)) * 2
    assert frame["sentence"].tolist() == [5, 3, 1, 0, 2, 4, 0, 1, 2, 3, 4, 5]
    assert stream_texts(sentences, streams["random"]) == [f"sentence {i}." for i in (5, 3, 1, 0, 2, 4)]


# ---- corpus ----------------------------------------------------------------------------------------------
def test_fill_sentence_span_is_the_value_even_inside_the_name():
    text, (start, end) = fill_sentence("{name} lives in {city}.", "Ada Paris Lowe", "city", "Paris")
    assert text == "Ada Paris Lowe lives in Paris." and text[start:end] == "Paris" and start == 24
    text, (start, end) = fill_sentence("On {birthday}, {name} was born.", "Bo", "birthday", "May 9, 1985")
    assert text == "On May 9, 1985, Bo was born." and (start, end) == (3, 14)


def test_fact_sentences_attribute_grouping(templates):
    entities = entities_table()
    repeats = 4
    df = fact_sentences(entities, templates, DEFAULT_TYPES, repeats, np.random.default_rng(0))
    assert list(df.columns) == ["sentence", "entity_id", "type", "freq_group", "frequency", "attribute",
                                "knowledge", "template", "text"]
    assert len(df) == 3 * repeats * 3  # entities x repeats x attributes: every fact equally often
    assert df["sentence"].tolist() == list(range(len(df)))
    assert df["entity_id"].tolist() == sorted(df["entity_id"])  # entity_id order
    assert df.groupby("entity_id", sort=False)["attribute"].apply(lambda s: list(dict.fromkeys(s))).tolist() == \
        [["city", "major", "company"]] * 3  # ATTRIBUTES order within an entity
    assert (df["knowledge"] == df["attribute"]).all()
    by_id = entities.set_index("entity_id")
    for r in df.itertuples():
        e = by_id.loc[r.entity_id]
        assert r.frequency == e["frequency"] and r.type == e["type"] and r.freq_group == e["freq_group"]
        assert e["name"] in r.text and e[r.attribute] in r.text
        assert r.text == fill_sentence(templates.biography[r.attribute][r.template], e["name"], r.attribute,
                                       e[r.attribute])[0]
    counts = df.groupby(["entity_id", "attribute"]).size()
    assert (counts == repeats).all() and len(counts) == 3 * 3
    assert df["template"].nunique() > 1  # templates are drawn, not fixed


def test_fact_sentences_knowledge_names_and_seed(templates):
    types = {"place": ["city", "university"], "work": ["company"]}
    df = fact_sentences(entities_table(), templates, types, 1, np.random.default_rng(5))
    assert len(df) == 3 * 3
    assert set(df["attribute"]) == {"city", "university", "company"}
    assert df["knowledge"].tolist() == [type_of_fact(types, "attribute", a, "new") for a in df["attribute"]]
    assert set(df.loc[df["attribute"] == "university", "knowledge"]) == {"place"}
    same = fact_sentences(entities_table(), templates, types, 1, np.random.default_rng(5))
    other = fact_sentences(entities_table(), templates, types, 1, np.random.default_rng(6))
    pd.testing.assert_frame_equal(df, same)
    assert df["text"].tolist() != other["text"].tolist()


def test_fact_sentences_entity_grouping(templates):
    types = {"fresh": ["new"], "changed": ["revised"]}
    df = fact_sentences(entities_table(), templates, types, 1, np.random.default_rng(0))
    assert len(df) == 3 * len(ATTRIBUTES)  # every attribute of every entity, once each
    for entity_id, group in df.groupby("entity_id"):
        assert list(dict.fromkeys(group["attribute"])) == list(ATTRIBUTES)
    assert (df["knowledge"] == df["type"].map({"new": "fresh", "revised": "changed"})).all()
    only_new = fact_sentences(entities_table(), templates, {"fresh": ["new"], "none": ["revised"]}, 1,
                              np.random.default_rng(0))
    assert set(only_new["entity_id"]) == {2, 4, 7}


# ---- types -----------------------------------------------------------------------------------------------
def test_check_types_groupings():
    assert check_types(DEFAULT_TYPES, ["new"]) == "attribute"
    assert check_types({"when": ["birthday"], "where": ["city", "university"]}, []) == "attribute"
    assert check_types({"new_people": ["new"], "old": ["revised"]}, ["new", "revised"]) == "entity"
    assert type_of_fact(DEFAULT_TYPES, "attribute", "birthday", "new") is None
    assert type_of_fact({"new_people": ["new"], "old": ["revised"]}, "entity", "city", "revised") == "old"


@pytest.mark.parametrize("types, entity_types, key", [
    ({"city": ["city"]}, ["new"], "order.types"),  # fewer than two
    ({}, ["new"], "order.types"),
    ({"City": ["city"], "major": ["major"]}, ["new"], "order.types.City"),  # bad name
    ({"a-b": ["city"], "major": ["major"]}, ["new"], "order.types.a-b"),
    ({"city": [], "major": ["major"]}, ["new"], "order.types.city"),  # empty
    ({"city": ["city"], "pay": ["salary"]}, ["new"], "order.types.pay"),  # unknown member
    ({"city": ["city"], "people": ["new"]}, ["new"], "order.types.people"),  # mixed groupings
    ({"city": ["city", "new"], "major": ["major"]}, ["new"], "order.types.city"),
    ({"city": ["city"], "place": ["university", "city"]}, ["new"], "order.types.place"),  # in two types
    ({"city": ["city", "city"], "major": ["major"]}, ["new"], "order.types.city"),
    ({"fresh": ["new"], "old": ["revised"]}, ["new"], "order.entity_types"),  # not a corpus entity type
])
def test_check_types_errors_name_the_key(types, entity_types, key):
    with pytest.raises(ValueError, match="^" + re.escape(key) + ":") as err:
        check_types(types, entity_types)
    assert "\n" not in str(err.value)


def test_knowledge_types_from_the_config_list():
    assert knowledge_types(["city", "major"]) == {"city": ["city"], "major": ["major"]}
    assert knowledge_types([{"place": ["city", "university"]}, "company"]) == {
        "place": ["city", "university"], "company": ["company"]}
    assert knowledge_types({"a": ["city"]}) == {"a": ["city"]}  # a mapping as it is
    with pytest.raises(ValueError, match=r"^order.types\[1\]: the type name 'city' is used twice"):
        knowledge_types(["city", {"city": ["major"]}])
    with pytest.raises(ValueError, match=r"^order.types\[0\]: expected"):
        knowledge_types([{"a": ["city"], "b": ["major"]}])
