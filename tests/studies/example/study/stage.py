"""`kcircuits example summary`: the final-recall table and its findings summary (rules.smk)."""
from __future__ import annotations

from ... import io
from ...settings import actions, add_paths, command, run_handler


def _summary(args, s: dict) -> None:
    from .summary import final_recall, finding

    metric = s["example"]["metric"]
    table = final_recall(io.read_parquets(args.eval), metric)
    prov = io.provenance("example_summary", s["seed"], s)
    io.write_parquet(table, args.out_table, prov)
    io.write_json({**finding(table, metric), "provenance": prov}, args.out_json)


def add_parser(subparsers) -> None:
    acts = actions(subparsers, "example", "the example study: final recall", run, __doc__.split("\n")[0])
    a = command(acts, "summary", "final recall per type and attribute", "example", _summary)
    add_paths(a, "eval", many=True)
    add_paths(a, "out_table", "out_json")


def run(args) -> None:
    run_handler(args)
