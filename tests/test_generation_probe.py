"""The CounterFact-style generation probe (kcircuits.evaluate.generation): scoring on hand-made strings,
seeded sampling on a tiny random GPT-2, a scripted model whose generations are known, the rows, the fact
draw, the summary across checkpoints and the figure. One thread (the machine is shared)."""
from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import assert_figure_drawn_twice_alike, checkpoint_meta, random_checkpoint
from kcircuits import ATTRIBUTES
from kcircuits.cli import main as cli
from kcircuits.evaluate import generation, scoring
from kcircuits.evaluate.generation import (
    SUMMARY_COLUMNS,
    probe_facts,
    probe_rows,
    sample_generations,
    summarise_generations,
    target_appears,
)

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["Ada Lin", "Bo Quist", "Cy Rand", "Di Moss"]
CITIES = ["Paris", "Oslo", "Lima", "Rome"]
PROMPTS = ["Ada Lin lives in", "Bo Quist works for", "Cy Rand studied", "Di Moss was born in", "Ada Lin"]
SETTINGS = {"seed": 0, "evaluate": {"batch_size": 16, "hit_k": 10, "max_new_tokens": 8, "generate_templates": 1,
                                    "generation_probe": {"facts": 40, "samples": 5, "temperature": 1.0,
                                                         "max_new_tokens": 8}}}


@pytest.fixture(scope="module")
def tok():
    from kcircuits.tokenizer import train_bpe

    texts = [f"{n} lives in {c}. {n} works for Acme Corp. {n} studied Law." for n in NAMES for c in CITIES] * 3
    return train_bpe(texts, 300, 2)


@pytest.fixture(scope="module")
def gpt2(tok):
    """A random GPT-2 with weights large enough for peaked next-token distributions."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=32, n_head=2, n_positions=64,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                       pad_token_id=tok.pad_token_id))
    for p in model.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.3)
    return model.eval()


# --- scoring a generation ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, target, expected", [
    (" Paris.", "Paris", True),
    ("  Paris", " Paris ", True),             # both stripped
    (" in Paris, France", "Paris", True),     # a substring anywhere
    (" Parisian.", "Paris", True),            # substring, not word match
    (" paris.", "Paris", False),              # case-sensitive
    (" Par", "Paris", False),                 # a prefix of the target is not the target
    (" Temple University.", "Temple University", True),
    (" Temple College", "Temple University", False),
    ("", "Paris", False),
])
def test_target_appears_on_hand_made_strings(text, target, expected):
    assert target_appears(text, target) is expected


def test_an_empty_target_is_an_error():
    with pytest.raises(ValueError, match="empty target"):
        target_appears(" Paris", "  ")


# --- sampling a tiny random GPT-2 --------------------------------------------------------------------

def _sample(model, tok, seed, prompts=PROMPTS, k=4, temperature=1.0, batch_size=8, max_new_tokens=6):
    return sample_generations(model, tok, prompts, k, temperature, max_new_tokens, batch_size, seed)


def test_same_seed_same_generations_and_the_callers_random_state_is_kept(gpt2, tok):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = _sample(gpt2, tok, seed=7)
    assert torch.equal(torch.get_rng_state(), before)  # fork_rng: the caller's generator is untouched
    b = _sample(gpt2, tok, seed=7)
    assert a == b
    assert len(a) == len(PROMPTS) and all(len(g) == 4 and all(isinstance(t, str) for t in g) for g in a)
    c = _sample(gpt2, tok, seed=8)
    assert c != a  # 5 prompts x 4 samples of up to 6 tokens: equal by chance is (almost surely) impossible
    assert len({t for g in a for t in g}) > len(PROMPTS)  # samples of one prompt differ among themselves


def test_generations_stop_at_a_period_or_newline(gpt2, tok):
    """Nothing is generated after the token that brings a stop character (a byte-level BPE token never
    joins punctuation to a following word, so at most more punctuation or spaces follow it)."""
    texts = [t for g in _sample(gpt2, tok, seed=1, k=8, max_new_tokens=12, temperature=2.0) for t in g]
    stopped = [t for t in texts if "." in t or "\n" in t]
    assert stopped and len(stopped) < len(texts)  # the check below is not vacuous
    for text in stopped:
        cut = min(text.index(c) for c in ".\n" if c in text)
        assert re.fullmatch(r"[^\w]*", text[cut + 1:]), text


def test_near_zero_temperature_sampling_is_greedy(gpt2, tok):
    greedy = scoring.greedy_continuations(gpt2, tok, PROMPTS, 6, batch_size=8)
    sampled = _sample(gpt2, tok, seed=3, temperature=1e-4, k=3, batch_size=5)
    assert sampled == [[g] * 3 for g in greedy]
    assert any(g.strip() for g in greedy)  # not trivially empty


def test_more_tokens_than_positions_is_an_error(gpt2, tok):
    with pytest.raises(ValueError, match="positions"):
        _sample(gpt2, tok, seed=0, max_new_tokens=70)


# --- a scripted model: its generations are known in advance -------------------------------------------

class ScriptedLM(torch.nn.Module):
    """Stands in for a causal LM in sample_generations: `generate` returns each prompt followed by the
    next text of its script (per prompt text, one text per sample, cycling); it records its arguments."""

    def __init__(self, tok, scripts: dict[str, list[str]]):
        super().__init__()
        self.tok, self.scripts, self.calls = tok, scripts, []
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a device
        self.config = SimpleNamespace(max_position_embeddings=64)

    def generate(self, input_ids, attention_mask, num_return_sequences, **kwargs):
        self.calls.append({"num_return_sequences": num_return_sequences, **kwargs})
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = self.tok.decode([i for i, m in zip(ids, mask) if m])
            script = self.scripts[prompt]
            for s in range(num_return_sequences):
                rows.append(ids + self.tok.encode(script[s % len(script)], add_special_tokens=False))
        width = max(len(r) for r in rows)
        return torch.tensor([r + [self.tok.pad_token_id] * (width - len(r)) for r in rows])  # [B * k, L + new]


def _probes() -> pd.DataFrame:
    """Four revised facts (two prompts each) and one new entity, as data/probes.parquet."""
    rows = []
    for e, (name, new, old) in enumerate([("Ada Lin", "Paris", "Oslo"), ("Bo Quist", "Lima", "Rome"),
                                          ("Cy Rand", "Oslo", "Paris"), ("Di Moss", "Rome", "Lima")]):
        for t, template in enumerate(["{} lives in", "{} resides in"]):
            rows.append({"entity_id": e, "name": name, "type": "revised", "freq_group": "low", "frequency": 1,
                         "attribute": "city", "template": t, "prompt": template.format(name), "answer": new,
                         "orig_answer": old})
    rows.append({"entity_id": 9, "name": "Ed Vy", "type": "new", "freq_group": "high", "frequency": 4,
                 "attribute": "city", "template": 0, "prompt": "Ed Vy lives in", "answer": "Lima", "orig_answer": None})
    return pd.DataFrame(rows)


def test_a_model_that_writes_the_new_value_succeeds_and_the_original_does_not(tok):
    probes = _probes()
    scripts = {p: [f" {a}."] for p, a in zip(probes["prompt"], probes["answer"])}
    model = ScriptedLM(tok, scripts)
    rows = generation.generation_probe(model, tok, probes, SETTINGS)
    assert len(rows) == 2 * 4  # the four revised facts (all: fewer than 40), new and original target each
    new, original = rows[rows["target_kind"] == "new"], rows[rows["target_kind"] == "original"]
    assert (new["success"] == 1.0).all() and (new["hits"] == 5).all() and (new["rate"] == 1.0).all()
    assert (original["success"] == 0.0).all() and (original["hits"] == 0).all()
    assert all(list(g) == [f" {t}."] * 5 for g, t in zip(new["generations"], new["target"]))
    call = model.calls[0]  # plain temperature sampling, as configured
    assert call["do_sample"] and call["top_k"] == 0 and call["top_p"] == 1.0 and call["temperature"] == 1.0
    assert call["num_return_sequences"] == 5 and call["max_new_tokens"] == 8
    assert isinstance(call["stopping_criteria"][0], scoring.StopAtTokens)


def test_hits_count_the_samples_of_their_own_prompt(tok):
    """Samples come back prompt-major ([B * k]): each prompt's k texts must be its own, in order."""
    scripts = {"Ada Lin lives in": [" Oslo.", " Paris.", " Oslo, Paris.", " Rome.", " Lima."],
               "Bo Quist resides in": [" Rome."] * 5, "Cy Rand lives in": [" Lima Oslo."] * 5}
    prompts = pd.DataFrame({"prompt": list(scripts), "answer": ["Paris", "Lima", "Oslo"],
                            "orig_answer": ["Oslo", "Rome", None]})
    for batch_size in (4, 15):  # one prompt per batch (4 // k), all three in one
        texts = sample_generations(ScriptedLM(tok, scripts), tok, prompts["prompt"].tolist(), 5, 1.0, 8, batch_size, 0)
        assert texts == [scripts[p] for p in prompts["prompt"]]
    rows = probe_rows(prompts, texts).set_index(["prompt", "target_kind"])
    assert rows.loc[("Ada Lin lives in", "new"), ["hits", "success", "rate"]].tolist() == [2, 1.0, 0.4]
    assert rows.loc[("Ada Lin lives in", "original"), ["hits", "success", "rate"]].tolist() == [2, 1.0, 0.4]
    assert rows.loc[("Bo Quist resides in", "new"), ["hits", "success", "rate"]].tolist() == [0, 0.0, 0.0]
    assert rows.loc[("Bo Quist resides in", "original"), "rate"] == 1.0
    assert ("Cy Rand lives in", "original") not in rows.index  # no original value: no row
    assert rows.loc[("Cy Rand lives in", "new"), "hits"] == 5


# --- rows, facts ---------------------------------------------------------------------------------------

def test_probe_rows_columns_and_generic_targets(tmp_path):
    probes = _probes()
    gens = [[" Paris.", " Oslo."]] * len(probes)
    rows = probe_rows(probes, gens)
    assert list(rows.columns) == ["entity_id", "attribute", "type", "freq_group", "template", "prompt",
                                  "target_kind", "target", "generations", "hits", "success", "rate"]
    assert len(rows) == 2 * 8 + 1  # revised prompts: both targets; the new entity: its value only
    assert rows["hits"].dtype == np.int64 and rows["success"].dtype == float
    # another study's prompts: only a prompt and one value column
    other = probe_rows(pd.DataFrame({"prompt": ["Doc 1 says", "Doc 2 says"], "value": ["Oslo", "Rome"]}),
                       [[" Oslo."], [" Oslo."]], targets={"value": "value"})
    assert list(other.columns) == ["prompt", "target_kind", "target", "generations", "hits", "success", "rate"]
    assert other["success"].tolist() == [1.0, 0.0] and other["target_kind"].tolist() == ["value", "value"]
    # the generations are a list column a reader gets back from the parquet
    rows.to_parquet(tmp_path / "rows.parquet")
    back = pd.read_parquet(tmp_path / "rows.parquet")
    assert [list(g) for g in back["generations"]] == [list(g) for g in rows["generations"]]
    with pytest.raises(ValueError, match="generation lists"):
        probe_rows(probes, gens[:-1])


def _many_probes(n_entities: int = 30) -> pd.DataFrame:
    rows = []
    for e in range(n_entities):
        kind = "revised" if e % 3 else "new"
        for attr in ATTRIBUTES:
            for t in range(3):
                rows.append({"entity_id": e, "type": kind, "freq_group": "low", "attribute": attr, "template": t,
                             "prompt": f"E{e} {attr} t{t}", "answer": f"A{e}{attr}",
                             "orig_answer": f"O{e}{attr}" if kind == "revised" else None})
    return pd.DataFrame(rows)


def test_probe_facts_one_prompt_per_revised_fact_the_same_draw_and_balanced():
    probes = _many_probes()
    facts = probe_facts(probes, 12, seed=0)
    assert len(facts) == 12 and not facts.duplicated(["entity_id", "attribute"]).any()
    assert (facts["type"] == "revised").all() and facts["orig_answer"].notna().all()
    assert facts.equals(probe_facts(probes, 12, seed=0))  # every checkpoint probes the same prompts
    assert facts.equals(probe_facts(probes.sample(frac=1, random_state=1), 12, seed=0))  # not the row order
    counts = facts["attribute"].value_counts()
    assert counts.max() - counts.min() <= 1  # spread over the attributes
    keys = facts[["entity_id", "attribute"]].values.tolist()
    assert keys == sorted(keys)
    other = probe_facts(probes, 12, seed=1)
    assert not other[["entity_id", "attribute", "template"]].equals(facts[["entity_id", "attribute", "template"]])
    all_facts = probe_facts(probes, 10_000, seed=0)  # fewer exist: all of them
    assert len(all_facts) == 20 * len(ATTRIBUTES) and all_facts["template"].nunique() == 3  # templates vary
    assert probe_facts(probes[probes["type"] == "new"], 5, seed=0).empty


# --- the summary across checkpoints ------------------------------------------------------------------

def _checkpoint_rows(name: str, epoch: float, step: int, success: list[float], rate: list[float],
                     seed: int = 0) -> pd.DataFrame:
    """A per-checkpoint table: two facts (city, major) x two target kinds, rows in that order."""
    rows = pd.DataFrame({"entity_id": [1, 1, 2, 2], "attribute": ["city", "city", "major", "major"],
                         "target_kind": ["new", "original", "new", "original"], "success": success, "rate": rate})
    meta = checkpoint_meta(seed, name, epoch, step)
    return rows.assign(**meta)[list(meta) + list(rows.columns)]


def test_summary_orders_checkpoints_and_averages_per_kind_and_attribute():
    late = _checkpoint_rows("epoch-002", 2.0, 20, [1.0, 0.0, 1.0, 1.0], [0.8, 0.0, 0.2, 0.6])
    early = _checkpoint_rows("step-000005", 0.5, 5, [0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.4, 1.0])
    summary = summarise_generations([late, early])
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert summary.drop_duplicates("order")[["order", "checkpoint"]].values.tolist() == [[0, "step-000005"],
                                                                                         [1, "epoch-002"]]
    got = summary.set_index(["checkpoint", "target_kind", "attribute"])
    assert got.loc[("epoch-002", "new", "all"), ["success", "rate", "n"]].tolist() == pytest.approx([1.0, 0.5, 2])
    assert got.loc[("epoch-002", "original", "all"), ["success", "rate"]].tolist() == pytest.approx([0.5, 0.3])
    assert got.loc[("epoch-002", "original", "city"), ["success", "rate", "n"]].tolist() == [0.0, 0.0, 1]
    assert got.loc[("step-000005", "new", "all"), ["success", "rate"]].tolist() == pytest.approx([0.5, 0.2])
    assert len(summary) == 2 * 2 * 3  # checkpoints x kinds x (two attributes + all)
    with pytest.raises(ValueError, match="several training seeds"):
        summarise_generations([late, _checkpoint_rows("epoch-001", 1.0, 10, [1.0] * 4, [1.0] * 4, seed=1)])
    empty = summarise_generations([late.iloc[:0]])
    assert empty.empty and list(empty.columns) == SUMMARY_COLUMNS


def test_eval_summary_command_writes_the_generation_table(tmp_path):
    """`kcircuits eval-summary` joins the generation tables (the other two joins get tiny stand-ins)."""
    from kcircuits.evaluate.aggregate import SUMMARY_COLUMNS as CELL_SUMMARY

    paths = {}
    for name, epoch, step in (("epoch-001", 1.0, 10), ("epoch-000", 0.0, 0)):
        meta = checkpoint_meta(0, name, epoch, step)
        cells = pd.DataFrame([{**meta, "target": "current", "type": "new", "freq_group": "low", "attribute": "city",
                               "metric": "query_top1", "value": 0.5, "n": 2, "chance": np.nan}])
        entities = pd.DataFrame([{**meta, "target": "current", "entity_id": 1, "attribute": "city", "x": 1.0}])
        for kind, table in (("cells", cells), ("entities", entities),
                            ("generations", _checkpoint_rows(name, epoch, step, [1.0] * 4, [0.5] * 4))):
            paths.setdefault(kind, []).append(str(tmp_path / f"{kind}-{name}.parquet"))
            table.to_parquet(paths[kind][-1])
    out = {kind: tmp_path / f"summary-{kind}.parquet" for kind in ("cells", "entities", "generations")}
    assert cli(["eval-summary", "--settings", json.dumps(SETTINGS), "--evals", *paths["cells"],
                "--entity-evals", *paths["entities"], "--generation-evals", *paths["generations"],
                "--out", str(out["cells"]), "--out-entities", str(out["entities"]),
                "--out-generations", str(out["generations"])]) == 0
    assert list(pd.read_parquet(out["cells"]).columns) == CELL_SUMMARY  # the other tables as before
    summary = pd.read_parquet(out["generations"])
    assert summary["checkpoint"].drop_duplicates().tolist() == ["epoch-000", "epoch-001"]
    assert (summary["rate"] == 0.5).all() and (summary["success"] == 1.0).all()


# --- the figure --------------------------------------------------------------------------------------

def test_figure_draws_from_a_hand_made_summary_with_the_same_bytes_twice(tmp_path):
    tables = []
    for seed in (0, 1):  # two training seeds: a band
        checkpoints = [_checkpoint_rows(name, epoch, round(10 * epoch), [min(1.0, epoch), 1 - epoch / 3, 1.0, 0.0],
                                        [epoch / 3, 0.5, 0.2 * seed, 0.1], seed=seed)
                       for name, epoch in (("epoch-000", 0.0), ("epoch-001", 1.0), ("epoch-002", 2.0))]
        tables.append(tmp_path / f"seed-{seed}.parquet")
        summarise_generations(checkpoints).to_parquet(tables[-1])
    entities = tmp_path / "entities.parquet"
    pd.DataFrame({"entity_id": [1], "freq_group": ["low"]}).to_parquet(entities)
    settings = {"seed": 0, "evaluate": SETTINGS["evaluate"]}
    assert_figure_drawn_twice_alike(["figure", "generation_probe", "--settings", json.dumps(settings),
                                     "--table", *map(str, tables), "--entities", str(entities)], tmp_path)
    from kcircuits.figures.generation import panels

    assert panels(pd.read_parquet(tables[0])) == ["all", "city", "major"]


def test_figure_of_an_empty_summary_says_so(tmp_path):
    from kcircuits.figures.generation import plot_generation_probe

    plot_generation_probe(pd.DataFrame(columns=SUMMARY_COLUMNS), 5, tmp_path / "e.pdf", tmp_path / "e.png")
    assert (tmp_path / "e.pdf").read_bytes()[:5] == b"%PDF-"


# --- the evaluate command on the tiny world (real Snakemake data) -------------------------------------

@pytest.mark.slow
def test_evaluate_command_writes_the_generation_table(tiny_data, tmp_path):
    from kcircuits.tokenizer import load_tokenizer

    d, tok = tiny_data, load_tokenizer(tiny_data / "tokenizer")
    ckpt = random_checkpoint(tmp_path / "checkpoints", tok, "epoch-001", 1.0)
    out = {kind: tmp_path / f"{kind}.parquet" for kind in ("cells", "entities", "generations")}
    assert cli(["evaluate", "--settings", json.dumps(SETTINGS), "--checkpoint", str(ckpt), "--tokenizer",
                str(d / "tokenizer"), "--entities", str(d / "entities.parquet"), "--probes", str(d / "probes.parquet"),
                "--paraphrase", str(d / "probes_paraphrase.parquet"), "--bios-val", str(d / "bios_val.jsonl"),
                "--base-val", str(d / "base_val.jsonl"), "--mc", str(d / "qa_multiple_choice.jsonl"),
                "--tf", str(d / "qa_true_false.jsonl"), "--threads", "1", "--out", str(out["cells"]),
                "--out-entities", str(out["entities"]), "--out-generations", str(out["generations"])]) == 0
    rows = pd.read_parquet(out["generations"])
    probes = pd.read_parquet(d / "probes.parquet")
    n_facts = min(40, len(probes.loc[probes["orig_answer"].notna(), ["entity_id", "attribute"]].drop_duplicates()))
    assert list(rows.columns[:6]) == ["seed", "checkpoint", "phase", "epoch", "global_step", "tokens_seen"]
    assert (rows["checkpoint"] == "epoch-001").all() and len(rows) == 2 * n_facts
    assert rows.groupby("target_kind").size().to_dict() == {"new": n_facts, "original": n_facts}
    assert (rows["generations"].map(len) == 5).all() and rows["rate"].between(0, 1).all()
    assert (rows["success"] == (rows["hits"] > 0)).all()
