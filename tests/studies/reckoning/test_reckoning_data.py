"""RECKONING task data: company table, fresh split entities, facts, contexts with distractors, questions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import YEARS
from kcircuits import ATTRIBUTES
from kcircuits.config import ConfigError
from kcircuits.resources import prompt_prefix
from kcircuits.studies.reckoning.checks import check_hq_template, check_questions
from kcircuits.studies.reckoning.tasks import (
    CONTEXT_COLUMNS,
    QUESTION_COLUMNS,
    build_contexts,
    entity_facts,
    headquarters,
    reckoning_entities,
)

SIZES = {"train": 6, "validation": 3, "test": 4}
HQ_TEMPLATE = "{company} is based in {city}."
QUESTIONS = {"city": "Question: Where does {name} live? Answer:",
             "company": "Question: Which company does {name} work for? Answer:",
             "birthday": "Question: When was {name} born? Answer:",
             "headquarters": "Question: In which city is the company {name} works for based? Answer:"}
DISTRACTORS = [0, 2, 7]


@pytest.fixture(scope="module")
def biography(templates):
    return templates.biography


@pytest.fixture(scope="module")
def world(small_world):
    return small_world


@pytest.fixture(scope="module")
def hq(pools):
    table = headquarters(pools["companies"], pools["cities"], np.random.default_rng(0))
    return dict(zip(table["company"], table["city"]))


@pytest.fixture(scope="module")
def table(world, pools):
    return reckoning_entities(world, pools, SIZES, YEARS, np.random.default_rng(1))


def contexts_of(table, biography, hq, seed=2, attributes=ATTRIBUTES, counts=DISTRACTORS, questions=QUESTIONS):
    return build_contexts(table, list(attributes), counts, biography, hq, HQ_TEMPLATE, questions,
                          np.random.default_rng(seed))


@pytest.fixture(scope="module")
def built(table, biography, hq):
    return contexts_of(table, biography, hq)


# ---- company table -------------------------------------------------------------------------------------
def test_headquarters_one_city_per_company(pools):
    hq = headquarters(pools["companies"], pools["cities"], np.random.default_rng(0))
    assert list(hq.columns) == ["company", "city"]
    assert hq["company"].tolist() == pools["companies"]
    assert hq["city"].isin(pools["cities"]).all()
    assert hq["city"].nunique() > 1  # drawn, not one constant


def test_headquarters_are_seeded(pools):
    def run(seed):
        return headquarters(pools["companies"], pools["cities"], np.random.default_rng(seed))

    pd.testing.assert_frame_equal(run(5), run(5))
    assert not run(5).equals(run(6))


# ---- entities ------------------------------------------------------------------------------------------
def test_reckoning_entities_splits_and_names(world, table):
    assert table["split"].tolist() == ["train"] * 6 + ["validation"] * 3 + ["test"] * 4
    assert (table["type"] == "reckoning").all()
    assert table["name"].is_unique and not set(table["name"]) & set(world["name"])
    top = int(world["entity_id"].max())
    assert table["entity_id"].tolist() == list(range(top + 1, top + 1 + 13))
    assert set(world.columns) < set(table.columns)
    for attr in ATTRIBUTES:
        assert table[attr].notna().all()


def test_reckoning_entities_sizes_may_be_zero(world, pools):
    table = reckoning_entities(world, pools, {"train": 2, "validation": 0, "test": 1}, YEARS, np.random.default_rng(0))
    assert table["split"].tolist() == ["train", "train", "test"]


@pytest.mark.parametrize("sizes", [{"train": -1, "validation": 1, "test": 1}, {"train": 0, "validation": 0, "test": 0},
                                   {"train": 1, "test": 1}])
def test_reckoning_entities_reject_bad_sizes(world, pools, sizes):
    with pytest.raises(ValueError, match="reckoning.entities"):
        reckoning_entities(world, pools, sizes, YEARS, np.random.default_rng(0))


# ---- facts ---------------------------------------------------------------------------------------------
def check_fact(fact, row):
    text, start, value = fact["text"], fact["value_start"], fact["value"]
    assert text[start:start + len(value)] == value and text[start - 1] == " "
    assert fact["entity_id"] == int(row["entity_id"])
    if fact["kind"] == "headquarters":
        assert row["company"] in text[:start]
    else:
        assert value == str(row[fact["kind"]]) and row["name"] in text[:start]


def test_entity_facts_values_and_prompts(table, biography, hq):
    rng = np.random.default_rng(3)
    for _, row in table.iterrows():
        for _ in range(5):  # several template draws
            facts = entity_facts(row, list(ATTRIBUTES), biography, hq, HQ_TEMPLATE, rng)
            assert [f["kind"] for f in facts] == [*ATTRIBUTES, "headquarters"]
            for fact in facts:
                check_fact(fact, row)
            assert facts[-1]["value"] == hq[row["company"]]
            assert facts[-1]["text"] == f"{row['company']} is based in {hq[row['company']]}."


def test_entity_facts_use_only_prompt_templates(table, biography, hq):
    """Templates with the value first ("On {birthday}, {name} was born.") never become facts."""
    row = table.iloc[0]
    allowed = {a: {t.format(name=row["name"], **{a: row[a]}) for t in biography[a] if prompt_prefix(t, a)}
               for a in ATTRIBUTES}
    rng = np.random.default_rng(4)
    seen = set()
    for _ in range(200):
        for fact in entity_facts(row, list(ATTRIBUTES), biography, hq, HQ_TEMPLATE, rng)[:-1]:
            assert fact["text"] in allowed[fact["kind"]]
            seen.add(fact["text"])
    assert seen == set().union(*allowed.values())  # and every such template is drawn


def test_entity_facts_without_company(table, biography, hq):
    facts = entity_facts(table.iloc[0], ["city", "major"], biography, hq, HQ_TEMPLATE, np.random.default_rng(0))
    assert [f["kind"] for f in facts] == ["city", "major"]


def test_entity_facts_no_usable_template(table, biography, hq):
    bad = {**biography, "city": ["In {city} lives {name}."]}
    with pytest.raises(ValueError, match="city"):
        entity_facts(table.iloc[0], ["city"], bad, hq, HQ_TEMPLATE, np.random.default_rng(0))


# ---- contexts ------------------------------------------------------------------------------------------
def test_contexts_layout(table, built):
    contexts, questions = built
    assert list(contexts.columns) == CONTEXT_COLUMNS and list(questions.columns) == QUESTION_COLUMNS
    assert contexts["context_id"].tolist() == list(range(len(table) * len(DISTRACTORS)))
    expected = [(s, e, d) for s, e in zip(table["split"], table["entity_id"]) for d in DISTRACTORS]
    assert list(zip(contexts["split"], contexts["entity_id"], contexts["distractors"])) == expected
    names = dict(zip(table["entity_id"], table["name"]))
    assert all(names[e] == n for e, n in zip(contexts["entity_id"], contexts["name"]))


def test_contexts_facts_and_distractors(table, built):
    contexts, _ = built
    split_of = dict(zip(table["entity_id"], table["split"]))
    rows = table.set_index("entity_id")
    for ctx in contexts.to_dict("records"):
        n = len(ctx["facts"])
        assert n == len(ATTRIBUTES) + 1 + ctx["distractors"]
        assert all(len(ctx[c]) == n for c in ("fact_kind", "fact_entity", "fact_value", "fact_start"))
        assert all(isinstance(x, int) for x in ctx["fact_entity"] + ctx["fact_start"])
        own = [k for k, e in zip(ctx["fact_kind"], ctx["fact_entity"]) if e == ctx["entity_id"]]
        assert sorted(own) == sorted([*ATTRIBUTES, "headquarters"])
        others = [i for i, e in enumerate(ctx["fact_entity"]) if e != ctx["entity_id"]]
        assert len(others) == ctx["distractors"]
        for i in range(n):
            e = ctx["fact_entity"][i]
            assert split_of[e] == ctx["split"]
            fact = {"text": ctx["facts"][i], "kind": ctx["fact_kind"][i], "entity_id": e,
                    "value": ctx["fact_value"][i], "value_start": ctx["fact_start"][i]}
            check_fact(fact, pd.Series({**rows.loc[e].to_dict(), "entity_id": e}))
            if i in others:
                assert ctx["fact_kind"][i] in ATTRIBUTES  # distractors are attribute facts
        if ctx["distractors"] <= (len(table[table["split"] == ctx["split"]]) - 1) * len(ATTRIBUTES):
            pairs = [(ctx["fact_entity"][i], ctx["fact_kind"][i]) for i in others]
            assert len(set(pairs)) == len(pairs)  # no distractor repeats while there are enough


def test_contexts_are_shuffled(built):
    contexts, _ = built
    firsts = {kinds[0] for kinds in contexts.loc[contexts["distractors"] == 0, "fact_kind"]}
    assert len(firsts) > 1


def test_questions_point_at_their_facts(table, built, hq):
    contexts, questions = built
    by_id = contexts.set_index("context_id")
    values = table.set_index("entity_id")
    assert len(questions) == len(contexts) * 4  # city, company, birthday (attributes order) + headquarters
    for q in questions.to_dict("records"):
        ctx = by_id.loc[q["context_id"]]
        assert (q["split"], q["entity_id"], q["distractors"]) == (ctx["split"], ctx["entity_id"], ctx["distractors"])
        assert ctx["name"] in q["question"]
        assert all(isinstance(i, int) for i in q["relevant"])
        kinds = [ctx["fact_kind"][i] for i in q["relevant"]]
        assert all(ctx["fact_entity"][i] == q["entity_id"] for i in q["relevant"])
        if q["hops"] == 1:
            assert kinds == [q["attribute"]] and q["answer"] == values.loc[q["entity_id"], q["attribute"]]
        else:
            assert q["attribute"] == "headquarters" and q["hops"] == 2 and kinds == ["company", "headquarters"]
            company, head = q["relevant"]
            assert ctx["facts"][head].startswith(ctx["fact_value"][company])
            assert q["answer"] == hq[ctx["fact_value"][company]]
        assert q["answer"] == ctx["fact_value"][q["relevant"][-1]]
    order = questions[questions["context_id"] == 0]["attribute"].tolist()
    assert order == ["birthday", "city", "company", "headquarters"]


def test_no_test_entity_leaks_into_train(table, built):
    contexts, questions = built
    test_names = table.loc[table["split"] == "test", "name"].tolist()
    train_text = " ".join(sum(contexts.loc[contexts["split"] == "train", "facts"].tolist(), []))
    train_text += " ".join(questions.loc[questions["split"] == "train", "question"])
    assert test_names and not any(name in train_text for name in test_names)
    for split in ("train", "validation", "test"):
        ids = set(table.loc[table["split"] == split, "entity_id"])
        part = contexts[contexts["split"] == split]
        assert set(sum(part["fact_entity"].tolist(), [])) <= ids


def test_random_context(built):
    contexts, _ = built
    by_id = contexts.set_index("context_id")
    picked = set()
    for ctx in contexts.to_dict("records"):
        other = by_id.loc[ctx["random_context"]]
        assert other["split"] == ctx["split"] and other["distractors"] == ctx["distractors"]
        assert other["entity_id"] != ctx["entity_id"]
        picked.add(ctx["random_context"])
    assert len(picked) > len(contexts) // 3  # a random choice, not always the same neighbour


def test_contexts_are_seeded(table, biography, hq, built):
    again = contexts_of(table, biography, hq)
    pd.testing.assert_frame_equal(again[0], built[0])
    pd.testing.assert_frame_equal(again[1], built[1])
    other = contexts_of(table, biography, hq, seed=9)
    assert not other[0]["facts"].equals(built[0]["facts"])


def test_contexts_without_company_have_no_two_hop(table, biography, hq):
    contexts, questions = contexts_of(table, biography, hq, attributes=["city", "major"], counts=[1])
    assert set(questions["attribute"]) == {"city"} and (questions["hops"] == 1).all()
    assert all(len(f) == 3 for f in contexts["facts"])
    assert "headquarters" not in set(sum(contexts["fact_kind"].tolist(), []))


def test_more_distractors_than_distinct_facts(table, biography, hq):
    contexts, _ = contexts_of(table, biography, hq, attributes=["city"], counts=[10])
    val = contexts[contexts["split"] == "validation"]
    assert all(len(f) == 11 for f in val["facts"])  # 2 others x 1 attribute: facts repeat, none missing


def test_single_entity_split(world, pools, biography, hq):
    lone = reckoning_entities(world, pools, {"train": 3, "validation": 1, "test": 0}, YEARS, np.random.default_rng(0))
    with pytest.raises(ValueError, match="validation"):
        contexts_of(lone, biography, hq, counts=[0, 1])
    contexts, _ = contexts_of(lone, biography, hq, counts=[0])
    assert contexts.loc[contexts["split"] == "validation", "random_context"].tolist() == [-1]


@pytest.mark.parametrize("counts", [[-1], [2, 2], []])
def test_bad_distractor_counts(table, biography, hq, counts):
    with pytest.raises(ValueError, match="reckoning.distractors"):
        contexts_of(table, biography, hq, counts=counts)


# ---- config checks -------------------------------------------------------------------------------------
def test_check_questions_accepts_good():
    check_questions(QUESTIONS, list(ATTRIBUTES))
    check_questions({"headquarters": QUESTIONS["headquarters"]}, ["company"])


@pytest.mark.parametrize("questions, key", [
    ({"city": "Where does {name} live in {city}?"}, "city"),
    ({"city": "Where does {name} and {name} live?"}, "city"),
    ({"city": "Where does she live?"}, "city"),
    ({"city": 3}, "city"),
    ({"city": "Where does {name live?"}, "city"),
    ({"pets": "What pet has {name}?"}, "pets"),
])
def test_check_questions_rejects(questions, key):
    with pytest.raises(ConfigError, match=rf"reckoning\.questions\.{key}"):
        check_questions(questions, list(ATTRIBUTES))


def test_check_questions_needs_one_that_applies():
    with pytest.raises(ConfigError, match="reckoning.questions"):
        check_questions({"headquarters": QUESTIONS["headquarters"], "city": QUESTIONS["city"]}, ["major"])


def test_check_hq_template():
    check_hq_template(HQ_TEMPLATE)
    for bad in ["{company} is based in{city}.", "{company} moved from {city} to {city}.", "{company} is based.",
                "{city} hosts {company}.", "In {city}, {company} has its seat.", "{company} in {country}: {city}.",
                None, "{company is based in {city}."]:
        with pytest.raises(ConfigError, match=r"reckoning\.headquarters_fact"):
            check_hq_template(bad)
