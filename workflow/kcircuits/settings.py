"""Command-line pieces every stage shares: where its settings come from, its path options, threads
and device.

A stage takes its settings either as JSON (`--settings`, what the rules pass: the config sections the
stage reads plus the seed) or from config files (`--config config.yaml [more.yaml]`, merged and
validated exactly as the Snakefile does; kcircuits.config.stage_settings picks the sections).
Torch-free: importing a stage module for `kcircuits --help` must not load torch.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .config import REPO_ROOT, ConfigError, load_config, resource_dir, stage_settings, validate_config, validate_schema


def add_settings_arguments(p: argparse.ArgumentParser, stage: str, required: bool = True) -> None:
    """--settings JSON (the rules) or --config files (by hand); `stage` names the config sections
    (kcircuits.config.stage_sections) that --config files are cut down to. Not required: without
    either, the embedded default config.yaml."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--settings", help="JSON settings (what the Snakemake rule passes)")
    src.add_argument("--config", nargs="+", help="config YAML file(s), merged left to right")
    p.set_defaults(settings_stage=stage)


def actions(subparsers, name: str, help_text: str, run, description: str, dest: str = "action",
            metavar: str = "ACTION"):
    """A stage command whose actions are required sub-subcommands; returns the actions' subparsers
    (add each with `command`). `run(args)` is the stage's entry point."""
    p = subparsers.add_parser(name, help=help_text, description=description)
    p.set_defaults(run=run)
    return p.add_subparsers(dest=dest, required=True, metavar=metavar)


def command(subparsers, name: str, help_text: str, stage: str, handler,
            settings_required: bool = True) -> argparse.ArgumentParser:
    """A (sub)command reading the settings of `stage`; running it calls handler(args, settings)."""
    p = subparsers.add_parser(name, help=help_text, description=help_text)
    add_settings_arguments(p, stage, settings_required)
    p.set_defaults(handler=handler)
    return p


def add_paths(p: argparse.ArgumentParser, *names: str, many: bool = False, required: bool = True) -> None:
    """One --NAME option per name (underscores become dashes); many: one or more paths each."""
    for name in names:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, required=required, nargs="+" if many else None)


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """Where a model-running job computes: torch CPU threads and the device (config compute.KIND)."""
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: cuda when torch sees a GPU, else cpu (kcircuits.checkpoint.resolve_device)")


def set_threads(threads: int | None) -> None:
    """torch CPU threads, when given (imports torch: only for stages that run a model)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def read_settings(args) -> dict:
    """The stage's settings: --settings JSON, or the --config files merged, validated and cut to
    the stage's sections (the validated config is kept as args.cfg, e.g. for resource folders)."""
    if args.settings:
        try:
            return json.loads(args.settings)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--settings: not valid JSON ({err})") from err
    args.config = args.config or [str(REPO_ROOT / "config.yaml")]
    if getattr(args, "schema_only", False):  # import-world: the semantic checks read the world it writes
        args.cfg = load_config(args.config)
        validate_schema(args.cfg)
    else:
        args.cfg = validate_config(load_config(args.config), root=_config_root(args))
    return stage_settings(args.cfg, args.settings_stage)


def run_handler(args) -> None:
    """What every stage's run(args) does once its own preparation is done."""
    args.handler(args, read_settings(args))


def resource_path(args, key: str) -> Path:
    """--pools / --templates when given, else the config's resources.KEY (relative to the first
    config file); with --settings the option is required."""
    explicit = getattr(args, key)
    if explicit:
        return Path(explicit)
    if getattr(args, "cfg", None) is None:
        raise ConfigError(f"--{key} is required with --settings")
    return resource_dir(args.cfg, key, root=_config_root(args))


def optional_resource_path(args, option: str, key: str) -> Path | None:
    """--OPTION when given, else the config's resources.KEY (null: None); with --settings, the option."""
    explicit = getattr(args, option)
    if explicit or getattr(args, "cfg", None) is None or args.cfg["resources"][key] is None:
        return Path(explicit) if explicit else None
    return resource_dir(args.cfg, key, root=_config_root(args))


def stage_pools(args) -> dict[str, list[str]]:
    """The pools a stage reads (--pools or the config's). Whether attribute values may share a first
    word is the config's rule (resources.shared_first_words), checked where the config is validated
    (the Snakefile, --config), so a stage never rejects a world its config accepted."""
    from .resources import load_pools

    return load_pools(resource_path(args, "pools"), shared_first_words=True)


def _config_root(args) -> Path:
    return Path(args.config[0]).resolve().parent


__all__ = ["add_settings_arguments", "actions", "command", "add_paths", "add_job_arguments", "set_threads",
           "read_settings", "run_handler", "resource_path", "optional_resource_path", "stage_pools"]
