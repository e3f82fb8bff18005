"""Properties of every data generator, on the files a real tiny Snakemake run wrote."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from helpers import REPO
from kcircuits import ATTRIBUTES
from kcircuits.config import load_config, stage_settings
from kcircuits.data.entities import draw_frequencies, generate_entities
from kcircuits.io import read_jsonl
from kcircuits.resources import load_pools, load_templates
from kcircuits.stats import stage_rng
from kcircuits.tokenizer import first_answer_token, load_tokenizer

TEMPLATES = load_templates(REPO / "resources" / "templates")


def expected_frequency_probs(lam: float, k_max: int) -> np.ndarray:
    """P(max(1, round(X)) = k) for X ~ Exponential(lam), k = 1..k_max (last bin: k >= k_max)."""
    def cdf(x):
        return 1 - math.exp(-lam * x)

    p = [cdf(1.5)] + [cdf(k + 0.5) - cdf(k - 0.5) for k in range(2, k_max)]
    return np.array(p + [1 - sum(p)])


@pytest.mark.parametrize("lam", [0.4, 1.0])
def test_frequency_distribution_matches_lambda(lam):
    n, k_max = 50_000, 8
    freq = draw_frequencies(np.random.default_rng(1), n, lam)
    observed = np.bincount(np.minimum(freq, k_max), minlength=k_max + 1)[1:]
    expected = n * expected_frequency_probs(lam, k_max)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 26.1, (observed, expected.round())  # chi-square, 7 dof, p = 0.0005
    assert freq.min() == 1


@pytest.mark.slow
def test_entity_table(tiny_data):
    df = pd.read_parquet(tiny_data / "entities.parquet")
    cfg = load_config([REPO / "config.yaml", REPO / "tests/config/tiny.yaml"])
    counts = df["type"].value_counts()
    assert counts["new"] == round(cfg["entities"]["n"] * cfg["entities"]["new_fraction"])
    assert counts["new"] + counts["revised"] == cfg["entities"]["n"]
    assert counts["background"] == cfg["entities"]["background"]
    assert df["name"].is_unique and df["entity_id"].is_unique
    new, rev, bg = (df[df["type"] == t] for t in ("new", "revised", "background"))
    assert all(len(n.split()) == 3 for n in new["name"])
    assert set(rev["name"]) <= set(load_pools(REPO / "resources/pools")["famous_names"])
    for attr in ATTRIBUTES:  # revised: both attribute sets, every attribute changed
        assert rev[f"orig_{attr}"].notna().all()
        assert (rev[attr] != rev[f"orig_{attr}"]).all()
        assert new[f"orig_{attr}"].isna().all() and bg[attr].isna().all() and bg[f"orig_{attr}"].notna().all()
    groups = cfg["entities"]["frequency_groups"]
    for name, g in groups.items():
        members = df[df["freq_group"] == name]["frequency"]
        assert (members >= g["min"]).all() and (members <= g.get("max", 10**9)).all()
    # revised frequencies are a thinned copy of the new ones: same distribution by construction
    assert abs(rev["frequency"].mean() - new["frequency"].mean()) < 0.5


def test_entities_are_seeded():
    cfg = load_config([REPO / "config.yaml", REPO / "tests/config/tiny.yaml"])
    pools = load_pools(REPO / "resources/pools")
    def run(seed):
        return generate_entities({**stage_settings(cfg, "entities"), "seed": seed}, pools,
                                 stage_rng(seed, "entities"))[0]

    pd.testing.assert_frame_equal(run(3), run(3))
    assert not run(3)["name"].equals(run(4)["name"])


@pytest.mark.slow
def test_every_paragraph_states_every_attribute_once(tiny_data):
    ents = pd.read_parquet(tiny_data / "entities.parquet").set_index("entity_id")
    for corpus, prefix in (("bios_train", ""), ("bios_val", ""), ("base_train", "orig_"), ("base_val", "orig_")):
        for row in read_jsonl(tiny_data / f"{corpus}.jsonl"):
            e = ents.loc[row["entity_id"]]
            assert sorted(a for a, _ in row["layout"]) == sorted(ATTRIBUTES)
            without_name = row["text"].replace(e["name"], "<NAME>")  # names like "J.K. Rowling"
            sentences = re.split(r"(?<=\.) (?=[A-Z<])", without_name)
            assert len(sentences) == len(ATTRIBUTES), row["text"]
            for attr in ATTRIBUTES:
                start, end = row["spans"][attr]
                assert row["text"][start:end] == e[f"{prefix}{attr}"]
                assert row["text"][start - 1] == " "
                assert len(re.findall(rf"(?<!\w){re.escape(e[f'{prefix}{attr}'])}(?!\w)", without_name)) == 1


@pytest.mark.slow
def test_paragraph_counts_and_held_out_validation(tiny_data):
    ents = pd.read_parquet(tiny_data / "entities.parquet").set_index("entity_id")
    train = pd.DataFrame(read_jsonl(tiny_data / "bios_train.jsonl"))
    per_entity = train.groupby("entity_id").size()
    probed = ents[ents["type"] != "background"]
    assert (per_entity.reindex(probed.index) == probed["frequency"]).all()
    base = pd.DataFrame(read_jsonl(tiny_data / "base_train.jsonl"))
    assert set(base["entity_id"]) == set(ents[ents["type"] != "new"].index)
    assert set(train["entity_id"]).isdisjoint(ents[ents["type"] == "background"].index)
    for split in ("bios", "base"):
        train_texts = {r["text"] for r in read_jsonl(tiny_data / f"{split}_train.jsonl")}
        val = read_jsonl(tiny_data / f"{split}_val.jsonl")
        assert val and not any(r["text"] in train_texts for r in val)


@pytest.mark.slow
def test_probe_prompts(tiny_data):
    probes = pd.read_parquet(tiny_data / "probes.parquet")
    para = pd.read_parquet(tiny_data / "probes_paraphrase.parquet")
    ents = pd.read_parquet(tiny_data / "entities.parquet").set_index("entity_id")
    train_text = "\n".join(r["text"] for r in read_jsonl(tiny_data / "bios_train.jsonl"))
    for p in probes.itertuples():
        e = ents.loc[p.entity_id]
        assert p.answer == e[p.attribute] and e["name"] in p.prompt
        generic = p.prompt.replace(e["name"], "{name}")
        assert any(t.startswith(generic + " {" + p.attribute + "}") for t in TEMPLATES.biography[p.attribute])
        assert (p.orig_answer == e[f"orig_{p.attribute}"]) if p.type == "revised" else pd.isna(p.orig_answer)
    for prompt in para["prompt"].unique():  # held-out phrasing never appears in training text
        assert prompt not in train_text
    cells = probes.groupby(["type", "freq_group"])["entity_id"].nunique()
    assert (cells <= 20).all() and set(probes["type"]) == {"new", "revised"}
    assert set(para["entity_id"]) == set(probes["entity_id"])


@pytest.mark.slow
def test_multiple_choice(tiny_data):
    items = read_jsonl(tiny_data / "qa_multiple_choice.jsonl")
    ents = pd.read_parquet(tiny_data / "entities.parquet").set_index("entity_id")
    assert items
    for it in items:
        truth = ents.loc[it["entity_id"], it["attribute"]]
        assert len(it["options"]) == 4 and len(set(it["options"])) == 4
        assert it["options"][it["answer"]] == truth
        assert sum(o == truth for o in it["options"]) == 1
    # the answer position is not a giveaway
    positions = np.bincount([it["answer"] for it in items], minlength=4) / len(items)
    assert positions.min() > 0.15


@pytest.mark.slow
def test_true_false_is_balanced_and_paired(tiny_data):
    items = pd.DataFrame(read_jsonl(tiny_data / "qa_true_false.jsonl"))
    ents = pd.read_parquet(tiny_data / "entities.parquet").set_index("entity_id")
    assert items["label"].sum() * 2 == len(items)
    for (eid, attr), pair in items.groupby(["entity_id", "attribute"]):
        assert sorted(pair["label"]) == [False, True] and pair["template"].nunique() == 1
        truth = ents.loc[eid, attr]
        assert (pair[pair["label"]]["value"] == truth).all() and (pair[~pair["label"]]["value"] != truth).all()


@pytest.mark.slow
def test_circuit_pairs(tiny_data):
    pairs = pd.read_parquet(tiny_data / "circuit_pairs.parquet")
    tok = load_tokenizer(tiny_data / "tokenizer")
    assert len(pairs) and set(pairs["task"]) == {"city", "company", "major"}
    for p in pairs.itertuples():
        clean = tok(p.clean_prompt, add_special_tokens=False)["input_ids"]
        corrupt = tok(p.corrupted_prompt, add_special_tokens=False)["input_ids"]
        assert len(clean) == len(corrupt) == p.n_tokens
        assert p.clean_entity_id != p.corrupted_entity_id
        assert p.clean_label_token == first_answer_token(tok, p.clean_prompt, p.clean_label)
        assert p.corrupted_label_token == first_answer_token(tok, p.corrupted_prompt, p.corrupted_label)
        assert p.clean_label_token != p.corrupted_label_token
    report = json.loads((tiny_data / "circuit_pairs_report.json").read_text())
    for key, cell in report["cells"].items():
        task, etype, group = key.split("/")
        n = len(pairs[(pairs.task == task) & (pairs.type == etype) & (pairs.freq_group == group)])
        assert n == cell["paired"]
        assert (cell["paired"] + cell["no_same_length_subject"] + cell["no_partner_with_other_label_token"]
                == cell["subjects"])


@pytest.mark.slow
def test_tokenizer_first_token_report(tiny_data):
    report = json.loads((tiny_data / "tokenizer_report.json").read_text())
    tok = load_tokenizer(tiny_data / "tokenizer")
    pools = load_pools(REPO / "resources/pools")
    for attr, pool in (("city", "cities"), ("company", "companies")):
        firsts = [first_answer_token(tok, "The answer is", v) for v in pools[pool]]
        unique = sum(firsts.count(t) == 1 for t in firsts)
        assert report["first_tokens"][attr]["unique_first_token_values"] == unique
        assert report["first_tokens"][attr]["distinct_first_tokens"] == len(set(firsts))
    assert report["vocab_size"] == len(tok)
