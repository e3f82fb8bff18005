"""The rules against the stage CLI, from one dry run of the tiny config with a step checkpoint: every
planned command parses with `kcircuits`' own parser, every figure of the CLI has its rule and caption,
a step checkpoint is a continual state exported like an epoch's, and LOCAL_RULES names only real rules."""
from __future__ import annotations

import re
import shlex

import pytest

from helpers import TINY, planned_jobs, snakemake

pytestmark = pytest.mark.slow  # a Snakemake dry run


def planned_commands(output: str) -> list[tuple[str, list[str]]]:
    """(rule, arguments after `python -m kcircuits`) of every job of a `snakemake -n -p` output."""
    jobs = []
    for block in re.split(r"\n\[[^\]]+\]\n", output):
        head = re.search(r"^(?:local)?(?:rule|checkpoint) (\w+):", block, re.M)
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        if head and shell and "kcircuits" in shell.group(1):
            argv = shlex.split(shell.group(1).split(" > ")[0])  # without the log redirection
            jobs.append((head.group(1), argv[argv.index("kcircuits") + 1:]))
    return jobs


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> str:
    work = tmp_path_factory.mktemp("rules")
    steps = work / "steps.yaml"
    steps.write_text("train:\n  checkpoints: {steps: [3]}\n")
    proc = snakemake(work, "-n", "-p", configfiles=(TINY, steps))
    return proc.stdout + proc.stderr


def test_every_planned_command_parses_with_the_cli(dry_run):
    from kcircuits.cli import build_parser

    parser = build_parser()
    jobs = planned_commands(dry_run)
    assert {rule for rule, _ in jobs} == set(planned_jobs(dry_run)) - {"all"}
    for rule, args in jobs:
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"rule {rule}: `kcircuits {' '.join(args[:2])} ...` does not parse: {args}")


def test_each_cli_figure_has_its_rule_caption_and_inputs(dry_run):
    from kcircuits.figures.stage import all_figures

    table = all_figures()  # the core's figures and every study's, each with its caption
    figures = {args[1]: args for rule, args in planned_commands(dry_run) if rule.startswith("figure_")}
    assert set(figures) == set(table)
    for name, args in figures.items():
        assert table[name].caption.is_file(), name
        options = {a[2:] for a in args if a.startswith("--")}
        wanted = {"settings", "pdf", "png", "entities", *(i.replace("_", "-") for i in table[name].inputs)}
        assert options == wanted, name
        assert args[args.index("--pdf") + 1].endswith(f"figures/{name}.pdf"), name


def test_a_step_checkpoint_is_a_continual_state_exported_like_an_epoch(dry_run):
    jobs = planned_commands(dry_run)
    state = "results/tiny/seed-0/train/continual/state"
    train = {a[a.index("--out") + 1]: a for rule, a in jobs if rule == "train_continual"}
    assert "--until-step" in train[f"{state}/step-000003"] and "--until-epoch" in train[f"{state}/epoch-001"]
    exports = {a[a.index("--name") + 1]: a for rule, a in jobs if rule == "export_checkpoint"}
    assert exports["step-000003"][exports["step-000003"].index("--source") + 1] == f"{state}/step-000003"
    assert exports["epoch-001"][exports["epoch-001"].index("--source") + 1] == f"{state}/epoch-001"


def test_every_rule_declared_local_exists(dry_run):
    # Snakemake warns (and carries on) when LOCAL_RULES names a rule that is not there, e.g. after a rename.
    assert "localrules directive specifies rules that are not" not in dry_run
