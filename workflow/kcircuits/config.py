"""Configuration: merge, schema validation with messages that name the key, semantic checks.

Used by the Snakefile before any job runs and by the CLI when a stage is run by hand. The schema is
`schemas/config.schema.yaml` plus every study's `schema.yaml` (kcircuits.studies), and every study's
`config.yaml` lies under any config (its sections' defaults); checks that a schema cannot express (disjoint frequency
groups, files that must exist, prompts that must be training-template prefixes, model shapes the families can build,
a usable `model.init` folder, ordered thresholds) live in `check_semantics`, and each study's in its
`check`.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import ATTRIBUTES
from .checkpoint import CheckpointError, context_length, read_model_config
from .resources import ATTRIBUTE_POOLS, ResourceError, load_pools, load_templates, pool_files, template_files
from .train.model import FAMILIES, check_shape

if TYPE_CHECKING:
    import jsonschema

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "schemas" / "config.schema.yaml"

# Which config sections each core stage reads (stage_sections() adds the studies'); they become the
# rule's params, so changing one section reruns exactly the stages that read it (and what follows).
STAGE_SECTIONS = {
    "entities": ["entities"],
    "biographies": ["biographies"],
    "probes": ["probes"],
    "qa": ["qa"],
    "tokenizer": ["tokenizer"],
    "circuit_pairs": ["circuit_pairs"],
    "train": ["model", "train"],  # each training job keeps only its slice: kcircuits.train.schedule.phase_settings
    "evaluate": ["evaluate"],
    "figures": ["evaluate"],  # metric names (Hit@k) and which probe sets exist
    "circuits": ["circuits", "circuit_pairs"],  # task prompts: Hit@k is read on the circuit's own prompt
    "analysis": ["analysis", "circuits", "circuit_pairs"],  # edge budgets, task prompts (subject positions)
    "neurons": ["neurons", "circuits"],  # circuits: edge budgets of the neuron-circuit overlap
    "world": ["world", "circuit_pairs"],  # import-world: the paraphrase share; circuit task prompts are never held out
}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _studies() -> dict:
    from .studies import STUDIES

    return STUDIES


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def with_study_defaults(cfg: dict) -> dict:
    """cfg over every study's config.yaml (a study's sections and compute kinds where cfg leaves them out)."""
    defaults: dict = {}
    for study in _studies().values():
        defaults = deep_merge(defaults, _yaml(study.file("config.yaml")))
    return deep_merge(defaults, cfg)


def load_config(paths: list[str | Path]) -> dict:
    """Load and deep-merge YAML files (later files override earlier ones), as Snakemake does, over
    the studies' defaults."""
    cfg: dict = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        cfg = deep_merge(cfg, _yaml(path))
    return with_study_defaults(cfg)


def stage_sections() -> dict[str, list[str]]:
    """Every settings stage's config sections: the core's (STAGE_SECTIONS) and each study's."""
    out = dict(STAGE_SECTIONS)
    for study in _studies().values():
        for stage, sections in study.sections.items():
            if stage in out:
                raise ConfigError(f"study {study.name}: settings stage {stage!r} is already defined")
            out[stage] = list(sections)
    return out


def load_schema() -> dict:
    """The whole config schema: the core's, each study's top-level sections (its schema.yaml
    `properties`, all required) and compute kinds (its `compute` entries: description each)."""
    schema = _yaml(SCHEMA_PATH)
    compute = schema["properties"]["compute"]
    for study in _studies().values():
        fragment = _yaml(study.file("schema.yaml"))
        for key, section in fragment.get("properties", {}).items():
            if key in schema["properties"]:
                raise ConfigError(f"{study.file('schema.yaml')}: section {key!r} is already defined")
            schema["properties"][key] = section
            schema["required"].append(key)
        for kind, description in fragment.get("compute", {}).items():
            compute["properties"][kind] = {"$ref": "#/$defs/job_resources", "description": description}
            compute["required"].append(kind)
        schema["$defs"].update(fragment.get("$defs", {}))
    return schema


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _format_schema_error(err: jsonschema.ValidationError) -> str:
    where = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        return f"{where}: unknown key(s) {', '.join(repr(e) for e in extra)}"
    if err.validator == "required":
        return f"{where}: {err.message}"
    return f"{where}: {err.message}"


def validate_schema(cfg: Any) -> None:
    import jsonschema  # here: a stage run with --settings never validates (a tenth of a second a job)

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n".join(f"  - {_format_schema_error(e)}" for e in errors)
        raise ConfigError(f"invalid config:\n{lines}")


def config_path(value: str | Path, root: str | Path = REPO_ROOT) -> Path:
    """A path from the config: relative paths are resolved against `root` (the repository root)."""
    path = Path(value)
    return path if path.is_absolute() else Path(root) / path


def resource_dir(cfg: dict, key: str, root: str | Path = REPO_ROOT) -> Path:
    return config_path(cfg["resources"][key], root)


def init_dir(cfg: dict, root: str | Path = REPO_ROOT) -> Path | None:
    """The `model.init` folder continual pre-training starts from, resolved; None trains a base model."""
    init = cfg["model"].get("init")
    return config_path(init, root) if init else None


def check_frequency_groups(groups: dict) -> None:
    spans = sorted((g["min"], g.get("max"), name) for name, g in groups.items())
    expected = 1
    for lo, hi, name in spans:
        if hi is not None and hi < lo:
            raise ConfigError(f"entities.frequency_groups.{name}: max {hi} is below min {lo}")
        if lo != expected:
            problem = ("overlaps the previous group" if lo < expected
                       else f"leaves frequencies {expected}..{lo - 1} in no group")
            raise ConfigError(f"entities.frequency_groups.{name}: min {lo} {problem}")
        if hi is None:
            if (lo, hi, name) != spans[-1]:
                raise ConfigError(f"entities.frequency_groups.{name}: only the highest group may omit max")
            return
        expected = hi + 1
    raise ConfigError(f"entities.frequency_groups: frequencies above {expected - 1} fall in no group; "
                      "omit max on the highest group")


def check_model(cfg: dict, root: str | Path = REPO_ROOT) -> None:
    """Shapes every family can build; a `model.init` folder that holds a model of a known family whose
    context covers train.block_size (else block_size against model.n_positions)."""
    try:
        check_shape(cfg["model"])
    except ValueError as err:
        raise ConfigError(str(err)) from err
    block, init = cfg["train"]["block_size"], init_dir(cfg, root)
    if init is None:
        if block > cfg["model"]["n_positions"]:
            raise ConfigError(f"train.block_size ({block}) exceeds model.n_positions ({cfg['model']['n_positions']})")
        return
    try:
        hf_config = read_model_config(init)
    except CheckpointError as err:
        raise ConfigError(f"model.init: {err}") from err
    family, positions = hf_config.get("model_type"), context_length(hf_config)
    if family not in FAMILIES:
        raise ConfigError(f"model.init: {init}/config.json has model_type {family!r}; supported: {', '.join(FAMILIES)}")
    if positions is not None and block > positions:
        raise ConfigError(f"train.block_size ({block}) exceeds the {positions} positions of model.init ({init})")


def check_analysis(cfg: dict) -> None:
    heads = cfg["analysis"]["heads"]
    if heads["mover_ratio"] <= heads["relation_ratio"]:
        raise ConfigError(f"analysis.heads.mover_ratio ({heads['mover_ratio']}) must be greater than "
                          f"analysis.heads.relation_ratio ({heads['relation_ratio']})")


def check_neurons(cfg: dict, templates) -> None:
    """Saved scores must cover both selections; p's band ordered; bags of at least min_prompts."""
    n = cfg["neurons"]
    for key in ("threshold", "baseline_threshold"):
        if n[key] < n["store_threshold"]:
            raise ConfigError(f"neurons.{key} ({n[key]}) is below neurons.store_threshold ({n['store_threshold']}): "
                              "the selection would need scores that are not saved")
    lo, hi = n["share"]["band"]
    if lo > hi:
        raise ConfigError(f"neurons.share.band: lower end {lo} is above the upper end {hi}")
    for attr in ATTRIBUTES:
        prompts = templates.probe_prompts(attr)
        if len(prompts) < n["min_prompts"]:
            raise ConfigError(f"resources.templates: {attr!r} has {len(prompts)} query templates ({{name}} before "
                              f"the value); neurons.min_prompts needs {n['min_prompts']} per bag: add templates")


def check_world(cfg: dict, root: str | Path = REPO_ROOT) -> None:
    """An imported world's source (world.source) exists and is the one the resources read: the
    folders of resources.pools / templates are world.out's pools/ and templates/."""
    from .data.world import WorldError, entity_folder, world_files

    source = cfg["world"]["source"]
    if source is None:
        return
    src = config_path(source, root)
    if not (src / "selection_pool").is_dir() or not (src / "templates").is_dir():
        raise ConfigError(f"world.source: {src} holds no selection_pool/ and templates/ folders (the original "
                          f"study's data/); clone it there, or set world.source: null to use an imported world as is")
    try:
        entity_folder(src)  # one entities_*/ folder at most
    except WorldError as err:
        raise ConfigError(f"world.source: {err}") from err
    files = world_files(config_path(cfg["world"]["out"], root), with_entities=False)
    expected = {"pools": files["pool_cities"].parent, "templates": files["templates_biography"].parent}
    for key, folder in expected.items():
        if resource_dir(cfg, key, root) != folder:
            raise ConfigError(f"resources.{key}: {resource_dir(cfg, key, root)} is not the imported world's "
                              f"(world.out {cfg['world']['out']}); point it there or set world.source: null")


def check_imported_entities(cfg: dict, root: str | Path = REPO_ROOT) -> int | None:
    """resources.entities: a table of new and revised entities, as many as entities.n; returns that
    number (None without imported entities)."""
    import pyarrow.parquet as pq

    from .data.world import ENTITY_COLUMNS

    if cfg["resources"]["entities"] is None:
        return None
    path = resource_dir(cfg, "entities", root)
    if not path.is_file():
        raise ConfigError(f"resources.entities: no such file {path} (kcircuits import-world writes one)")
    try:
        table = pq.read_table(path, columns=["type"])
    except Exception as err:  # pyarrow raises several kinds for a file that is not a table with that column
        raise ConfigError(f"resources.entities: {path} is not an entity table: {err}") from err
    missing = sorted(set(ENTITY_COLUMNS) - set(pq.read_schema(path).names))
    types = set(table.column("type").to_pylist())
    if missing or not types <= {"new", "revised"}:
        raise ConfigError(f"resources.entities: {path} needs columns {list(ENTITY_COLUMNS)} and types new / revised "
                          f"(missing {missing}, types {sorted(map(str, types))})")
    if table.num_rows != cfg["entities"]["n"]:
        raise ConfigError(f"entities.n ({cfg['entities']['n']}) differs from the {table.num_rows} imported entities "
                          f"of resources.entities ({path}): they are used as given; set entities.n to match")
    return table.num_rows


def check_semantics(cfg: dict, root: str | Path = REPO_ROOT) -> None:
    check_model(cfg, root)
    check_analysis(cfg)
    ent = cfg["entities"]
    check_frequency_groups(ent["frequency_groups"])
    if ent["birth_years"]["min"] > ent["birth_years"]["max"]:
        raise ConfigError("entities.birth_years: min is greater than max")
    tok = cfg["tokenizer"]
    if tok["kind"] == "pretrained":
        if not tok.get("path"):
            raise ConfigError("tokenizer.path: required when tokenizer.kind is 'pretrained'")
        if (not (Path(tok["path"]) / "tokenizer_config.json").is_file()
                and not (Path(tok["path"]) / "tokenizer.json").is_file()):
            raise ConfigError(f"tokenizer.path: no Hugging Face tokenizer files in {tok['path']}")
    elif tok.get("path"):
        raise ConfigError("tokenizer.path: only used with tokenizer.kind 'pretrained'")
    check_world(cfg, root)
    for study in _studies().values():
        if study.check:
            study.function(study.check)(cfg, root)
    n_imported = check_imported_entities(cfg, root)
    try:
        pools = load_pools(resource_dir(cfg, "pools", root), cfg["resources"]["shared_first_words"])
        templates = load_templates(resource_dir(cfg, "templates", root))
    except ResourceError as err:
        raise ConfigError(f"resources: {err}") from err
    capacity = len(pools["first_names"]) * len(pools["middle_names"]) * len(pools["last_names"])
    # imported entities: background names avoid theirs (all counted: most are invented names)
    n_new = n_imported if n_imported is not None else round(ent["n"] * ent["new_fraction"])
    n_invented = n_new + ent["background"]
    if n_invented > capacity:
        raise ConfigError(f"entities: {n_invented} invented names needed (new + background) but the name "
                          f"pools only combine into {capacity}; add names or lower entities.n / background")
    check_neurons(cfg, templates)
    for attr, prompt in cfg["circuit_pairs"]["tasks"].items():
        prompts = {p for _, p in templates.probe_prompts(attr)}
        if prompt not in prompts:
            raise ConfigError(f"circuit_pairs.tasks.{attr}: {prompt!r} is not a prompt of any biography "
                              f"template for {attr!r}; choose one of {sorted(prompts)}")


def validate_config(cfg: Any, root: str | Path = REPO_ROOT) -> dict:
    """Raise ConfigError naming the key of the first problem found; return cfg unchanged if valid."""
    validate_schema(cfg)
    check_semantics(cfg, root)
    return cfg


def stage_settings(cfg: dict, stage: str) -> dict:
    """The part of the config a stage reads, plus the seed (becomes the rule's params)."""
    return {"seed": cfg["seed"], **{s: cfg[s] for s in stage_sections()[stage]}}


def resource_inputs(cfg: dict, root: str | Path = REPO_ROOT) -> dict[str, list[str]]:
    """Every pool and template file and the imported entities ([] when generated), so that editing
    one reruns the stages that read it."""
    return {
        "pools": [str(p) for p in pool_files(resource_dir(cfg, "pools", root)).values()],
        "templates": [str(p) for p in template_files(resource_dir(cfg, "templates", root)).values()],
        "entities": [str(resource_dir(cfg, "entities", root))] if cfg["resources"]["entities"] else [],
    }


__all__ = ["ATTRIBUTE_POOLS", "ConfigError", "deep_merge", "load_config", "load_schema", "stage_sections",
           "validate_config", "with_study_defaults",
           "stage_settings", "config_path", "resource_dir", "init_dir", "resource_inputs"]
