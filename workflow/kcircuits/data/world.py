"""Importing a world laid out like the original study's `data/` (zjunlp/DynamicKnowledgeCircuits).

Reads `selection_pool/*.json` (JSON lists of strings; `people_wiki.csv`, column `name`, for the revised
entities' famous names), `templates/*.jsonl` (one template per line: a JSON string, or an object with a
`template` field, `{full_name}` and the attribute's placeholder) and, when present, one
`entities_*/new.jsonl` and `revised.jsonl` (the original's fields: full_name, birth_date, birth_month,
birth_year, birthday, city, major, university, company, frequency). Nothing here writes: `import_world`
returns the project's files as values and a report; the stage writes them (kcircuits import-world).

What changes on the way in, all reported: repeated pool values and templates are dropped (the first
kept); templates the project cannot fill are dropped with the reason; templates with the value before
the name stay in training text but give no query prompt; a seeded share of the name-first templates
whose prompt no other template contains is held out as the paraphrase split (never in training
text), never a circuit task's prompt. Birth-date pools are not used (birthdays come from the entities
or entities.birth_years); multiple-choice and true/false templates are the project's own.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .. import ATTRIBUTES
from ..resources import (
    ATTRIBUTE_POOLS,
    MIN_BIOGRAPHY_TEMPLATES,
    NAME_POOLS,
    first_word_groups,
    pool_files,
    prompt_prefix,
    statement_problem,
    template_files,
)
from .entities import MONTHS

POOLS_DIR, TEMPLATES_DIR = "selection_pool", "templates"
FAMOUS_CSV = "people_wiki.csv"  # the original's revised-entity names: column "name"
ENTITY_FILES = {"new": "new.jsonl", "revised": "revised.jsonl"}
ENTITY_COLUMNS = ("name", "type", "frequency", "birth_day", "birth_month", "birth_year", *ATTRIBUTES)
PROJECT_TEMPLATES = ("multiple_choice", "true_false")  # the original has none: the project's are copied


class WorldError(ValueError):
    """The source folder cannot be imported; the message names the file (one line, as a bad config)."""


def _singular(name: str) -> str:
    return name[:-3] + "y" if name.endswith("ies") else name[:-1]


def _pool_for(stem: str) -> str | None:
    """The project's pool a selection-pool file fills: `city.json` or `cities.json` -> cities."""
    names = [*NAME_POOLS, *ATTRIBUTE_POOLS.values()]
    return next((n for n in names if stem.lower() in (n, _singular(n))), None)


def _attribute_for(stem: str) -> str | None:
    """The attribute a template file holds: `birth.jsonl` / `birthday.jsonl` -> birthday, `cities` -> city."""
    stem = stem.lower()
    if stem in ("birth", "births"):
        return "birthday"
    return next((a for a in ATTRIBUTES if stem in (a, a + "s", ATTRIBUTE_POOLS.get(a))), None)


def _read_json_list(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WorldError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(data, list) or not all(isinstance(v, (str, int)) for v in data):
        raise WorldError(f"{path}: expected a JSON list of strings")
    return [str(v) for v in data]


def _read_famous_csv(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if "name" not in (reader.fieldnames or []):
            raise WorldError(f"{path}: needs a 'name' column")
        return [row["name"] for row in reader]


def clean_pool(values: list[str]) -> tuple[list[str], dict]:
    """Values stripped, in order, each once; a pool line cannot be empty or start with '#' (a comment)."""
    kept, seen, duplicates, unusable = [], set(), [], []
    for raw in values:
        value = raw.strip()
        if not value or value.startswith("#") or "\n" in value:
            unusable.append(raw)
        elif value in seen:
            duplicates.append(value)
        else:
            seen.add(value)
            kept.append(value)
    return kept, {"read": len(values), "kept": len(kept), "duplicates": duplicates, "unusable": unusable}


def read_pools(src: Path, famous_fallback: list[str]) -> tuple[dict[str, list[str]], dict]:
    """Every project pool from selection_pool/; famous names from people_wiki.csv, a famous_name(s)
    pool, or else `famous_fallback` (the imported revised entities' names)."""
    folder = src / POOLS_DIR
    if not folder.is_dir():
        raise WorldError(f"{folder}: no such folder (the original's data/ holds selection_pool/ and templates/)")
    raw, files, unused = {}, {}, []
    for path in sorted(folder.iterdir()):
        pool = _pool_for(path.stem) if path.suffix == ".json" else None
        if pool in raw:
            raise WorldError(f"{path}: a second file for pool {pool} (first: {files[pool]})")
        if pool is not None:
            raw[pool], files[pool] = _read_json_list(path), f"{POOLS_DIR}/{path.name}"
        elif path.name != FAMOUS_CSV:
            unused.append(f"{POOLS_DIR}/{path.name}")
    if "famous_names" not in raw and (folder / FAMOUS_CSV).is_file():
        raw["famous_names"], files["famous_names"] = _read_famous_csv(folder / FAMOUS_CSV), f"{POOLS_DIR}/{FAMOUS_CSV}"
    if "famous_names" not in raw and famous_fallback:
        raw["famous_names"], files["famous_names"] = list(famous_fallback), "the revised entities' names"
    missing = [name for name in (*NAME_POOLS, *ATTRIBUTE_POOLS.values()) if name not in raw]
    if missing:
        raise WorldError(f"{folder}: no file for pool(s) {missing} (e.g. {_singular(missing[0])}.json)")
    pools, report = {}, {}
    for name in (*NAME_POOLS, *ATTRIBUTE_POOLS.values()):
        pools[name], report[name] = clean_pool(raw[name])
        if not pools[name]:
            raise WorldError(f"{src / files[name]}: no usable value")
        report[name]["file"] = files[name]
    shared = {attr: first_word_groups(pools[name]) for attr, name in ATTRIBUTE_POOLS.items()}
    return pools, {"pools": report, "shared_first_words": shared, "unused_files": unused}


def _template_line(path: Path, number: int, line: str) -> str:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        raise WorldError(f"{path}:{number}: not valid JSON: {err}") from err
    if isinstance(item, dict):
        item = item.get("template", next(iter(item.values())) if len(item) == 1 else None)
    if not isinstance(item, str):
        raise WorldError(f"{path}:{number}: expected a template string (or an object with a 'template' field)")
    return item.replace("{full_name}", "{name}")


def read_templates(src: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Every attribute's templates, in file order, with {full_name} written {name} (nothing else
    changed), and the template files no attribute reads."""
    folder, out, unused = src / TEMPLATES_DIR, {}, []
    if not folder.is_dir():
        raise WorldError(f"{folder}: no such folder (the original's data/ holds selection_pool/ and templates/)")
    for path in sorted(folder.glob("*.jsonl")):
        attr = _attribute_for(path.stem)
        if attr is None:
            unused.append(f"{TEMPLATES_DIR}/{path.name}")
            continue
        if attr in out:
            raise WorldError(f"{path}: a second template file for {attr!r}")
        lines = path.read_text(encoding="utf-8").splitlines()
        out[attr] = [_template_line(path, i, line) for i, line in enumerate(lines, 1) if line.strip()]
    missing = [a for a in ATTRIBUTES if a not in out]
    if missing:
        raise WorldError(f"{folder}: no template file for {missing} (e.g. {missing[0]}.jsonl; birthday: birth.jsonl)")
    return out, unused


def holdout_candidates(attr: str, templates: list[str], keep_prompts: set[str]) -> list[int]:
    """Indices of name-first templates that can be held out: no other template contains their
    prompt (so the prompt never occurs in training text) and it is not in `keep_prompts`."""
    out = []
    for i, tpl in enumerate(templates):
        prompt = prompt_prefix(tpl, attr)
        if prompt and prompt not in keep_prompts and not any(prompt in t for j, t in enumerate(templates) if j != i):
            out.append(i)
    return out


def split_templates(attr: str, templates: list[str], share: float, keep_prompts: set[str],
                    rng: np.random.Generator) -> tuple[list[str], list[str], dict]:
    """(training templates, held-out paraphrase templates, report) for one attribute."""
    usable, duplicates, dropped = [], [], []
    for tpl in templates:
        problem = statement_problem(attr, tpl, need_prefix=False)
        if problem:
            dropped.append({"template": tpl, "reason": problem})
        elif tpl in usable:
            duplicates.append(tpl)
        else:
            usable.append(tpl)
    name_first = [t for t in usable if prompt_prefix(t, attr)]
    candidates = holdout_candidates(attr, usable, keep_prompts)
    n_hold = min(max(1, round(share * len(name_first))), len(candidates), len(name_first) - MIN_BIOGRAPHY_TEMPLATES)
    if n_hold < 1:
        raise WorldError(f"{TEMPLATES_DIR}/: {attr!r} has {len(name_first)} name-first templates, {len(candidates)} "
                         f"of them holdable; a paraphrase split needs one more than {MIN_BIOGRAPHY_TEMPLATES}")
    held = set(rng.choice(candidates, size=n_hold, replace=False).tolist())
    train = [t for i, t in enumerate(usable) if i not in held]
    paraphrase = [t for i, t in enumerate(usable) if i in held]
    report = {"read": len(templates), "duplicates": duplicates, "dropped": dropped,
              "value_before_name": [t for t in usable if not prompt_prefix(t, attr)],
              "paraphrase": paraphrase, "training": len(train), "query_prompts": len(name_first) - n_hold}
    return train, paraphrase, report


def _json_object(path: Path, number: int, line: str) -> dict:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        raise WorldError(f"{path}:{number}: not valid JSON: {err}") from err
    if not isinstance(item, dict):
        raise WorldError(f"{path}:{number}: expected a JSON object")
    return item


def _entity_row(path: Path, number: int, item: dict, kind: str) -> dict:
    """One original entity as a row of the project's entity table (values as given)."""
    try:
        month = item["birth_month"]
        month = MONTHS.index(month) + 1 if isinstance(month, str) and not month.isdigit() else int(month)
        row = {"name": item.get("full_name", item.get("name")), "type": item.get("type", kind),
               "frequency": int(item["frequency"]), "birth_day": int(item.get("birth_date", item.get("birth_day"))),
               "birth_month": month, "birth_year": int(item["birth_year"]),
               **{attr: item[attr] for attr in ATTRIBUTES}}
    except (KeyError, ValueError, TypeError) as err:
        raise WorldError(f"{path}:{number}: missing or malformed field {err}") from err
    if row["type"] != kind or row["frequency"] < 1 or not isinstance(row["name"], str):
        raise WorldError(f"{path}:{number}: needs a name, type {kind!r} and a frequency >= 1")
    return row


def entity_folder(src: Path) -> Path | None:
    """The one `entities*/` folder holding new.jsonl or revised.jsonl, or None."""
    folders = sorted(p for p in src.glob("entities*")
                     if p.is_dir() and any((p / f).is_file() for f in ENTITY_FILES.values()))
    if len(folders) > 1:
        raise WorldError(f"{src}: several entity folders {[p.name for p in folders]}; keep one")
    return folders[0] if folders else None


def read_entities(folder: Path) -> tuple[list[dict], dict]:
    """Rows of new.jsonl then revised.jsonl, in file order; a repeated name keeps its first row."""
    rows, seen, repeated = [], set(), []
    for kind, name in ENTITY_FILES.items():
        path = folder / name
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = _entity_row(path, number, _json_object(path, number, line), kind)
                if row["name"] in seen:
                    repeated.append(row["name"])
                else:
                    rows.append(row)
                    seen.add(row["name"])
    by_type = {kind: sum(r["type"] == kind for r in rows) for kind in ENTITY_FILES}
    return rows, {"folder": folder.name, **by_type, "repeated_names": repeated}


def check_entity_values(rows: list[dict], pools: dict[str, list[str]]) -> None:
    for attr, pool_name in ATTRIBUTE_POOLS.items():
        pool = set(pools[pool_name])
        stray = sorted({r[attr] for r in rows} - pool)
        if stray:
            raise WorldError(f"entities: {attr} value(s) not in the {pool_name} pool: {stray[:5]}")


def import_world(src: str | Path, share: float, keep_prompts: dict[str, str], rng: np.random.Generator) -> dict:
    """Everything a world folder holds, as values: pools, templates (biography, paraphrase), entity
    rows (or None) and the report. `keep_prompts`: attribute -> a prompt never held out."""
    src = Path(src)
    folder = entity_folder(src)
    rows, entity_report = read_entities(folder) if folder else (None, None)
    famous = [r["name"] for r in rows or [] if r["type"] == "revised"]
    pools, report = read_pools(src, famous)
    if rows is not None:
        check_entity_values(rows, pools)
    raw, unused = read_templates(src)
    report["unused_files"] += unused
    biography, paraphrase, template_report = {}, {}, {}
    for attr in ATTRIBUTES:
        keep = {keep_prompts[attr]} if attr in keep_prompts else set()
        biography[attr], paraphrase[attr], template_report[attr] = split_templates(attr, raw[attr], share, keep, rng)
    report.update(templates=template_report, entities=entity_report, project_templates=list(PROJECT_TEMPLATES))
    return {"pools": pools, "biography": biography, "paraphrase": paraphrase, "entities": rows, "report": report}


def world_files(out: str | Path, with_entities: bool) -> dict[str, Path]:
    """Every file import-world writes under `out`, by name: pools/*.txt, templates/*.yaml,
    entities.parquet (with entities) and world.json (the report)."""
    out = Path(out)
    files = {f"pool_{k}": v for k, v in pool_files(out / "pools").items()}
    files.update({f"templates_{k}": v for k, v in template_files(out / "templates").items()})
    if with_entities:
        files["entities"] = out / "entities.parquet"
    files["report"] = out / "world.json"
    return files


def import_files(src: str | Path, out: str | Path) -> dict:
    """What the rule import_world reads and writes: `inputs`, the source files (a changed one
    re-imports), and `outputs`, world_files by name (as strings)."""
    src = Path(src)
    folder = entity_folder(src)
    found = [*sorted((src / POOLS_DIR).glob("*.json")), *sorted((src / TEMPLATES_DIR).glob("*.jsonl"))]
    if (src / POOLS_DIR / FAMOUS_CSV).is_file():
        found.append(src / POOLS_DIR / FAMOUS_CSV)
    found += [folder / f for f in ENTITY_FILES.values() if (folder / f).is_file()] if folder else []
    outputs = world_files(out, with_entities=folder is not None)
    return {"inputs": [str(p) for p in found], "outputs": {k: str(v) for k, v in outputs.items()}}
