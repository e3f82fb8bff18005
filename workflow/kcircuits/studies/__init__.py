"""The study registry: every sub-package of kcircuits.studies that defines `STUDY` is a study.

A study (knowledge interplay, RECKONING, document memory, ...) builds on the core stages -- data,
training, evaluation, circuits, neurons -- and lives whole in its folder, like a model folder of
Hugging Face transformers; the registry plays the part of the auto mappings, except that studies are
found, not listed, so a new study is a new folder and nothing else. A study folder holds:

    __init__.py   STUDY = Study(...), importing nothing but this module (every other reference in
                  the record is a module name, imported when used: no import cycle, no torch)
    config.yaml   its config sections' defaults, merged under every config (the embedded default's too)
    schema.yaml   the JSON schema of those sections (properties of the top-level object)
    rules.smk     its rules, paths and targets (see docs/adding-a-study.md)
    report/       the captions of its figures, report/<figure>.rst
    README.md     its page of documentation
    ...           its stages, summaries, figures and findings, as Python modules

and its tests live in tests/studies/<name>/. The core (config validation, the CLI, the figure table,
the findings, the Snakefile) iterates STUDIES and never names a study; a study never imports another
(tests/test_imports.py checks both).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Study:
    """One study's record. Module names are relative to the study's package (".stage")."""

    name: str                              # the folder's name
    title: str                             # report category and documentation title
    package: str                           # the study's package (__name__ of its __init__)
    sections: dict[str, list[str]] = field(default_factory=dict)  # settings stage -> config sections
    check: str | None = None               # "module:check" -- check(cfg, root) raises ConfigError naming the key
    stages: tuple[str, ...] = ()           # CLI stage modules, each with add_parser(subparsers) and run(args)
    figures: str | None = None             # module with FIGURES: {name: kcircuits.figures.table.Figure}
    findings: dict[str, str] = field(default_factory=dict)  # findings.json key -> "module:markdown(summary)"
    place: int = 100                       # its place among the studies (CLI, findings.md): lower first

    @cached_property
    def folder(self) -> Path:
        return Path(importlib.import_module(self.package).__file__).parent

    def file(self, name: str) -> Path:
        """A file of the study's folder: config.yaml, schema.yaml, rules.smk, README.md, report/x.rst."""
        return self.folder / name

    def module(self, relative: str):
        return importlib.import_module(relative, self.package)

    def function(self, spec: str) -> Callable:
        """'.summary:order_markdown' -> that function of the study's module."""
        module, _, name = spec.partition(":")
        return getattr(self.module(module), name)

    def figure_table(self) -> dict:
        return dict(self.module(self.figures).FIGURES) if self.figures else {}


def discover() -> dict[str, Study]:
    """Every study folder's record, by place then name (folders starting with _ are not studies)."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.ispkg or info.name.startswith("_"):
            continue
        study = getattr(importlib.import_module(f"{__name__}.{info.name}"), "STUDY", None)
        if not isinstance(study, Study) or study.name != info.name:
            raise ImportError(f"{__name__}.{info.name}: a study folder defines STUDY = Study(name={info.name!r}, ...)")
        found[study.name] = study
    return dict(sorted(found.items(), key=lambda item: (item[1].place, item[0])))


STUDIES: dict[str, Study] = discover()

__all__ = ["STUDIES", "Study", "discover"]
