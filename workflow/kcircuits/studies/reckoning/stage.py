"""The RECKONING stage: `kcircuits reckoning ACTION ...`, one action per rule (rules.smk).

`kcircuits companies` (rule companies) writes the companies' headquarters, the second hop of the
two-hop questions: each company of the pool gets a city (tasks.headquarters). The actions:

    tasks     fresh entities per split, their contexts (facts + distractors) and questions
    train     one method from a main-study checkpoint (--method; batches.py for the inputs)
    evaluate  a trained method on the test contexts: answers by inner steps, recitation, wall time
    circuits  EAP-IG circuits of theta' (an encoded method's test facts) against the main study's
              circuits at the checkpoint the methods started from (circuits.py)
    summary   accuracy by hops x distractors per method, the inner-step sweep, recitation, timing,
              and the finding (does RECKONING beat FT-ICR with distractors?)

Settings: the `reckoning` sections (the study's `sections`; `companies`: the seed only). By hand, e.g.:

    kcircuits reckoning train --config config.yaml --method reckoning --start CKPT --contexts C.parquet \
        --questions Q.parquet --tokenizer TOK --out /tmp/reckoning
"""
from __future__ import annotations

import logging

import pandas as pd

from ... import io
from ...config import ConfigError
from ...settings import (
    actions,
    add_job_arguments,
    add_paths,
    command,
    resource_path,
    run_handler,
    set_threads,
    stage_pools,
)
from ...stats import stage_rng
from . import ENCODED

log = logging.getLogger("kcircuits")


def _companies(args, s: dict) -> None:
    from .tasks import headquarters

    pools = stage_pools(args)
    table = headquarters(pools["companies"], pools["cities"], stage_rng(s["seed"], "companies"))
    io.write_parquet(table, args.out, io.provenance("companies", s["seed"], s))
    log.info("companies: %d, headquarters in %d cities", len(table), table["city"].nunique())


def _tasks(args, s: dict) -> None:
    from ...resources import load_templates
    from .checks import check_hq_template, check_questions
    from .tasks import build_contexts, reckoning_entities

    r = s["reckoning"]
    check_questions(r["questions"], r["attributes"])
    check_hq_template(r["headquarters_fact"])
    hq = pd.read_parquet(args.companies)
    table = reckoning_entities(pd.read_parquet(args.entities), stage_pools(args),
                               r["entities"], s["entities"]["birth_years"], stage_rng(s["seed"], "reckoning_entities"))
    contexts, questions = build_contexts(table, r["attributes"], r["distractors"],
                                         load_templates(resource_path(args, "templates")).biography,
                                         dict(zip(hq["company"], hq["city"])), r["headquarters_fact"], r["questions"],
                                         stage_rng(s["seed"], "reckoning_contexts"))
    prov = io.provenance("reckoning_tasks", s["seed"], s)
    for frame, out in ((table, args.out_entities), (contexts, args.out_contexts), (questions, args.out_questions)):
        io.write_parquet(frame, out, prov)
    counts = questions.groupby(["split", "hops"]).size()
    io.write_json({"entities": table["split"].value_counts().to_dict(), "contexts": int(len(contexts)),
                   "questions": {f"{split}/{hops}-hop": int(n) for (split, hops), n in counts.items()},
                   "provenance": prov}, args.report)
    log.info("reckoning tasks: %d contexts, %d questions", len(contexts), len(questions))


def prepare(contexts: pd.DataFrame, questions: pd.DataFrame, split: str, tok, n_positions: int | None,
            device: str = "cpu") -> list[dict]:
    """The split's contexts with their questions and token batches (batches.py), in
    context order; a prompt longer than the model's context is a ConfigError naming the key."""
    from .batches import context_batches, longest_row

    by_id = contexts.set_index("context_id", drop=False)
    asked = {cid: part.to_dict("records") for cid, part in questions.groupby("context_id", sort=False)}
    out = []
    for ctx in contexts[contexts["split"] == split].to_dict("records"):
        other = ctx["random_context"]
        random_facts = list(by_id.loc[other, "facts"]) if other >= 0 else None
        batches = context_batches(tok, ctx, asked[ctx["context_id"]], random_facts, device)
        if n_positions is not None and longest_row(batches) > n_positions:
            raise ConfigError(f"reckoning.distractors: a context of {ctx['distractors']} distractors needs "
                              f"{longest_row(batches)} tokens in context, the model has {n_positions} positions")
        out.append({"context": ctx, "questions": asked[ctx["context_id"]], "batches": batches})
    return out


def _load(args, device: str):
    from ...checkpoint import resolve_device
    from ...tokenizer import load_tokenizer

    device = resolve_device(device)
    return (pd.read_parquet(args.contexts), pd.read_parquet(args.questions), load_tokenizer(args.tokenizer), device)


def _train(args, s: dict) -> None:
    from ...checkpoint import context_length, load_model, read_model_config
    from .inner import use_eager_attention
    from .train import check_method, make_rates, save_method, train_method

    r = s["reckoning"]
    check_method(args.method)
    contexts, questions, tok, device = _load(args, args.device)
    n_positions = context_length(read_model_config(args.start))
    train, validation = (prepare(contexts, questions, split, tok, n_positions, device)
                         for split in ("train", "validation"))
    model = use_eager_attention(load_model(args.start, device, fused_gelu=False))
    rates = make_rates(model, r["inner"]).to(device)
    record = train_method(model, rates, [c["batches"] for c in train], [c["batches"] for c in validation],
                          args.method, r, s["seed"])
    record.update(method=args.method, start=str(args.start), seed=s["seed"],
                  provenance=io.provenance("reckoning_train", s["seed"], s, "torch", "transformers"))
    save_method(model, rates, record, args.out)


def _evaluate(args, s: dict) -> None:
    from .evaluate import evaluate_contexts, time_answers
    from .train import load_method

    r = s["reckoning"]
    contexts, questions, tok, device = _load(args, args.device)
    model, rates = load_method(args.model, r["inner"], device)
    test = prepare(contexts, questions, "test", tok, None, device)
    answers, recitation = evaluate_contexts(model, rates, test, args.method, r["inner"],
                                            r["inner"]["steps"] + r["evaluate"]["extra_steps"])
    timed = max(test, key=lambda c: (c["context"]["distractors"], -c["context"]["context_id"]))
    timing = time_answers(model, rates, timed["batches"], args.method, r["inner"], r["evaluate"]["timing_questions"])
    lead = {"seed": s["seed"], "method": args.method}
    prov = io.provenance("reckoning_evaluate", s["seed"], s, "torch", "transformers")
    for frame, out in ((answers, args.out_answers), (recitation, args.out_recitation), (timing, args.out_timing)):
        io.write_parquet(io.with_leading_columns(frame, lead), out, prov)
    trained = r["inner"]["steps"] if args.method in ENCODED else 0
    log.info("%s: exact %.3f at %d inner steps", args.method, answers[answers["steps"] == trained]["exact"].mean(),
             trained)


def _circuits(args, s: dict) -> None:
    from .circuits import compare_circuits, continual_hits, encoded_circuits
    from .train import load_method

    r = s["reckoning"]
    contexts, _, tok, device = _load(args, args.device)
    model, rates = load_method(args.model, r["inner"], device)
    tasks = {t: p for t, p in s["circuit_pairs"]["tasks"].items() if t in r["attributes"]}
    edges, hits, models = encoded_circuits(model, rates, tok, contexts, tasks, r["inner"], s["circuits"],
                                           r["circuits"]["entities"], s["seed"])
    compare, layers = compare_circuits(next(iter(models.values())).graph, edges, pd.read_parquet(args.continual))
    hits = pd.concat([hits.assign(source="encoded"), continual_hits(pd.read_parquet(args.continual_hits), tasks)],
                     ignore_index=True)
    lead = {"seed": s["seed"], "method": args.method}
    prov = io.provenance("reckoning_circuits", s["seed"], s, "torch", "transformers")
    for frame, out in ((edges, args.out_circuits), (hits, args.out_hits), (compare, args.out_compare),
                       (layers, args.out_layers)):
        io.write_parquet(io.with_leading_columns(frame, lead), out, prov)


def _summary(args, s: dict) -> None:
    from ...vocabulary import budget_label
    from .summary import (
        reckoning_accuracy,
        reckoning_circuit_finding,
        reckoning_finding,
        reckoning_recitation,
        reckoning_steps,
        reckoning_timing,
    )

    r, n_boot = s["reckoning"], s["analysis"]["topology"]["n_bootstrap"]
    answers, steps = io.read_parquets(args.answers), r["inner"]["steps"]
    prov = io.provenance("reckoning_summary", s["seed"], s)
    io.write_parquet(reckoning_accuracy(answers, steps, n_boot, s["seed"]), args.out_accuracy, prov)
    io.write_parquet(reckoning_steps(answers, n_boot, s["seed"]), args.out_steps, prov)
    io.write_parquet(reckoning_recitation(io.read_parquets(args.recitation), n_boot, s["seed"]), args.out_recitation,
                     prov)
    io.write_parquet(reckoning_timing(io.read_parquets(args.timing)), args.out_timing, prov)
    for name in ("circuit_hits", "circuit_compare", "circuit_layers"):  # joined across seeds and methods
        io.write_parquet(io.read_parquets(getattr(args, name)), getattr(args, f"out_{name}"), prov)
    finding = reckoning_finding(answers, steps, n_boot, s["seed"])
    finding["circuits"] = reckoning_circuit_finding(io.read_parquets(args.circuit_compare),
                                                    io.read_parquets(args.circuit_hits),
                                                    budget_label(s["circuits"]["edge_budgets"][0]),
                                                    s["circuits"]["hit_k"])
    io.write_json({**finding, "provenance": prov}, args.out_json)


def add_parser(subparsers) -> None:
    p = command(subparsers, "companies", "the companies' headquarters (RECKONING's two-hop facts)", "companies",
                _companies)
    add_paths(p, "pools", required=False)  # default (with --config): the config's resources
    p.set_defaults(run=run)
    add_paths(p, "out")
    acts = actions(subparsers, "reckoning", "RECKONING: facts written into the weights by a learned inner loop",
                   run, __doc__.split("\n")[0])
    a = command(acts, "tasks", "entities, contexts and questions of every split", "reckoning", _tasks)
    add_paths(a, "pools", "templates", required=False)
    add_paths(a, "entities", "companies", "out_entities", "out_contexts", "out_questions", "report")
    for name, handler, help_text, paths in (
            ("train", _train, "train one method", ("start", "out")),
            ("evaluate", _evaluate, "evaluate one trained method on the test contexts",
             ("model", "out_answers", "out_recitation", "out_timing")),
            ("circuits", _circuits, "circuits of theta' against the main study's (encoded methods)",
             ("model", "continual", "continual_hits", "out_circuits", "out_hits", "out_compare", "out_layers"))):
        a = command(acts, name, help_text, "reckoning", handler)
        a.add_argument("--method", required=True, help="reckoning | reckoning_mt | ft_icr | no_facts | random_facts")
        add_paths(a, "contexts", "questions", "tokenizer", *paths)
        add_job_arguments(a)
    a = command(acts, "summary", "tables and the finding across methods and seeds", "reckoning", _summary)
    add_paths(a, "answers", "recitation", "timing", "circuit_hits", "circuit_compare", "circuit_layers", many=True)
    add_paths(a, "out_accuracy", "out_steps", "out_recitation", "out_timing", "out_circuit_hits",
              "out_circuit_compare", "out_circuit_layers", "out_json")


def run(args) -> None:
    set_threads(getattr(args, "threads", None))
    run_handler(args)


__all__ = ["add_parser", "prepare", "run"]
