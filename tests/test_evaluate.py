"""Evaluation and acquisition figures: metrics on hand-made cases, a deterministic oracle model whose
accuracy is known in advance, a tiny random GPT-2 end to end, the summary, and the figures."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import REPO, TINY, planned_jobs, random_checkpoint, snakemake
from kcircuits import ATTRIBUTES
from kcircuits.checkpoint import load_model
from kcircuits.cli import main as cli
from kcircuits.evaluate import aggregate, knowledge, metrics, scoring
from kcircuits.tokenizer import load_tokenizer

SETTINGS = {"seed": 0, "evaluate": {"batch_size": 16, "hit_k": 10, "max_new_tokens": 8, "generate_templates": 1,
                                    "full_value": {"templates": 1, "birthday_candidates": 12},
                                    "generation_probe": {"facts": 8, "samples": 3, "temperature": 1.0,
                                                         "max_new_tokens": 6}}}


# --- pure metrics -------------------------------------------------------------------------------

def test_rank_top1_and_hit_at_k_on_hand_made_logits():
    logits = torch.tensor([[0.1, 0.5, 0.3, 0.9],   # target 1: only 0.9 is higher -> rank 1
                           [2.0, 1.0, 1.0, 0.0],   # target 0 is the max -> rank 0
                           [1.0, 1.0, 0.0, 1.0],   # target 3 ties with ids 0 and 1 -> rank 0 (ties: target's favour)
                           [1.0, 2.0, 0.5, 2.0]])  # target 2: three tokens strictly higher, a tie among them -> 3
    ranks = metrics.target_rank(logits, torch.tensor([1, 0, 3, 2])).numpy()
    assert ranks.tolist() == [1, 0, 0, 3]
    assert metrics.hit_at(ranks, 1).tolist() == [False, True, True, False]
    assert metrics.hit_at(ranks, 2).tolist() == [True, True, True, False]
    targets = logits[torch.arange(4), torch.tensor([1, 0, 3, 2])]
    assert (metrics.hit_at(ranks, 1) == (logits.max(1).values == targets).numpy()).all()  # top-1: no logit above


def test_hit_at_10_on_a_fake_vocabulary():
    vocab = torch.randperm(50, generator=torch.Generator().manual_seed(0))  # token vocab[r] has rank r
    logits = torch.empty(50)
    logits[vocab] = torch.arange(50, 0, -1, dtype=torch.float)
    wanted = [0, 3, 9, 10, 49]
    ranks = metrics.target_rank(logits.repeat(5, 1), vocab[wanted]).numpy()
    assert ranks.tolist() == wanted
    assert metrics.hit_at(ranks, 1).tolist() == [True, False, False, False, False]
    assert metrics.hit_at(ranks, 10).tolist() == [True, True, True, False, False]
    logp = metrics.target_logprob(logits[None], vocab[[0]])
    assert logp.item() == pytest.approx(torch.log_softmax(logits, 0)[vocab[0]].item())


@pytest.mark.parametrize("generated, answer, expected", [
    (" Montreal. Ivan Hayden", "Montreal", True),
    (" June 10, 1940.\nMore", "June 10, 1940", True),
    (" Montreal", "Montreal", True),          # ran out of tokens: no period needed
    (" Mont", "Montreal", False),             # a prefix is not the value
    (" Montreal Canada.", "Montreal", False), # nor is a longer answer
    ("\nMontreal.", "Montreal", False),       # a newline ends the answer before the value
    (" montreal.", "Montreal", False),        # case-sensitive
])
def test_exact_match_cuts_at_the_first_period_or_newline(generated, answer, expected):
    assert metrics.exact_match(generated, answer) is expected


def test_choice_credit_picks_the_most_likely_option_and_splits_ties():
    scores = np.array([[-1.0, -2.0, -3.0, -4.0],     # truth 0 alone best -> 1
                       [-5.0, -1.0, -1.0, -9.0],     # truth 1 tied with 2 -> 1/2
                       [-5.0, -1.0, -0.5, -9.0],     # truth 0 not best -> 0
                       [-2.0, -2.0, -2.0, np.nan]])  # 3 real options all tied -> 1/3; NaN never wins
    credit = metrics.choice_credit(scores, np.array([0, 1, 0, 2]))
    assert credit.tolist() == pytest.approx([1.0, 0.5, 0.0, 1 / 3])
    per_char = metrics.length_normalised(np.array([-6.0, -6.0]), np.array([3, 6]))
    assert per_char.tolist() == [-2.0, -1.0]
    # length normalisation can change the winner: a long option with a lower total wins per character
    assert metrics.choice_credit(np.array([[-6.0, -4.0]]), np.array([0])).item() == 0.0
    assert metrics.choice_credit(metrics.length_normalised(np.array([[-6.0, -4.0]]), np.array([6, 2])),
                                 np.array([0])).item() == 1.0


def test_paired_true_false_credit():
    credit = metrics.paired_true_false_credit(np.array([-3.0, -2.0, -2.0]), np.array([-4.0, -1.0, -2.0]))
    assert credit.tolist() == [1.0, 0.0, 0.5]


def test_cell_means_average_items_and_skip_missing():
    items = pd.DataFrame({"type": ["new", "new", "new", "revised"], "acc": [1.0, 0.0, 1.0, np.nan],
                          "em": [np.nan, 1.0, 0.0, 1.0]})
    cells = metrics.cell_means(items, ["type"], ["acc", "em"]).set_index(["type", "metric"])
    assert cells.loc[("new", "acc"), "value"] == pytest.approx(2 / 3) and cells.loc[("new", "acc"), "n"] == 3
    assert cells.loc[("new", "em"), "value"] == 0.5 and cells.loc[("new", "em"), "n"] == 2
    assert ("revised", "acc") not in cells.index  # no item: no cell, rather than a 0/0
    assert cells.loc[("revised", "em"), "value"] == 1.0


# --- a deterministic oracle model -----------------------------------------------------------------

class OracleLM(torch.nn.Module):
    """Toy LM with the two entry points the scorer uses (base_model, get_output_embeddings).

    After a token prefix it has memorised it puts logit `confidence` on the memorised next token and
    0 elsewhere; after any other prefix all logits are 0 (a tie that top-1 resolves to token 0).
    """

    def __init__(self, vocab_size: int, confidence: float = 50.0):
        super().__init__()
        self.vocab_size, self.confidence, self.memory = vocab_size, confidence, {}
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device
        self.config = SimpleNamespace(max_position_embeddings=512)

    def memorise(self, tok, texts):
        for ids in scoring.encode(tok, texts):
            for p in range(len(ids) - 1):
                self.memory[tuple(ids[: p + 1])] = ids[p + 1]
        return self

    def believe(self, tok, prompt: str, answer: str):
        """After exactly `prompt`, predict the first token of ' answer' instead (the rest unchanged)."""
        from kcircuits.tokenizer import first_answer_token

        self.memory[tuple(scoring.encode(tok, [prompt])[0])] = first_answer_token(tok, prompt, answer)
        return self

    def base_model(self, input_ids, attention_mask):
        hidden = torch.zeros(*input_ids.shape, self.vocab_size)  # [B, L, V]: already the logits
        for b, ids in enumerate(input_ids.tolist()):
            for p in range(int(attention_mask[b].sum())):
                nxt = self.memory.get(tuple(ids[: p + 1]))
                if nxt is not None:
                    hidden[b, p, nxt] = self.confidence
        return SimpleNamespace(last_hidden_state=hidden)

    def get_output_embeddings(self):
        return torch.nn.Identity()


@pytest.fixture(scope="module")
def tiny(tiny_data):
    inputs = knowledge.load_inputs(*(tiny_data / f for f in ("entities.parquet", "probes.parquet",
                                   "probes_paraphrase.parquet", "bios_val.jsonl", "base_val.jsonl",
                                   "qa_multiple_choice.jsonl", "qa_true_false.jsonl")))
    return SimpleNamespace(dir=tiny_data, inputs=inputs, tok=load_tokenizer(tiny_data / "tokenizer"))


def _before(paragraph: dict, attr: str) -> str:
    """The paragraph's text before the value of `attr` (without the space that precedes it)."""
    return paragraph["text"][: paragraph["spans"][attr][0] - 1]


@pytest.mark.slow
def test_first_token_accuracy_with_an_oracle(tiny):
    entities = tiny.inputs.entities.set_index("entity_id")
    revised = next(p for p in tiny.inputs.bios_val if entities.at[p["entity_id"], "type"] == "revised")
    new = next(p for p in tiny.inputs.bios_val if entities.at[p["entity_id"], "type"] == "new")
    city = new["text"][slice(*new["spans"]["city"])]
    other_city = next(v for v in entities["city"] if v.split()[0] != city.split()[0])
    # The oracle knows both paragraphs, but believes another city for the new entity and the
    # ORIGINAL company for the revised one: every other value's first token is predicted.
    oracle = (OracleLM(len(tiny.tok)).memorise(tiny.tok, [new["text"], revised["text"]])
              .believe(tiny.tok, _before(new, "city"), other_city)
              .believe(tiny.tok, _before(revised, "company"), entities.at[revised["entity_id"], "orig_company"]))
    items = knowledge.paragraph_items(oracle, tiny.tok, [new, revised], tiny.inputs.entities, "bio",
                                      "current", 4, original_of_revised=True)
    got = items.set_index(["target", "entity_id", "attribute"])["bio_first_token"]
    for attr in ATTRIBUTES:
        assert got[("current", new["entity_id"], attr)] == (attr != "city")
        assert got[("current", revised["entity_id"], attr)] == (attr != "company")
        original_differs = entities.at[revised["entity_id"], f"orig_{attr}"].split()[0] != \
            entities.at[revised["entity_id"], attr].split()[0]
        # the original value is predicted where the oracle believes it, or where it begins like the new one
        assert got[("original", revised["entity_id"], attr)] == (attr == "company" or not original_differs)
    assert ("original", new["entity_id"], "city") not in got.index  # new entities have no original value
    assert len(items) == 2 * len(ATTRIBUTES) + len(ATTRIBUTES)


@pytest.mark.slow
def test_multiple_choice_and_true_false_with_an_oracle(tiny):
    mc = tiny.inputs.multiple_choice[:6]
    wrong = [(it["answer"] + 1) % len(it["options"]) for it in mc[:2]]  # the oracle believes a distractor
    known = [f"{it['cloze_prompt']} {it['options'][w]}" for it, w in zip(mc[:2], wrong)]
    known += [f"{it['cloze_prompt']} {it['options'][it['answer']]}" for it in mc[2:]]
    oracle = OracleLM(len(tiny.tok)).memorise(tiny.tok, known)
    got = knowledge.multiple_choice_items(oracle, tiny.tok, mc, 5)
    assert got["mc_accuracy"].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]

    tf = tiny.inputs.true_false[:8]  # 4 pairs, true statement first in each
    believed = [tf[1]["statement"], tf[2]["statement"], tf[4]["statement"], tf[6]["statement"]]  # pair 0 wrong
    oracle = OracleLM(len(tiny.tok)).memorise(tiny.tok, believed)
    got = knowledge.true_false_items(oracle, tiny.tok, tf, 3)
    assert got["tf_accuracy"].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="pairs"):
        knowledge.true_false_items(oracle, tiny.tok, tf[:3], 3)


# --- a tiny random GPT-2 ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt2(tiny, tmp_path_factory):
    path = random_checkpoint(tmp_path_factory.mktemp("ckpt"), tiny.tok, "epoch-000", 0.0)
    return load_model(path)


@pytest.mark.slow
def test_scores_match_an_unpadded_forward_pass(tiny, gpt2):
    texts = ["Ada Lovelace lives in", "Ivan works for Shell. He studied Dentistry", "Bo"]
    ids = scoring.encode(tiny.tok, texts)
    seq = np.array([0, 1, 1, 2])
    pos = np.array([len(ids[0]) - 1, 0, len(ids[1]) - 1, 0])
    target = np.array([5, ids[1][1], 7, 3])
    logprob, rank = scoring.score_tokens(gpt2, ids, seq, pos, target, batch_size=2, pad_id=tiny.tok.pad_token_id)
    with torch.no_grad():
        for q in range(len(seq)):
            logits = gpt2(torch.tensor([ids[seq[q]]])).logits[0, pos[q]]  # [V]
            assert logprob[q] == pytest.approx(torch.log_softmax(logits, 0)[target[q]].item(), abs=1e-4)
            assert rank[q] == int((logits > logits[target[q]]).sum())


@pytest.mark.slow
def test_left_padded_greedy_generation_matches_one_prompt_at_a_time(tiny, gpt2):
    prompts = tiny.inputs.probes["prompt"].iloc[[0, 7, 33, 80, 120]].tolist() + ["Ann lives in"]
    batched = scoring.greedy_continuations(gpt2, tiny.tok, prompts, 6, batch_size=6)
    single = [scoring.greedy_continuations(gpt2, tiny.tok, [p], 6, batch_size=1)[0] for p in prompts]
    assert batched == single and all(isinstance(t, str) for t in batched)


@pytest.mark.slow
def test_generation_budget_only_truncates(tiny, gpt2):
    prompts = tiny.inputs.probes["prompt"].iloc[:12].tolist()
    free = scoring.greedy_continuations(gpt2, tiny.tok, prompts, 8, batch_size=4)
    budgets = [1, 2, 3] * 4
    capped = scoring.greedy_continuations(gpt2, tiny.tok, prompts, 8, batch_size=4, budgets=budgets)
    assert all(f.startswith(c) for f, c in zip(free, capped))  # a budget cuts a continuation short, never alters it
    assert any(len(c) < len(f) for f, c in zip(free, capped))
    assert scoring.greedy_continuations(gpt2, tiny.tok, prompts, 8, batch_size=4, budgets=[20] * 12) == free


def _run_evaluate(tiny, checkpoint, out):
    d = tiny.dir
    assert cli(["evaluate", "--settings", json.dumps(SETTINGS), "--checkpoint", str(checkpoint), "--tokenizer",
                str(d / "tokenizer"), "--entities", str(d / "entities.parquet"), "--probes", str(d / "probes.parquet"),
                "--paraphrase", str(d / "probes_paraphrase.parquet"), "--bios-val", str(d / "bios_val.jsonl"),
                "--base-val", str(d / "base_val.jsonl"), "--mc", str(d / "qa_multiple_choice.jsonl"),
                "--tf", str(d / "qa_true_false.jsonl"), "--threads", "1", "--out", str(out / "cells.parquet"),
                "--out-entities", str(out / "entities.parquet"),
                "--out-generations", str(out / "generations.parquet")]) == 0
    return pd.read_parquet(out / "cells.parquet"), pd.read_parquet(out / "entities.parquet")


@pytest.fixture(scope="module")
def evaluated(tiny, tmp_path_factory):
    """Two random checkpoints evaluated through the CLI, as the evaluate rule does."""
    root = tmp_path_factory.mktemp("eval")
    runs = []
    for i, (name, epoch) in enumerate([("epoch-001", 1.0), ("epoch-000", 0.0)]):  # out of order on purpose
        ckpt = random_checkpoint(root / "checkpoints", tiny.tok, name, epoch, seed=i)
        (root / name).mkdir()
        runs.append(_run_evaluate(tiny, ckpt, root / name))
    return runs


@pytest.mark.slow
def test_evaluation_table_schema_and_counts(tiny, evaluated):
    cells, entity_table = evaluated[1]
    assert list(cells.columns) == ["seed", "checkpoint", "phase", "epoch", "global_step", "tokens_seen",
                                   *knowledge.CELL_KEYS, "metric", "value", "n", "chance"]
    assert (cells["checkpoint"] == "epoch-000").all() and (cells["epoch"] == 0.0).all()
    assert cells["value"].between(0, 1).all() and (cells["n"] > 0).all()
    n = cells.groupby(["metric", "target"])["n"].sum()
    probes, para, inp = tiny.inputs.probes, tiny.inputs.paraphrase, tiny.inputs
    pairs = probes[["entity_id", "attribute"]].drop_duplicates()
    assert n[("query_top1", "current")] == n[("query_hit@10", "current")] == len(probes)
    assert n[("query_top1", "original")] == probes["orig_answer"].notna().sum()
    assert n[("query_exact_match", "current")] == len(pairs)  # one generated template per entity x attribute
    assert n[("paraphrase_top1", "current")] == len(para)
    assert n[("bio_first_token", "current")] == len(inp.bios_val) * len(ATTRIBUTES)
    assert n[("base_first_token", "original")] == len(inp.base_val) * len(ATTRIBUTES)
    assert n[("mc_accuracy", "current")] == len(inp.multiple_choice)
    assert n[("tf_accuracy", "current")] == len(inp.true_false)
    assert set(cells.loc[cells["metric"] == "base_first_token", "type"]) == {"revised", "background"}
    chance = cells.groupby("metric")["chance"].first()
    assert chance["tf_accuracy"] == 0.5 and chance["mc_accuracy"] == 0.25 and np.isnan(chance["query_top1"])
    # full-value metrics: one template per fact, and the probed entities' paragraphs; chance by candidates
    probed = set(probes["entity_id"])
    for prefix, frame in (("query", probes), ("paraphrase", para)):
        assert n[(f"{prefix}_full_top1", "current")] == n[(f"{prefix}_full_mrr@10", "current")] == len(pairs)
    assert n[("bio_full_hit@10", "current")] == sum(p["entity_id"] in probed for p in inp.bios_val) * len(ATTRIBUTES)
    full = cells[cells["metric"] == "query_full_top1"].groupby("attribute")["chance"].first()
    cities = set(inp.entities["city"].dropna()) | set(inp.entities["orig_city"].dropna())
    assert full["birthday"] == 1 / 12 and full["city"] == 1 / len(cities)
    # Hit@10 can only add to top-1
    q = cells[cells["metric"].str.startswith("query_")].pivot_table(index=knowledge.CELL_KEYS, columns="metric",
                                                                    values="value")
    assert (q["query_hit@10"] >= q["query_top1"]).all() and (q["query_full_hit@10"] >= q["query_full_top1"]).all()
    assert set(entity_table["entity_id"]) == set(probes["entity_id"])
    assert entity_table[["query_top1", "query_full_top1", "query_exact_match", "bio_first_token",
                         "bio_full_top1"]].stack().between(0, 1).all()


@pytest.mark.slow
def test_generation_mask_is_fixed_and_complete(tiny):
    probes = tiny.inputs.probes
    mask = knowledge.generation_mask(probes, 2, seed=0)
    assert (mask == knowledge.generation_mask(probes, 2, seed=0)).all()
    assert (probes[mask].groupby(["entity_id", "attribute"]).size() == 2).all()
    assert knowledge.generation_mask(probes, None, seed=0).all()


@pytest.mark.slow
def test_summary_orders_checkpoints_and_weights_margins(evaluated):
    summary = aggregate.summarise([cells for cells, _ in evaluated])
    assert list(summary.columns) == aggregate.SUMMARY_COLUMNS
    assert summary.drop_duplicates("order")[["order", "checkpoint"]].values.tolist() == [
        [0, "epoch-000"], [1, "epoch-001"]]
    cells = evaluated[0][0]
    finest = cells[(cells["metric"] == "query_top1") & (cells["target"] == "current") & (cells["type"] == "new")]
    margin = summary[(summary["checkpoint"] == "epoch-001") & (summary["metric"] == "query_top1")
                     & (summary["target"] == "current") & (summary["type"] == "new")
                     & (summary["freq_group"] == "all") & (summary["attribute"] == "all")]
    assert len(margin) == 1 and margin["n"].item() == finest["n"].sum()
    assert margin["value"].item() == pytest.approx((finest["value"] * finest["n"]).sum() / finest["n"].sum())
    with pytest.raises(ValueError, match="twice"):
        aggregate.summarise([evaluated[0][0], evaluated[0][0]])
    entities = aggregate.summarise_entities([e for _, e in evaluated])
    assert entities.drop_duplicates("order")["checkpoint"].tolist() == ["epoch-000", "epoch-001"]


def test_with_margins_by_hand():
    cells = pd.DataFrame({"metric": "m", "type": "new", "freq_group": ["low", "low", "high"],
                          "attribute": ["city", "major", "city"], "value": [1.0, 0.0, 0.5], "n": [1, 3, 4],
                          "chance": np.nan})
    out = aggregate.with_margins(cells).set_index(["freq_group", "attribute"])["value"]
    assert out[("low", "all")] == 0.25 and out[("all", "city")] == 0.6 and out[("all", "all")] == 0.375
    # chance differs between attributes (full-value metrics): a margin's chance is item-weighted too
    margins = aggregate.with_margins(cells.assign(chance=[0.5, 0.25, 0.5]))
    chance = margins.set_index(["freq_group", "attribute"])["chance"]
    assert chance[("low", "all")] == 0.3125 and chance[("all", "city")] == 0.5 and chance[("all", "all")] == 0.40625


@pytest.mark.slow
def test_figures_are_written_as_pdf_and_png(evaluated, tiny, tmp_path):
    from kcircuits.data.entities import group_order
    from kcircuits.figures import acquisition as fig

    summary = aggregate.summarise([cells for cells, _ in evaluated])
    entities = aggregate.summarise_entities([e for _, e in evaluated])
    groups = group_order(tiny.inputs.entities)
    fig.plot_acquisition(summary, groups, 10, tmp_path / "a.pdf", tmp_path / "a.png")
    fig.plot_overwriting(summary, groups, tmp_path / "o.pdf", tmp_path / "o.png")
    fig.plot_heatmap(entities, groups, tmp_path / "h.pdf", tmp_path / "h.png")
    for stem in "aoh":
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"{stem}.png").stat().st_size > 10_000
    matrix, rows, checkpoints = fig.recall_matrix(entities, groups)
    assert (matrix.shape == (entities["entity_id"].nunique(), 2)
            and checkpoints["checkpoint"].tolist() == ["epoch-000", "epoch-001"])
    assert matrix.min() >= 0 and matrix.max() <= len(ATTRIBUTES)
    assert rows["type"].tolist() == sorted(rows["type"].tolist(), key=["new", "revised"].index)


@pytest.mark.slow
def test_snakemake_plans_one_evaluation_per_checkpoint(tmp_path):
    proc = snakemake(tmp_path, "results/tiny/figures/acquisition.pdf", "results/tiny/figures/entity_heatmap.png", "-n")
    counts = planned_jobs(proc)
    from kcircuits.config import load_config
    from kcircuits.train.schedule import checkpoint_names

    cfg = load_config([REPO / "config.yaml", TINY])
    assert counts["evaluate"] == len(checkpoint_names(cfg))
    assert counts["eval_summary"] == counts["figure_acquisition"] == counts["figure_entity_heatmap"] == 1


@pytest.mark.slow
def test_fused_gelu_leaves_the_model_unchanged(gpt2, tiny):
    from transformers import AutoModelForCausalLM

    path = gpt2.name_or_path
    plain = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    assert not any(isinstance(m, torch.nn.GELU) for m in plain.modules())
    assert any(isinstance(m, torch.nn.GELU) for m in gpt2.modules())
    ids = torch.tensor(scoring.encode(tiny.tok, ["Ada Lovelace works for Shell and lives in"]))
    with torch.no_grad():
        torch.testing.assert_close(gpt2(ids).logits, plain(ids).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_snakemake_evaluates_checkpoints_and_draws_figures(tiny, tmp_path):
    """The real rules on two exported-layout checkpoints (training itself is tested elsewhere)."""
    import shutil

    run = tmp_path / "results" / "tiny"
    shutil.copytree(tiny.dir, run / "data", copy_function=shutil.copy2)  # keep mtimes: nothing reruns
    for name, epoch in (("epoch-000", 0.0), ("epoch-001", 1.0)):
        random_checkpoint(run / "seed-0" / "checkpoints", tiny.tok, name, epoch, seed=int(epoch))
    one_epoch = tmp_path / "one_epoch.yaml"
    one_epoch.write_text("train:\n  continual: {epochs: 1, lr: 1.0e-3}\n")
    figures = [f"results/tiny/figures/{f}" for f in ("acquisition.pdf", "overwriting.png", "entity_heatmap.pdf",
                                                     "generation_probe.png")]
    proc = snakemake(tmp_path, *figures, configfiles=(TINY, one_epoch))
    assert "rule train_" not in proc.stdout + proc.stderr  # the checkpoints were used, not retrained
    for f in figures:
        assert (tmp_path / f).stat().st_size > 1000
    summary = pd.read_parquet(run / "seed-0" / "eval" / "summary.parquet")
    assert summary.drop_duplicates("order")["checkpoint"].tolist() == ["epoch-000", "epoch-001"]
    assert summary["seed"].unique().tolist() == [0]
    assert ((run / "logs/seed-0/eval/epoch-001.log").is_file()
            and (run / "benchmarks/seed-0/eval/epoch-000.tsv").is_file())
