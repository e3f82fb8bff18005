"""One figure table for the CLI and the rules: what each figure reads, which settings, how it is drawn.

`kcircuits.figures.stage.all_figures()` joins the core's figures and every study's (a study's
`figures` module defines FIGURES of Figure records); rules/figures.smk generates one rule per entry,
`kcircuits figure NAME` draws one. Every figure also reads the entity table (--entities: the
frequency groups' order) and writes results/{run}/figures/NAME.{pdf,png}.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ..vocabulary import budget_label


@dataclass(frozen=True)
class Figure:
    draw: Callable                 # draw(args, settings): args holds one option per input, pdf and png
    help: str                      # the command's help
    label: str                     # its label in the Snakemake report
    category: str                  # its category in the Snakemake report
    stage: str                     # the settings stage it reads (kcircuits.config.stage_sections)
    inputs: dict[str, str]         # option (= rule input key) -> PATHS key; {seed} paths: every replicate's
    sections: dict | None = None   # the settings cut to {section: [keys] | None} (narrow_settings); None: all
    enabled: str | None = None     # the config switch ("order.enabled") that puts it in the default target
    hit_options: bool = False      # --ablation / --budget (circuit Hit@k figures)
    first_seed: bool = False       # inputs from the first training replicate only
    caption: Path | None = None    # report/NAME.rst of its folder (set by all_figures)


def figure(draw: Callable, help_text: str, label: str, category: str, stage: str, **keywords) -> Figure:
    """A Figure written as its table reads: keywords that are Figure fields set them, the others are
    its inputs (option=PATHS key), in order."""
    fields = {f.name for f in dataclasses.fields(Figure)}
    options = {k: v for k, v in keywords.items() if k in fields}
    inputs = {k: v for k, v in keywords.items() if k not in fields}
    return Figure(draw, help_text, label, category, stage, inputs, **options)


def groups(args) -> list[str]:
    """Frequency groups, low to high, from the --entities table."""
    from ..data.entities import group_order

    return group_order(pd.read_parquet(args.entities))


def first_budget(s: dict) -> str:
    """The first configured edge budget's label: the one a figure of one budget draws."""
    return budget_label(s["circuits"]["edge_budgets"][0])


def is_enabled(figure: Figure, cfg: dict) -> bool:
    """Whether the default target asks for the figure: its config switch, if any, is on."""
    if figure.enabled is None:
        return True
    value = cfg
    for key in figure.enabled.split("."):
        value = value[key]
    return bool(value)


__all__ = ["Figure", "figure", "groups", "first_budget", "is_enabled"]
