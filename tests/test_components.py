"""Specialised heads and the logit lens (kcircuits.analysis.heads / logit_lens / components_stage).
Tiny random models; one thread (the machine is shared)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import REPO, TINY, V, planned_jobs, random_checkpoint, random_model, snakemake
from kcircuits.analysis.heads import (
    HeadSums,
    PromptBatch,
    circuit_roles,
    classify,
    head_ratio,
    prompt_batches,
    source_contributions,
    split_by_source,
    subject_positions,
    target_direction,
    trace,
)
from kcircuits.analysis.logit_lens import LensSums, lens
from kcircuits.circuits.graph import Circuit, Graph, select_top_n
from kcircuits.circuits.model import CircuitModel

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = [("gpt2", {}), ("gpt_neox", {}), ("llama", {"num_key_value_heads": 2})]


def padded_batch(seed: int = 0) -> PromptBatch:
    """Three prompts, two right-padded; subject = the first two tokens of each."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (3, 7), generator=g)
    last = torch.tensor([6, 4, 2])
    subject = torch.zeros(3, 7, dtype=torch.bool)
    subject[:, :2] = True
    for i in range(3):
        ids[i, last[i] + 1:] = 0
    return PromptBatch(ids, last, torch.randint(1, V, (3,), generator=g), subject)


def frozen_norm_logit(hf, x_last: torch.Tensor, c: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Written out per norm, independently of target_direction: the target logit of a write c [B, d]
    through the final norm with its scale frozen at x_last [B, d]."""
    if hf.config.model_type == "llama":
        norm = hf.model.norm
        y = c * (x_last.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon).rsqrt() * norm.weight
    else:
        norm = hf.transformer.ln_f if hf.config.model_type == "gpt2" else hf.gpt_neox.final_layer_norm
        sd = (x_last.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt()
        y = (c - c.mean(-1, keepdim=True)) / sd * norm.weight
    return (y * hf.get_output_embeddings().weight[label]).sum(-1)


# ---- head decomposition ---------------------------------------------------------------------------------
@pytest.mark.parametrize("family,extra", FAMILIES)
def test_per_source_contributions_sum_to_each_heads_direct_contribution(family, extra):
    hf = random_model(family, std=0.3, **extra)
    model, b = CircuitModel(hf), padded_batch()
    rows = torch.arange(len(b))
    tr = trace(model, b.ids, b.last)
    logits, outs = model.run(b.ids, b.last, record=True)  # outs [n_fwd, B, T, d]: the model's own head writes
    with torch.no_grad():
        hf_logits = torch.stack([hf(b.ids[i:i + 1, : b.last[i] + 1]).logits[0, -1] for i in range(len(b))])
    torch.testing.assert_close(tr.logits, hf_logits, atol=1e-4, rtol=1e-4)
    x_last = tr.stream[-1, rows, b.last]  # [B, d]
    torch.testing.assert_close(x_last, outs[:, rows, b.last].sum(0) + model.bias_before[-1], atol=1e-5, rtol=1e-5)
    u = target_direction(model, x_last, b.label)
    contrib = source_contributions(model, tr, u)  # [L, B, H, T]
    assert (contrib[..., 2:].abs().sum() > 0) and torch.all(contrib[:, 2, :, 3:] == 0)  # padding carries nothing
    for layer in range(model.n_layers):
        for h in range(model.n_heads):
            direct = frozen_norm_logit(hf, x_last, outs[model.graph.head_node(layer, h), rows, b.last], b.label)
            torch.testing.assert_close(contrib[layer, :, h].sum(-1), direct, atol=1e-5, rtol=1e-4)
    subj, rel = split_by_source(contrib, b.subject, b.last)
    torch.testing.assert_close(subj + rel, contrib.sum(-1))
    # completeness: every component's frozen-norm logit plus the norm's bias term is the target logit
    total = (outs[:, rows, b.last] @ u.T).diagonal(dim1=1, dim2=2).sum(0) + model.bias_before[-1] @ u.T
    beta = getattr(model.final_norm, "bias", None)
    if beta is not None:
        total = total + hf.get_output_embeddings().weight[b.label] @ beta
    torch.testing.assert_close(total, logits[rows, b.label], atol=1e-4, rtol=1e-4)


def test_role_thresholds():
    ratio = [20, -20, 0.05, -0.05, 1.0, 10.0, 0.1, -5, math.inf, -math.inf, math.nan]
    assert list(classify(ratio, 10.0, 0.1)) == ["mover", "mover", "relation", "relation", "mixture", "mixture",
                                                 "mixture", "mixture", "mover", "mover", "mixture"]
    assert list(classify([3.0, 0.4], 2.0, 0.5)) == ["mover", "relation"]
    np.testing.assert_array_equal(head_ratio([1.0, 1.0, 0.0, -2.0], [2.0, 0.0, 0.0, 4.0]),
                                  [0.5, math.inf, math.nan, -0.5])
    with pytest.raises(ValueError):
        classify([1.0], 0.1, 10.0)
    with pytest.raises(ValueError):  # the config rejects equal thresholds too
        classify([1.0], 1.0, 1.0)


def test_a_head_attending_only_to_the_subject_is_a_mover():
    """Head 0 reads feature 0 (+3 on subject tokens, -3 elsewhere) with a large key/query: all its
    attention goes to the subject. Head 1 has the opposite query: it reads only the relation words."""
    hf = random_model("gpt2", layers=1, std=0.15)
    d, dh = 32, 8
    subject_tokens = torch.arange(1, 11)
    with torch.no_grad():
        t = hf.transformer
        t.wte.weight[:, 0] = -3.0
        t.wte.weight[subject_tokens, 0] = 3.0
        t.wpe.weight[:, 0] = 0.0
        w, bias = t.h[0].attn.c_attn.weight, t.h[0].attn.c_attn.bias  # [d, 3d]: columns (q|k|v, head, e)
        w[:, : 2 * dh] = 0.0  # queries of heads 0 and 1: constant (their bias)
        bias[: 2 * dh] = 0.0
        bias[0], bias[dh] = 10.0, -10.0
        w[:, d: d + 2 * dh] = 0.0  # keys of heads 0 and 1: feature 0 only
        bias[d: d + 2 * dh] = 0.0
        w[0, d], w[0, d + dh] = 10.0, 10.0
    model = CircuitModel(hf)
    g = torch.Generator().manual_seed(3)
    n = 8
    ids = torch.cat([subject_tokens[torch.randint(0, 10, (n, 2), generator=g)],
                     torch.randint(11, V, (n, 3), generator=g)], dim=1)  # [n, 5]: subject, then relation
    subject = torch.zeros(n, 5, dtype=torch.bool)
    subject[:, :2] = True
    batch = PromptBatch(ids, torch.full((n,), 4), torch.randint(1, V, (n,), generator=g), subject)
    sums = HeadSums(1, 4)
    sums.add(model, trace(model, ids, batch.last), batch)
    table = sums.frame(10.0, 0.1).set_index("head")
    assert table.loc[0, "subject_attention"] == pytest.approx(1.0) and table.loc[1, "subject_attention"] < 1e-6
    assert table.loc[0, "subject"] != 0 and table.loc[1, "relation"] != 0
    assert table.loc[0, "role"] == "mover" and table.loc[1, "role"] == "relation"
    assert abs(table.loc[0, "ratio"]) > 1e3 and abs(table.loc[1, "ratio"]) < 1e-3
    assert set(table["role"]) <= {"mover", "relation", "mixture"} and (table["n_prompts"] == n).all()


def test_head_sums_do_not_depend_on_batching():
    model, b = CircuitModel(random_model("gpt2")), padded_batch(5)
    one = HeadSums(2, 4)
    one.add(model, trace(model, b.ids, b.last), b)
    two = HeadSums(2, 4)
    for i in range(len(b)):
        part = PromptBatch(b.ids[i:i + 1], b.last[i:i + 1], b.label[i:i + 1], b.subject[i:i + 1])
        two.add(model, trace(model, part.ids, part.last), part)
    pd.testing.assert_frame_equal(one.frame(10, 0.1), two.frame(10, 0.1), rtol=1e-5)


# ---- logit lens -------------------------------------------------------------------------------------------
def test_logit_lens_matches_the_real_model():
    hf = random_model("gpt2", layers=3, std=0.3)
    model, b = CircuitModel(hf), padded_batch(2)
    out = lens(model, trace(model, b.ids, b.last), b)  # each [L + 1, B]
    assert out["rank"].shape == (4, 3)
    for i in range(len(b)):
        with torch.no_grad():
            res = hf(b.ids[i:i + 1, : b.last[i] + 1], output_hidden_states=True)
        target = int(b.label[i])
        final = res.logits[0]  # [T, V]: the real model's logits
        assert int(out["rank"][-1, i]) == int((final[-1] > final[-1, target]).sum()) + 1
        assert float(out["prob"][-1, i]) == pytest.approx(float(final[-1].softmax(-1)[target]), rel=1e-4)
        # hidden_states[l]: the stream before block l; the last one already has ln_f applied
        streams = [hf.transformer.ln_f(h[0]) for h in res.hidden_states[:-1]] + [res.hidden_states[-1][0]]
        for layer, normed in enumerate(streams):
            logits = hf.lm_head(normed)  # [T, V]
            ranks = (logits > logits[:, target: target + 1]).sum(-1) + 1  # [T]
            assert int(out["rank"][layer, i]) == int(ranks[-1])
            assert int(out["rank_at_subject"][layer, i]) == int(ranks[:2].min())
    sums = LensSums()
    sums.add(model, trace(model, b.ids, b.last), b)
    frame = sums.frame()
    assert list(frame["layer"]) == [-1, 0, 1, 2] and (frame["n_prompts"] == 3).all()
    assert frame["rank"].iloc[-1] == pytest.approx(float(out["rank"][-1].double().mean()))


# ---- subject spans and circuit roles ------------------------------------------------------------------------
NAMES = ["Zelda Carlisle Ormsby", "Linus Gray Vandermeer", "Cyrus Beckett Halloran", "Ada Lin", "Bo Quist"]
TEMPLATES = {"city": "{name} lives in", "major": "{name} majored in", "home": "The home of {name} is"}


@pytest.fixture(scope="module")
def tokenizer():
    from kcircuits.tokenizer import train_bpe

    texts = [t.format(name=n) + " Paris." for n in NAMES for t in TEMPLATES.values()] * 3
    return train_bpe(texts, 300, 2)


@pytest.mark.parametrize("template", TEMPLATES.values())
def test_subject_positions_cover_exactly_the_name(tokenizer, template):
    for name in NAMES:
        prompt = template.format(name=name)
        ids, positions = subject_positions(tokenizer, prompt, template)
        assert positions == list(range(positions[0], positions[-1] + 1))
        assert tokenizer.decode([ids[p] for p in positions]).strip() == name
        rest = tokenizer.decode([t for p, t in enumerate(ids) if p not in positions])
        assert " ".join(rest.split()) == " ".join(template.replace("{name}", "").split())
    with pytest.raises(ValueError):
        subject_positions(tokenizer, "Somebody works for", template)


def test_circuit_roles_count_in_circuit_heads():
    g = Graph(2, 2)
    heads = pd.DataFrame([{"task": "city", "type": "new", "freq_group": "low", "node": g.head_name(layer, h),
                           "layer": layer, "head": h, "role": role} for (layer, h), role in
                          zip([(0, 0), (0, 1), (1, 0), (1, 1)], ["mover", "relation", "mover", "mixture"])])
    names = {n: i for i, n in enumerate(g.forward_names)}
    slots = {n: i for i, n in enumerate(g.backward_names)}
    edges = [("input", "a0.h0<v>"), ("a0.h0", "a1.h0<q>"), ("a1.h0", "logits"), ("input", "m1")]  # a0.h1, a1.h1 out
    mask = torch.zeros(g.n_forward, g.n_backward, dtype=torch.bool)
    for parent, child in edges:
        mask[names[parent], slots[child]] = True
    circuit = Circuit(g, mask)
    table = pd.DataFrame([{"task": "city", "type": "new", "freq_group": "low", "budget": "4", **r}
                          for r in circuit.rows()])
    roles, layers = circuit_roles(heads, table, g)
    assert circuit.n_nodes == 5  # input, a0.h0, a1.h0, m1, logits
    got = roles.set_index("role")
    assert got.loc["mover", "count"] == 2 and got.loc["relation", "count"] == 0 and got.loc["mixture", "count"] == 0
    assert got.loc["mover", "proportion"] == pytest.approx(2 / 5) and (got["n_nodes"] == 5).all()
    per = layers.set_index(["layer", "role"])["count"]
    assert len(per) == 2 * 3 and per[(0, "mover")] == 1 and per[(1, "mover")] == 1 and per.sum() == 2


# ---- the stage through the CLI, as the rules call it ------------------------------------------------------
def test_components_stage_by_hand(tokenizer, tmp_path):
    """measure (two checkpoints) -> summary -> the three figures, through kcircuits.cli.main."""
    from kcircuits.checkpoint import load_model
    from kcircuits.circuits.evaluate import ProbeBatch, hit_at_k
    from kcircuits.circuits.store import circuits_frame, circuits_from_frame
    from kcircuits.cli import main
    from kcircuits.config import load_config, stage_settings

    tok = tokenizer
    tasks = {"city": TEMPLATES["city"], "major": TEMPLATES["major"]}
    g = torch.Generator().manual_seed(0)
    rows = [{"task": task, "type": etype, "freq_group": group, "clean_prompt": template.format(name=name),
             "n_tokens": len(tok(template.format(name=name), add_special_tokens=False)["input_ids"]),
             "clean_label_token": int(torch.randint(2, len(tok), (1,), generator=g))}
            for task, template in tasks.items() for etype in ("new", "revised") for group in ("low", "high")
            for name in NAMES[:3]]
    pd.DataFrame(rows).to_parquet(tmp_path / "pairs.parquet")
    pd.DataFrame({"freq_group": ["low", "high", None], "frequency": [1, 9, 3]}).to_parquet(tmp_path / "ent.parquet")
    tok.save_pretrained(tmp_path / "tokenizer")
    cfg = load_config([REPO / "config.yaml", TINY])
    cfg["circuits"].update(batch_size=2, edge_budgets=[0.2, 30])
    cfg["circuit_pairs"]["tasks"] = tasks
    settings = json.dumps(stage_settings(cfg, "analysis"))

    def cli(*command, **files):
        argv = [*command, "--settings", settings]
        for key, value in files.items():
            argv += [f"--{key.replace('_', '-')}", *(map(str, value) if isinstance(value, list) else [str(value)])]
        assert main(argv) == 0

    graph, cells = Graph(2, 2), sorted({f"{r['task']}/{r['type']}/{r['freq_group']}" for r in rows})
    outs = {}
    for i, epoch in enumerate((0.0, 1.0)):
        ckpt = random_checkpoint(tmp_path, tok, f"epoch-00{i}", epoch, seed=i, train_seed=7, layers=2, n_positions=64)
        scores = {key: torch.randn(graph.n_forward, graph.n_backward, generator=g) for key in cells}
        table = pd.concat([circuits_frame({k: select_top_n(s, graph, b) for k, s in scores.items()}, scores)
                           .assign(budget=str(b)) for b in (0.2, 30)], ignore_index=True)
        table.assign(checkpoint=ckpt.name).to_parquet(tmp_path / f"circuits{i}.parquet")
        outs[i] = {t: tmp_path / ckpt.name / f"{t}.parquet" for t in ("heads", "roles", "layers", "lens")}
        cli("components", "measure", threads=1, checkpoint=ckpt, tokenizer=tmp_path / "tokenizer",
            pairs=tmp_path / "pairs.parquet", circuits=tmp_path / f"circuits{i}.parquet",
            **{f"out_{t}": p for t, p in outs[i].items()})
    heads = pd.read_parquet(outs[0]["heads"])
    assert len(heads) == len(cells) * 4 and set(heads["role"]) <= {"mover", "relation", "mixture"}
    assert ((heads["seed"] == 7).all() and (heads["n_prompts"] == 3).all()
            and list(heads.columns[:2]) == ["seed", "checkpoint"])
    roles = pd.read_parquet(outs[1]["roles"])
    assert len(roles) == len(cells) * 2 * 3
    np.testing.assert_allclose(roles["proportion"], roles["count"] / roles["n_nodes"])
    assert (roles["n_nodes"] == 0).any()  # these random scores prune one circuit to nothing: still reported
    circuits = pd.read_parquet(tmp_path / "circuits1.parquet")
    for (task, etype, group, budget), part in roles.groupby(["task", "type", "freq_group", "budget"]):
        circuit = circuits_from_frame(graph, circuits[(circuits["budget"] == budget)]).get(
            f"{task}/{etype}/{group}", Circuit.empty(graph))  # pruned to nothing: no rows in circuits.parquet
        assert (part["n_nodes"] == circuit.n_nodes).all()
        in_circuit = {graph.forward_names[n] for n in circuit.nodes[: graph.n_forward].nonzero()[:, 0].tolist()}
        cell_heads = pd.read_parquet(outs[1]["heads"]).query(
            "task == @task and type == @etype and freq_group == @group")
        assert part["count"].sum() == cell_heads["node"].isin(in_circuit).sum()
    layers = pd.read_parquet(outs[1]["layers"])
    assert layers.groupby(["task", "type", "freq_group", "budget"])["count"].sum().sum() == roles["count"].sum()
    # the last layer of the lens is the model: its mean rank is 1 + the 0-based rank hit_at_k reports
    lens = pd.read_parquet(outs[1]["lens"])
    model = CircuitModel(load_model(tmp_path / "epoch-001"))
    part = pd.DataFrame(rows).query("task == 'city' and type == 'new' and freq_group == 'low'")
    batch = prompt_batches(part, tasks["city"], tok, 8, prepend_bos=True)[0]  # as the default config encodes them
    own = hit_at_k(model, None, [ProbeBatch(batch.ids, batch.last, batch.label)])
    got = lens.query("task == 'city' and type == 'new' and freq_group == 'low' and layer == 1")
    assert float(got["rank"].iloc[0]) == pytest.approx(own["mean_rank"] + 1)
    # summary and figures
    summary = {t: tmp_path / "analysis" / f"{t}.parquet" for t in ("heads", "roles", "layers", "lens")}
    cli("components", "summary", **{t: [outs[0][t], outs[1][t]] for t in summary},
        **{f"out_{t}": p for t, p in summary.items()})
    lens_all = pd.read_parquet(summary["lens"])
    assert list(lens_all.drop_duplicates("checkpoint")["order"]) == [0, 1]
    assert {"seed", "checkpoint", "epoch"} <= set(lens_all.columns) and len(lens_all) == 2 * len(lens)
    for name, table in (("head_roles", "roles"), ("head_layers", "layers"), ("logit_lens", "lens")):
        pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
        cli("figure", name, **{table: [summary[table]]}, entities=tmp_path / "ent.parquet", pdf=pdf, png=png)
        assert pdf.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_rules_dry_run_with_two_seeds(tmp_path):
    """The components rules in the DAG: a job per seed x checkpoint, a summary per seed, figures over both."""
    two = tmp_path / "two_seeds.yaml"
    two.write_text("train:\n  seeds: [0, 1]\n")
    figures = [f"results/tiny/figures/{name}.{ext}" for name in ("head_roles", "head_layers", "logit_lens")
               for ext in ("pdf", "png")]
    counts = planned_jobs(snakemake(tmp_path, "-n", *figures, "--quiet", "rules", configfiles=(TINY, two)))
    n_ckpts = counts["circuit_eval"] // 2
    assert n_ckpts >= 2 and counts["components_measure"] == 2 * n_ckpts and counts["components_summary"] == 2
    assert counts["figure_head_roles"] == counts["figure_head_layers"] == counts["figure_logit_lens"] == 1
