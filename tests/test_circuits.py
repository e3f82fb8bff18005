"""Knowledge-circuit core: graph sizes, the explicit forward, attribution correctness, selection,
evaluation, storage and drawing. Tiny random models; one thread (the machine is shared)."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
import torch

from helpers import REPO, TINY, V, random_checkpoint, random_model
from kcircuits.circuits.attribute import PairBatch, attribute, exact_patching
from kcircuits.circuits.draw import to_dot, to_svg
from kcircuits.circuits.evaluate import (
    ProbeBatch,
    faithfulness,
    faithfulness_of,
    hit_at_k,
    mean_reference,
    transplant,
)
from kcircuits.circuits.graph import Circuit, Graph, edge_budget, prune, select_greedy, select_top_n
from kcircuits.circuits.metrics import edge_entropy, logit_difference, spearman
from kcircuits.circuits.model import CircuitModel
from kcircuits.circuits.store import load_circuits, load_scores, save_circuits, save_scores
from kcircuits.evaluate.metrics import target_rank

pytestmark = pytest.mark.usefixtures("one_thread")


def random_pairs(n: int = 16, length: int = 6, seed: int = 1, lengths: list[int] | None = None) -> PairBatch:
    """Pairs differing in their first two tokens ('subject'), right-padded if lengths differ."""
    g = torch.Generator().manual_seed(seed)
    n = len(lengths) if lengths else n
    clean = torch.randint(1, V, (n, length), generator=g)
    corrupted = clean.clone()
    corrupted[:, :2] = torch.randint(1, V, (n, 2), generator=g)
    last = torch.tensor(lengths) - 1 if lengths else torch.full((n,), length - 1)
    for i in range(n):  # padding after the last token
        clean[i, last[i] + 1:] = corrupted[i, last[i] + 1:] = 0
    labels = torch.randint(1, V, (2, n), generator=g)
    return PairBatch(clean, corrupted, last, labels[0], labels[1])


def split(batch: PairBatch, size: int) -> list[PairBatch]:
    return [PairBatch(*(t[i:i + size] for t in (batch.clean_ids, batch.corrupted_ids, batch.last, batch.clean_label,
                                                batch.corrupted_label))) for i in range(0, len(batch), size)]


def mean_ld(model, ids, batch):
    with torch.no_grad():
        return float(logit_difference(model.run(ids, batch.last), batch.clean_label, batch.corrupted_label).mean())


# ---- graph -----------------------------------------------------------------------------------------
def test_edge_counts_match_the_original_graphs():
    assert Graph(12, 12).n_edges == 32491  # GPT-2 Small
    assert Graph(24, 16).n_edges == 231877  # GPT-2 Medium
    assert Graph(22, 32).n_edges == 742996  # TinyLlama
    assert Graph(24, 32, parallel_attn_mlp=True).n_edges == 886597  # Phi-1.5


@pytest.mark.parametrize("parallel", [False, True])
def test_edges_follow_the_definition(parallel):
    """Brute force: an edge for every upstream node into every later q/k/v, MLP and logits input."""
    g = Graph(3, 2, parallel)
    layer_of = lambda name: -1 if name == "input" else int(name[1:].split(".")[0])  # noqa: E731
    expected = set()
    for parent in g.forward_names:
        for child in g.backward_names:
            if child == "logits":
                ok = True
            elif child.startswith("a"):
                ok = layer_of(parent) < layer_of(child)
            else:  # an MLP reads its own layer's heads unless attention and MLP run in parallel
                same_layer_head = layer_of(parent) == layer_of(child) and parent.startswith("a")
                ok = layer_of(parent) < layer_of(child) or (same_layer_head and not parallel)
            if ok:
                expected.add(f"{parent}->{child}")
    got = {g.edge_name(u, v) for u, v in g.valid.nonzero().tolist()}
    assert got == expected and g.n_edges == len(expected)
    assert len(set(g.node_names)) == len(g.node_names) and len(set(g.backward_names)) == g.n_backward


def test_names_parse_back_to_their_nodes_and_slots():
    g = Graph(3, 2)
    for i, name in enumerate(g.node_names):  # kind, layer and head agree with the node's index
        node = g.parse(name)
        assert node.layer == g.node_layer(i) and node.qkv == ""
        if node.kind == "head":
            assert g.head_node(node.layer, node.head) == i and g.head_name(node.layer, node.head) == name
        elif node.kind == "mlp":
            assert g.mlp_node(node.layer) == i and g.mlp_name(node.layer) == name
    for v, name in enumerate(g.backward_names):  # a slot parses to its node, plus q/k/v for a head's input
        slot, node = g.parse(name), g.parse(g.node_names[int(g.slot_node[v])])
        assert (slot.kind, slot.layer, slot.head) == (node.kind, node.layer, node.head)
        assert slot.qkv == ("qkv"[(v - g.attn_slots(slot.layer)[0]) // g.n_heads] if slot.kind == "head" else "")
    for bad in ("a3.h0", "a0.h2", "m3", "a01.h0", "a0.h0<x>", "m", "logit"):
        with pytest.raises(ValueError):
            g.parse(bad)


# ---- the explicit forward --------------------------------------------------------------------------
FAMILIES = [("gpt2", {}), ("gpt_neox", {}), ("gpt_neox", {"use_parallel_residual": False, "attention_bias": True}),
            ("llama", {"num_key_value_heads": 2})]


@pytest.mark.parametrize("family,extra", FAMILIES)
def test_forward_reproduces_the_hf_model(family, extra):
    hf = random_model(family, std=0.3, **extra)
    model = CircuitModel(hf)
    assert model.graph.parallel_attn_mlp == (family == "gpt_neox" and extra.get("use_parallel_residual", True))
    ids = torch.randint(1, V, (3, 7), generator=torch.Generator().manual_seed(0))
    last = torch.tensor([6, 4, 2])  # items 2 and 3 are right-padded
    with torch.no_grad():
        expected = torch.stack([hf(ids[i:i + 1, : last[i] + 1]).logits[0, -1] for i in range(3)])  # unpadded
        plain, outs = model.run(ids, last, record=True)
        patched_full = model.run(ids, last, mask=model.graph.valid.float())
        recomposed = model.run(None, last, embeds=outs[0])
    scale = expected.abs().max()
    for got in (plain, patched_full, recomposed):
        assert (got - expected).abs().max() <= 1e-5 * scale
    assert outs.shape == (model.graph.n_forward, 3, 7, model.d_model)


def test_all_edges_reproduce_the_model_and_no_edges_the_corrupted_run():
    model = CircuitModel(random_model())
    batch = random_pairs()
    full = faithfulness(model, Circuit.full(model.graph), [batch])
    empty = faithfulness(model, Circuit.empty(model.graph), [batch])
    assert abs(full["ld_clean"] - full["ld_corrupted"]) > 0.05  # a gap to be faithful to
    assert full["faithfulness"] == pytest.approx(1.0, abs=1e-4)
    assert full["ld_circuit"] == pytest.approx(full["ld_clean"], abs=1e-5)
    assert empty["faithfulness"] == pytest.approx(0.0, abs=1e-4)
    # one path input -> a0.h0<v> -> logits: the head moves clean subject values to the last position
    g = model.graph
    value_slot = g.attn_slots(0)[0] + 2 * g.n_heads  # a0.h0<v>
    path = Circuit(g, torch.zeros_like(g.valid))
    path.edges[0, value_slot] = path.edges[g.head_node(0, 0), g.logits_slot] = True
    assert faithfulness(model, path, [batch])["faithfulness"] != pytest.approx(0.0, abs=1e-3)
    path.edges[0, value_slot] = False  # the head's inputs are all corrupted again: nothing changes
    assert faithfulness(model, path, [batch])["faithfulness"] == pytest.approx(0.0, abs=1e-4)


def test_circuits_sharing_the_clean_and_corrupted_runs_get_the_numbers_of_separate_runs():
    model = CircuitModel(random_model())
    g = model.graph
    batches = split(random_pairs(n=10, lengths=[6, 4, 5, 6, 3, 6, 5, 4, 6, 2]), 4)
    circuits = [Circuit.full(g), Circuit.empty(g), select_top_n(torch.randn(g.n_forward, g.n_backward), g, 0.3)]
    together = faithfulness_of(model, circuits, batches)
    with torch.no_grad():  # each circuit alone, as the evaluation did before: its own clean and corrupted runs
        for circuit, got in zip(circuits, together):
            sums = {"clean": 0.0, "corrupted": 0.0, "circuit": 0.0}
            for b in batches:
                corrupted_logits, corrupted = model.run(b.corrupted_ids, b.last, record=True)
                mask = circuit.edges.float()
                for key, logits in (("clean", model.run(b.clean_ids, b.last)), ("corrupted", corrupted_logits),
                                    ("circuit", model.run(b.clean_ids, b.last, mask=mask, reference=corrupted))):
                    sums[key] += logit_difference(logits, b.clean_label, b.corrupted_label).double().sum()
            assert got == faithfulness(model, circuit, batches)
            assert [got[f"ld_{k}"] for k in sums] == [float(v) / 10 for v in sums.values()]
    assert together[0]["faithfulness"] == pytest.approx(1.0, abs=1e-4) and together[2]["n_pairs"] == 10


# ---- attribution -----------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama"])
def test_ig_completeness_at_the_input(family):
    """Edges out of the input carry the whole input gradient: their EAP-IG scores sum to
    LD(clean) - LD(corrupted) as m grows (right Riemann sum, error ~ 1/m)."""
    model = CircuitModel(random_model(family))
    batch = random_pairs()
    target = mean_ld(model, batch.clean_ids, batch) - mean_ld(model, batch.corrupted_ids, batch)
    right = {m: float(attribute(model, [batch], steps=m)[0].sum()) - target for m in (1, 16, 64)}
    left = float(attribute(model, [batch], steps=64, points="left")[0].sum()) - target
    print(f"\n{family} completeness: LD(clean) - LD(corrupted) = {target:.4f}; error of the input edges' sum, "
          f"right points by m: {right}; left, m = 64: {left:.2e}; their mean: {(left + right[64]) / 2:.2e}")
    assert abs(right[64]) < abs(right[16]) and abs(right[64]) < 0.05 * abs(target)
    # left and right Riemann sums bracket the integral; their mean (the trapezoid rule) is O(1/m^2)
    assert left * right[64] < 0
    assert abs((left + right[64]) / 2) < 1e-3 * abs(target)


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama"])
def test_m1_is_the_closed_form_of_eap(family):
    """EAP = (clean_u - corrupted_u) . dLD/d(input_v) at the clean run, computed independently as the
    derivative of LD with respect to the patch mask (input_v = ... + mask[u, v] (out_u - ref_u)),
    through plain autograd: this checks every slot's gradient, q/k/v of each head separately."""
    model = CircuitModel(random_model(family))
    batch = random_pairs(lengths=[6, 5, 4, 6] * 4)
    with torch.no_grad():
        _, corrupted = model.run(batch.corrupted_ids, batch.last, record=True)
        _, clean = model.run(batch.clean_ids, batch.last, record=True)
    mask = model.graph.valid.float().requires_grad_(True)
    logits = model.run(batch.clean_ids, batch.last, mask=mask, reference=corrupted)
    ld = logit_difference(logits, batch.clean_label, batch.corrupted_label).sum()
    closed_form = torch.autograd.grad(ld, mask)[0] * model.graph.valid / len(batch)
    for scores in (attribute(model, [batch], "eap"), attribute(model, [batch], "eap-ig", steps=1)):
        assert torch.allclose(scores, closed_form, atol=1e-5 * closed_form.abs().max())
    # left points with m = 1 take the gradient at the corrupted run: the same identity, roles swapped
    mask = model.graph.valid.float().requires_grad_(True)
    logits = model.run(batch.corrupted_ids, batch.last, mask=mask, reference=clean)
    ld = logit_difference(logits, batch.clean_label, batch.corrupted_label).sum()
    at_corrupted = -torch.autograd.grad(ld, mask)[0] * model.graph.valid / len(batch)
    left = attribute(model, [batch], steps=1, points="left")
    assert torch.allclose(left, at_corrupted, atol=1e-5 * at_corrupted.abs().max())


def test_scores_do_not_depend_on_batching():
    model = CircuitModel(random_model())
    batch = random_pairs(lengths=[6, 4, 5, 6, 3, 6, 5, 4, 6, 6, 2, 5])
    whole = attribute(model, [batch], steps=3)
    for size in (1, 5):
        assert torch.allclose(attribute(model, split(batch, size), steps=3), whole, atol=1e-5 * whole.abs().max())
    assert (whole[~model.graph.valid] == 0).all()


def test_eap_ig_agrees_with_exact_patching():
    model = CircuitModel(random_model())
    batch = random_pairs()
    exact = exact_patching(model, [batch])
    valid = model.graph.valid
    top = exact[valid].abs().argsort(descending=True)[:20]
    rho = {}
    for name, scores in (("eap", attribute(model, [batch], "eap")), ("eap-ig", attribute(model, [batch], steps=5))):
        rho[name] = (spearman(scores[valid], exact[valid]), spearman(scores[valid][top], exact[valid][top]))
    print(f"\nSpearman vs exact patching ({int(valid.sum())} edges; all, top 20): {rho}")
    assert rho["eap-ig"][0] > 0.8 and rho["eap-ig"][1] > 0.8
    # a wrong pairing of differences and gradients (e.g. transposed slots) would not correlate
    assert spearman(attribute(model, [batch], steps=5)[valid].flip(0), exact[valid]) < 0.5


# ---- selection -------------------------------------------------------------------------------------
def on_some_path(g: Graph, edges: torch.Tensor) -> torch.Tensor:
    """Brute force: edges lying on an input -> logits path (searches over the circuit's edges)."""
    children: dict[int, list[int]] = {}
    for u, v in edges.nonzero().tolist():
        children.setdefault(u, []).append(int(g.slot_node[v]))

    def reachable_from(start: int) -> set[int]:
        seen, stack = {start}, [start]
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return seen

    from_input = reachable_from(0)
    keep = torch.zeros_like(edges)
    for u, v in edges.nonzero().tolist():
        keep[u, v] = u in from_input and g.logits_node in reachable_from(int(g.slot_node[v]))
    return keep


def test_pruning_keeps_exactly_the_edges_on_input_to_logits_paths():
    g = Graph(3, 2)
    gen = torch.Generator().manual_seed(0)
    for density in (0.05, 0.15, 0.4):
        edges = (torch.rand(g.n_forward, g.n_backward, generator=gen) < density) & g.valid
        pruned = prune(g, edges)
        assert torch.equal(pruned, on_some_path(g, edges))
        assert torch.equal(prune(g, pruned), pruned)


def test_top_n_and_greedy_selection():
    model = CircuitModel(random_model(layers=3))
    g = model.graph
    scores = attribute(model, [random_pairs()], steps=2)
    assert edge_budget(g, 0.25) == round(0.25 * g.n_edges) and edge_budget(g, 10) == 10
    with pytest.raises(ValueError):
        edge_budget(g, 1.5)
    top = select_top_n(scores, g, 30)
    assert top.n_edges <= 30 and torch.equal(prune(g, top.edges), top.edges)
    kept = scores.abs()[top.edges]
    assert kept.min() >= scores.abs()[g.valid].topk(30).values.min()  # only top-30 edges survive pruning
    assert select_top_n(scores, g, 1.0).n_edges == g.n_edges  # every edge of a full graph is on a path
    greedy = select_greedy(scores, g, 30)
    assert 0 < greedy.n_edges <= 30 and torch.equal(prune(g, greedy.edges), greedy.edges)
    assert greedy.nodes[g.logits_node] and greedy.nodes[0]


def test_edge_entropy():
    g = Graph(2, 2)
    edges = torch.zeros_like(g.valid)
    edges[0, :4] = True
    assert edge_entropy(torch.ones(g.n_forward, g.n_backward), edges) == pytest.approx(math.log(4))
    peaked = torch.full((g.n_forward, g.n_backward), 1e-6)
    peaked[0, 0] = -5.0  # |score| is what counts
    assert edge_entropy(peaked, edges) < 0.01
    assert math.isnan(edge_entropy(peaked, torch.zeros_like(edges)))


# ---- evaluation ------------------------------------------------------------------------------------
def test_hit_at_k_ablations():
    model = CircuitModel(random_model())
    batch = random_pairs(lengths=[6, 4, 5, 6] * 4)
    probes = [ProbeBatch(batch.clean_ids, batch.last, batch.clean_label)]
    full_model = hit_at_k(model, None, probes, k=10)
    with torch.no_grad():
        logits = model.run(batch.clean_ids, batch.last)
    assert full_model["hit_at_10"] == float((target_rank(logits, batch.clean_label) < 10).float().mean())
    for ablation in ("zero", "mean"):  # nothing outside the full graph to ablate
        assert hit_at_k(model, Circuit.full(model.graph), probes, 10, ablation)["mean_rank"] == full_model["mean_rank"]
    # empty circuit under zero ablation: the logits see only constants, so every prompt ranks alike
    empty = model.run(batch.clean_ids, batch.last, mask=torch.zeros(model.graph.n_forward, model.graph.n_backward))
    assert torch.allclose(empty, empty[:1].expand_as(empty), atol=1e-5)
    # mean ablation of an empty circuit: the logits read the per-position mean residual stream
    ref = mean_reference(model, probes)
    real = torch.arange(6)[None] <= batch.last[:, None]
    outs = model.run(batch.clean_ids, batch.last, record=True)[1]
    assert torch.allclose(ref[:, 0, 3], outs[:, real[:, 3], 3].mean(1), atol=1e-5)  # real tokens at position 3
    rank_by_logits = target_rank(torch.tensor([[0.1, 0.5, 0.5, 0.2]]), torch.tensor([2]))
    assert rank_by_logits.item() == 0  # ties count in the label's favour (the one rank convention)


def test_transplant_across_checkpoints():
    early, late = CircuitModel(random_model(seed=0)), CircuitModel(random_model(seed=1))
    batch = random_pairs()
    probes = [ProbeBatch(batch.clean_ids, batch.last, batch.clean_label)]
    circuit = select_top_n(attribute(early, [batch], steps=2), early.graph, 40)
    rows = transplant(late, {"early": circuit, "full": Circuit.full(late.graph)}, probes, ablation="mean")
    assert rows[1]["mean_rank"] == hit_at_k(late, None, probes)["mean_rank"]
    assert rows[0]["source"] == "early" and 0 <= rows[0]["hit_at_10"] <= 1
    with pytest.raises(ValueError, match="does not match"):
        hit_at_k(CircuitModel(random_model(layers=3)), circuit, probes)


# ---- storage and drawing ---------------------------------------------------------------------------
def test_scores_and_circuits_round_trip(tmp_path):
    model = CircuitModel(random_model())
    g = model.graph
    scores = {"city/new/low": attribute(model, [random_pairs()], steps=2),
              "city/new/high": torch.randn(g.n_forward, g.n_backward)}
    save_scores(tmp_path / "scores.safetensors", scores, g, {"method": "eap-ig", "steps": 2})
    raw = (tmp_path / "scores.safetensors").read_bytes()
    assert raw[8:9] == b"{"  # a safetensors JSON header, not a pickle
    graph, loaded, meta = load_scores(tmp_path / "scores.safetensors")
    assert graph == g and meta["steps"] == 2 and all(torch.equal(loaded[k], scores[k]) for k in scores)
    circuits = {k: select_top_n(v, g, 25) for k, v in scores.items()}
    save_circuits(tmp_path / "circuits.parquet", circuits, scores)
    table = pd.read_parquet(tmp_path / "circuits.parquet")
    assert set(table.columns) >= {"task", "type", "freq_group", "parent", "child", "score"}
    back = load_circuits(tmp_path / "circuits.parquet", g)
    assert all(torch.equal(back[k].edges, circuits[k].edges) for k in circuits)


def test_drawings():
    model = CircuitModel(random_model())
    scores = attribute(model, [random_pairs()], steps=2)
    circuit = select_top_n(scores, model.graph, 15)
    dot = to_dot(circuit, scores, title="city/new/low")
    assert dot.count("->") == circuit.n_edges and "logits" in dot
    svg = ET.fromstring(to_svg(circuit, scores, use_graphviz=False))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f"{ns}line")) == circuit.n_edges and len(svg.findall(f"{ns}rect")) == circuit.n_nodes


# ---- the pipeline stage on the pipeline's own data ---------------------------------------------------
@pytest.mark.slow
def test_circuit_stage_by_hand(tiny_data, tmp_path):
    """scores -> eval -> transplant -> draw -> summary through the CLI, as the rules call it."""
    import json

    from kcircuits.cli import main
    from kcircuits.config import load_config, stage_settings
    from kcircuits.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_data / "tokenizer")
    ckpts = [random_checkpoint(tmp_path, tok, f"epoch-00{i}", float(i), seed=i, layers=2, n_positions=64)
             for i in (1, 2)]
    cfg = load_config([REPO / "config.yaml", TINY])
    cfg["circuits"].update(max_pairs=5, edge_budgets=[0.2, 30], batch_size=4)
    settings = json.dumps(stage_settings(cfg, "circuits"))
    data = {"--pairs": tiny_data / "circuit_pairs.parquet", "--probes": tiny_data / "probes.parquet",
            "--tokenizer": tiny_data / "tokenizer"}

    def cli(action, *args, **files):
        threads = ["--threads", "1"] if action in ("scores", "eval", "transplant") else []  # the model actions
        argv = ["circuits", action, "--settings", settings, *threads, *map(str, args)]
        for key, value in files.items():
            argv += [f"--{key.replace('_', '-')}", *(map(str, value) if isinstance(value, list) else [str(value)])]
        assert main(argv) == 0

    for ckpt in ckpts:
        out = tmp_path / "circuits" / ckpt.name
        cli("scores", "--pairs", data["--pairs"], "--tokenizer", data["--tokenizer"], checkpoint=ckpt,
            out=out / "scores.safetensors", report=out / "scores.json")
        cli("eval", *[str(x) for kv in data.items() for x in kv], checkpoint=ckpt, scores=out / "scores.safetensors",
            out_circuits=out / "circuits.parquet", out_stats=out / "stats.parquet", out_hits=out / "hits.parquet")
    graph, cells, meta = load_scores(tmp_path / "circuits/epoch-001/scores.safetensors")
    pairs = pd.read_parquet(tiny_data / "circuit_pairs.parquet")
    assert len(cells) == len(pairs.groupby(["task", "type", "freq_group"])) and meta["checkpoint"]["epoch"] == 1.0
    report = json.loads((tmp_path / "circuits/epoch-001/scores.json").read_text())
    gaps = {key: cell["ld_clean"] - cell["ld_corrupted"] for key, cell in report["cells"].items()}
    scale = max(map(abs, gaps.values()))
    for key, cell in report["cells"].items():  # m = 5: the input edges carry about LD(clean) - LD(corrupted)
        assert abs(cell["input_edges_sum"] - gaps[key]) <= 0.1 * scale, key
    stats = pd.read_parquet(tmp_path / "circuits/epoch-001/stats.parquet")
    assert len(stats) == 2 * len(cells) and set(stats["budget"]) == {"0.2", "30"}
    assert (stats["n_edges"] <= stats["budget"].map(lambda b: 30 if b == "30" else round(0.2 * graph.n_edges))).all()
    hits = pd.read_parquet(tmp_path / "circuits/epoch-001/hits.parquet")
    assert hits["hit_at_k"].between(0, 1).all() and set(hits["ablation"]) == {"zero", "mean"}
    # transplant: epoch-001's circuits on epoch-001's model reproduce its own Hit@k; also on epoch-002
    transplanted = tmp_path / "transplant"
    for ckpt in ckpts:
        cli("transplant", "--probes", data["--probes"], "--tokenizer", data["--tokenizer"], checkpoint=ckpt,
            circuits=[tmp_path / "circuits/epoch-001/circuits.parquet"], source_names=["epoch-001"],
            out=transplanted / f"{ckpt.name}.parquet")
    own = hits[(hits.type == hits.target_type) & (hits.freq_group == hits.target_freq_group)]
    key = ["task", "type", "freq_group", "budget", "ablation"]
    same = own.merge(pd.read_parquet(transplanted / "epoch-001.parquet"), on=key, suffixes=("", "_transplant"))
    assert len(same) == len(own) and (same["hit_at_k"] == same["hit_at_k_transplant"]).all()
    assert len(pd.read_parquet(transplanted / "epoch-002.parquet")) == len(own)
    cli("draw", scores=tmp_path / "circuits/epoch-001/scores.safetensors",
        circuits=[tmp_path / "circuits/epoch-001/circuits.parquet"], out_dir=tmp_path / "drawings")
    assert len(list((tmp_path / "drawings").glob("*.svg"))) == len(cells)
    cli("summary", stats=[tmp_path / f"circuits/{c.name}/stats.parquet" for c in ckpts],
        hits=[tmp_path / f"circuits/{c.name}/hits.parquet" for c in ckpts],
        transplants=[transplanted / f"{c.name}.parquet" for c in ckpts], out_stats=tmp_path / "s.parquet",
        out_hits=tmp_path / "h.parquet", out_transplant=tmp_path / "t.parquet")
    assert set(pd.read_parquet(tmp_path / "s.parquet")["checkpoint"]) == {"epoch-001", "epoch-002"}
