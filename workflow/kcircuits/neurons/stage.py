"""The `neurons` stage: `kcircuits neurons ACTION ...`, one action per Snakemake rule (select: by hand).

    facts      the sampled facts' bags (facts.py), once for every checkpoint: data/neuron_bags.parquet
    measure    one checkpoint, one model load: attribution -- integrated-gradient scores
               (attribute.py) and raw activations (the baseline method) of every MLP hidden neuron
               for every prompt of every bag, for the value's first token and, for revised
               entities, the base-world value's, saved -- then `select` on what was saved
    select     one checkpoint, from saved scores: knowledge neurons (select.py, IG and baseline),
               suppress / amplify, edit and erase (experiments.py, on the loaded copy of the
               weights), and the overlap of each cell's neurons with its circuits; by hand, it
               re-selects with other neurons.* thresholds without attributing again
    summary    one training seed: the per-checkpoint tables joined in training order, and their
               evolution (evolution.py): neurons per fact, layers, Jaccard to previous / final,
               survival of the base model's neurons of revised facts' original values
(figures across seeds: `kcircuits figure neurons_* ...`, figures/stage.py)

Per-checkpoint outputs (results/{run}/seed-{seed}/neurons/{ckpt}/), each table with the checkpoint's
seed, name and progress columns first (io.with_leading_columns). A fact is `fact` (a number, the same
at every checkpoint) = (entity_id, attribute); its columns FACT_COLUMNS: fact, entity_id, name, type,
freq_group, frequency, attribute. target_kind: value (current) | original (revised entities' base
value). method: ig | baseline. Neurons are flat indices `index` = layer * d_mlp + neuron.

    scores.safetensors  per method, each prompt's scores >= neurons.store_threshold x its maximum
                        (store.py); rows = the rows of prompts.parquet
    prompts.parquet     row per (target_kind, fact, template): FACT_COLUMNS, target_kind, template,
                        prompt, answer, target (token id), prob (P(target)), rank
    facts.parquet       row per (fact, target_kind, method): FACT_COLUMNS, target_kind, method,
                        n_prompts, prob (mean over the bag), p (the attribute's p), n_neurons,
                        n_layers (the model's), mean_layer (NaN without neurons)
    neurons.parquet     row per (fact, target_kind, method, neuron): FACT_COLUMNS, target_kind,
                        method, index, layer, neuron, score (mean over the bag's prompts), n_coarse
                        (prompts it is coarse in), relation (a relation-level neuron of the attribute)
    interventions.parquet  row per (fact, method, neurons, operation, prompts): FACT_COLUMNS, method,
                        neurons (knowledge | random: as many random neurons of the same layers),
                        operation (suppress: x0 | amplify: x2), prompts (own | unrelated: the bag of
                        a fact of another attribute), n_neurons, n_prompts, p_before, p_after (means
                        over the prompts), change = (p_after - p_before) / p_before of those means
    edits.parquet       row per edited fact (IG neurons, value target): FACT_COLUMNS, template,
                        old_token, new_value, new_token, n_neurons, success_at_1, success_at_5,
                        changed, prob_before, prob_after (of the new token), rank_before, rank_after,
                        ppl_intra_before, ppl_intra_after, ppl_inter_before, ppl_inter_after
    erase.parquet       row per (erased attribute, scope: erased | other): attribute, scope,
                        n_neurons, n_prompts, accuracy_before, accuracy_after, ppl_before, ppl_after
    overlap.parquet     row per (type, freq_group, attribute = circuit task, method, budget):
                        n_neurons (distinct knowledge neurons of the cell's facts, value target),
                        n_in_circuit (their MLP node is a node of the cell's circuit), share
Per seed (results/{run}/seed-{seed}/analysis/): neuron_{facts,interventions,edits,erase,overlap}.parquet
(the tables joined, with `order`), neuron_evolution.parquet and neuron_layers.parquet (evolution.py).
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from .. import io
from ..settings import actions, add_job_arguments, add_paths, command, run_handler, set_threads
from ..stats import stage_rng
from ..vocabulary import with_order

log = logging.getLogger("kcircuits")
METHODS = ("ig", "baseline")
TABLES = ("facts", "neurons", "interventions", "edits", "erase", "overlap")  # per checkpoint
OUT_TABLES = tuple(f"out_{t}" for t in TABLES)
SEED_TABLES = tuple(t for t in TABLES if t != "neurons")  # joined per seed as they are


def add_parser(subparsers) -> None:
    acts = actions(subparsers, "neurons", "knowledge neurons per checkpoint; facts; summaries", run,
                   __doc__.split("\n")[0])
    a = command(acts, "facts", "sample the facts and their bags (once for every checkpoint)", "neurons", _facts)
    add_paths(a, "probes", "out")
    a = command(acts, "measure", "attribution, knowledge neurons and experiments of one checkpoint", "neurons",
                _measure)
    add_paths(a, "checkpoint", "tokenizer", "bags", "circuits", "out_prompts", "out_scores", *OUT_TABLES)
    add_job_arguments(a)
    a = command(acts, "select", "knowledge neurons and experiments again, from saved scores", "neurons", _select)
    add_paths(a, "checkpoint", "tokenizer", "prompts", "scores", "circuits", *OUT_TABLES)
    add_job_arguments(a)
    a = command(acts, "summary", "one seed's tables in training order, and their evolution", "neurons", _summary)
    add_paths(a, *SEED_TABLES, "neurons", many=True)
    add_paths(a, *(f"out_{t}" for t in SEED_TABLES), "out_evolution", "out_layers")


def run(args) -> None:
    set_threads(getattr(args, "threads", None))
    run_handler(args)


def _facts(args, s: dict) -> None:
    from .facts import sample_facts

    probes = pd.read_parquet(args.probes)
    bags = sample_facts(probes, s["neurons"]["facts_per_cell"], stage_rng(s["seed"], "neurons"))
    io.write_parquet(bags, args.out, io.provenance("neuron_facts", s["seed"], s))
    log.info("%d facts, %d prompts", bags["fact"].nunique(), len(bags))


def _measure(args, s: dict) -> None:
    """Attribution, then selection and experiments on the same loaded model (one interpreter and
    one model load per checkpoint: on the default, they cost as much as the work itself)."""
    from ..circuits.pipeline import load_checkpoint
    from ..tokenizer import load_tokenizer

    model, meta = load_checkpoint(args.checkpoint, args.device)
    tok = load_tokenizer(args.tokenizer)
    _attribute(args, s, model, meta, tok)
    args.prompts, args.scores = args.out_prompts, args.out_scores  # selection reads what was just saved
    _select(args, s, model, meta, tok)


def _attribute(args, s: dict, model, meta: dict, tok) -> None:
    """Scores of every MLP neuron for every prompt of every bag: IG and raw activations (the baseline)."""
    from .attribute import attribute, hidden_activations
    from .experiments import target_scores
    from .facts import encode, prompt_rows
    from .store import save_scores

    started, n = time.perf_counter(), s["neurons"]
    bags = encode(tok, prompt_rows(pd.read_parquet(args.bags)), model.device, s["circuits"]["prepend_bos"])
    with model.precision(n["dtype"]):
        ig = attribute(model, bags.ids, bags.last, bags.targets, n["ig_steps"], n["ig_points"], n["batch_size"])
    act = hidden_activations(model, bags.ids, bags.last)  # [L, Q, m]: the baseline method's scores
    L, Q, m = ig.shape
    flat = {"ig": ig.permute(1, 0, 2).reshape(Q, L * m), "baseline": act.permute(1, 0, 2).reshape(Q, L * m)}
    save_scores(args.out_scores, flat, n["store_threshold"], L, m)
    logprob, rank = target_scores(model, bags.ids, bags.last, bags.targets, n["batch_size"])  # the unmodified model
    rows = bags.rows.assign(prob=np.exp(logprob), rank=rank)
    prov = {**io.provenance("neurons_attribute", s["seed"], s, "torch", "transformers"), "checkpoint": meta}
    io.write_parquet(io.with_leading_columns(rows, meta), args.out_prompts, prov)
    log.info("%s: %d prompts x %d neurons attributed, %.1f s", meta["checkpoint"], Q, L * m,
             time.perf_counter() - started)


def _select(args, s: dict, model=None, meta: dict | None = None, tok=None) -> None:
    """Knowledge neurons from saved scores, the experiments, the overlap with circuits (by hand: the
    model is loaded here)."""
    from .experiments import edits, erase, interventions, unedited_scores
    from .facts import encode
    from .select import circuit_overlap, knowledge_neurons
    from .store import load_scores

    if model is None:
        from ..circuits.pipeline import load_checkpoint
        from ..tokenizer import load_tokenizer

        (model, meta), tok = load_checkpoint(args.checkpoint, args.device), load_tokenizer(args.tokenizer)
    started, n = time.perf_counter(), s["neurons"]
    prompts = pd.read_parquet(args.prompts)
    sparse, shape = load_scores(args.scores)
    if len(prompts) != len(sparse["ig"]["indptr"]) - 1:
        raise SystemExit(f"{args.scores}: scores of {len(sparse['ig']['indptr']) - 1} prompts, "
                         f"but {args.prompts} has {len(prompts)}")
    thresholds = {"ig": n["threshold"], "baseline": n["baseline_threshold"]}
    facts, neurons, found, relation = knowledge_neurons(prompts, sparse, shape["n_layers"] * shape["d_mlp"],
                                                        shape["d_mlp"], n, thresholds)
    bags = encode(tok, prompts[prompts["target_kind"] == "value"], model.device, s["circuits"]["prepend_bos"])
    rng, batch = stage_rng(s["seed"], "neuron_experiments"), n["batch_size"]
    unedited = unedited_scores(model, bags, batch)  # the unmodified model's forward, once for every experiment
    tables = {
        "facts": facts,
        "neurons": neurons,
        "interventions": pd.concat([interventions(model, bags, found["value", m], rng, batch, unedited).assign(method=m)
                                    for m in METHODS], ignore_index=True),
        "edits": edits(model, bags, found["value", "ig"], relation["value", "ig"], _candidates(bags),
                       rng=rng, batch_size=batch, unedited=unedited, **n["edit"]),
        "erase": erase(model, bags, found["value", "ig"], n["erase"]["neurons"], batch, unedited),
        "overlap": circuit_overlap(neurons, pd.read_parquet(args.circuits)),
    }
    prov = {**io.provenance("neurons_select", s["seed"], s, "torch", "transformers"), "checkpoint": meta}
    for name, table in tables.items():
        io.write_parquet(io.with_leading_columns(table, meta), getattr(args, f"out_{name}"), prov)
    log.info("%s: %d facts, %d IG neurons, experiments, %.1f s", meta["checkpoint"], facts["fact"].nunique(),
             int((neurons["method"] == "ig").sum()), time.perf_counter() - started)


def _candidates(bags) -> pd.DataFrame:
    """New values an edit may write: every sampled fact's value, with its first token (attribute,
    value, token)."""
    rows = bags.rows.rename(columns={"answer": "value", "target": "token"})
    return rows[["attribute", "value", "token"]].drop_duplicates().reset_index(drop=True)


def _summary(args, s: dict) -> None:
    from .evolution import evolution, layer_distribution

    prov = io.provenance("neurons_summary", s["seed"], s)
    tables = {}
    for name in (*SEED_TABLES, "neurons"):
        try:
            tables[name] = with_order(io.read_parquets(getattr(args, name)))
        except ValueError as err:
            raise SystemExit(f"neurons summary ({name}): {err}")
    for name in SEED_TABLES:
        io.write_parquet(tables[name], getattr(args, f"out_{name}"), prov)
    io.write_parquet(evolution(tables["neurons"], tables["facts"]), args.out_evolution, prov)
    n_layers = int(tables["facts"]["n_layers"].max())
    io.write_parquet(layer_distribution(tables["neurons"], n_layers), args.out_layers, prov)


__all__ = ["add_parser", "run"]
