"""Command-line entry point: one subcommand per stage, called by the Snakemake rules or by hand.

Every stage module exposes `add_parser(subparsers)` (its command, and one sub-subcommand per action
where it has several) and `run(args)`; settings come from --settings JSON or --config files
(kcircuits.settings). Example, by hand:

    python -m kcircuits entities --config config.yaml --out /tmp/entities.parquet --report /tmp/e.json
"""
from __future__ import annotations

import os

# Before anything can import torch: idle OpenMP threads must sleep, not spin, on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import logging
import sys

from .analysis import components_stage, report_stage, topology_stage
from .checkpoint import CheckpointError
from .circuits import stage as circuits_stage
from .config import ConfigError
from .data import stage as data_stage
from .evaluate import stage as evaluate_stage
from .figures import stage as figures_stage
from .io import TableError
from .neurons import stage as neurons_stage
from .studies import STUDIES
from .train import stage as train_stage

# In the order of the pipeline (and of `kcircuits --help`), the studies' stages before the results;
# each imports without torch.
CORE_STAGES = (data_stage, train_stage, evaluate_stage, circuits_stage, components_stage, neurons_stage,
               topology_stage)
FINAL_STAGES = (report_stage, figures_stage)


def stages() -> tuple:
    """Every stage module: the core's, then each study's (kcircuits.studies), then results and figures."""
    studies = tuple(study.module(name) for study in STUDIES.values() for name in study.stages)
    return (*CORE_STAGES, *studies, *FINAL_STAGES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kcircuits", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    for stage in stages():
        stage.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to relaunch the same command (training)
    try:
        args.run(args)
    except (ConfigError, CheckpointError, TableError) as err:  # bad input: one line naming the key or file
        print(f"kcircuits: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
