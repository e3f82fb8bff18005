"""Pool and template files shipped in `resources/`: loading and validation.

Pools are plain text (one value per line, `#` comments). Templates are YAML mappings from attribute
to a list of strings with `{name}` and `{<attribute>}` placeholders (unique names, so filling one can
never corrupt another, unlike single-letter placeholders).
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import ATTRIBUTES

ATTRIBUTE_POOLS = {"city": "cities", "major": "majors", "university": "universities", "company": "companies"}
NAME_POOLS = ("first_names", "middle_names", "last_names", "famous_names")
TEMPLATE_FILES = ("biography", "paraphrase", "multiple_choice", "true_false")
MIN_BIOGRAPHY_TEMPLATES = 3


class ResourceError(ValueError):
    """A pool or template file is missing or malformed; the message names the file."""


def pool_files(pools_dir: str | Path) -> dict[str, Path]:
    names = list(NAME_POOLS) + list(ATTRIBUTE_POOLS.values())
    return {name: Path(pools_dir) / f"{name}.txt" for name in names}


def template_files(templates_dir: str | Path) -> dict[str, Path]:
    return {name: Path(templates_dir) / f"{name}.yaml" for name in TEMPLATE_FILES}


def _require(path: Path) -> None:
    if not path.is_file():
        raise ResourceError(f"missing resource file: {path}")


def read_pool(path: Path) -> list[str]:
    _require(path)
    values = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    values = [v for v in values if v and not v.startswith("#")]
    if not values:
        raise ResourceError(f"pool file is empty: {path}")
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ResourceError(f"pool file {path} repeats values: {dupes[:5]}")
    return values


def first_word_groups(values: list[str]) -> dict[str, list[str]]:
    """Values that share a first word, by that word (only words that begin two or more values)."""
    groups: dict[str, list[str]] = {}
    for value in values:
        groups.setdefault(value.split()[0], []).append(value)
    return {word: vs for word, vs in groups.items() if len(vs) > 1}


def load_pools(pools_dir: str | Path, shared_first_words: bool = False) -> dict[str, list[str]]:
    """Return every pool keyed by pool name ('cities', 'first_names', ...), validated. Attribute
    values must begin with distinct first words unless `shared_first_words` (config
    resources.shared_first_words, e.g. the original study's pools)."""
    pools = {name: read_pool(path) for name, path in pool_files(pools_dir).items()}
    if shared_first_words:
        return pools
    for attr, name in ATTRIBUTE_POOLS.items():
        first_words: dict[str, str] = {}
        for value in pools[name]:
            word = value.split()[0]
            if word in first_words:
                raise ResourceError(
                    f"pool file {pool_files(pools_dir)[name]}: values {first_words[word]!r} and {value!r} "
                    f"begin with the same word {word!r}; probes read the first answer token, so every "
                    f"{attr} must begin with a distinct first word")
            first_words[word] = value
    return pools


def placeholders(template: str) -> list[str]:
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def prompt_prefix(template: str, attribute: str) -> str | None:
    """The query prompt a template yields: its text before the attribute, if `{name}` is in it."""
    cut = template.index("{" + attribute + "}")
    prefix = template[:cut].rstrip()
    return prefix if "{name}" in prefix else None


def statement_problem(attr: str, template: str, need_prefix: bool) -> str | None:
    """Why a statement template for `attr` is unusable, or None: {name} and {<attr>} once each and
    nothing else in braces, the value after a space; with need_prefix, {name} before the value."""
    try:
        fields = placeholders(template)
    except ValueError:
        return f"template for {attr!r} has unbalanced braces: {template!r}"
    if sorted(fields) != sorted(["name", attr]):
        return (f"template for {attr!r} must use {{name}} and {{{attr}}} exactly once each "
                f"and no other placeholder: {template!r}")
    cut = template.index("{" + attr + "}")
    if cut == 0 or template[cut - 1] != " ":
        return f"{{{attr}}} must follow a space (answers start with ' '): {template!r}"
    if need_prefix and prompt_prefix(template, attr) is None:
        return f"{{name}} must come before {{{attr}}} in a prompt template: {template!r}"
    return None


def _check_statement(path: Path, attr: str, template: str, need_prefix: bool) -> None:
    problem = statement_problem(attr, template, need_prefix)
    if problem:
        raise ResourceError(f"{path}: {problem}")


@dataclass(frozen=True)
class Templates:
    biography: dict[str, list[str]]
    paraphrase: dict[str, list[str]]
    multiple_choice: dict[str, list[str]]
    true_false: dict[str, list[str]]

    def probe_prompts(self, attribute: str, paraphrase: bool = False) -> list[tuple[int, str]]:
        """(template index, prompt) for every template that yields a prompt ending before the value."""
        source = (self.paraphrase if paraphrase else self.biography)[attribute]
        out = [(i, prompt_prefix(t, attribute)) for i, t in enumerate(source)]
        return [(i, p) for i, p in out if p is not None]


def _read_template_file(path: Path) -> dict[str, list[str]]:
    _require(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ResourceError(f"template file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ResourceError(f"template file {path} must map attribute -> list of templates")
    unknown = sorted(set(data) - set(ATTRIBUTES))
    if unknown:
        raise ResourceError(f"template file {path} has unknown attributes {unknown}; known: {list(ATTRIBUTES)}")
    for attr in ATTRIBUTES:
        items = data.get(attr)
        if not items or not isinstance(items, list) or not all(isinstance(t, str) and t for t in items):
            raise ResourceError(f"template file {path} needs a non-empty list of templates for {attr!r}")
        if len(set(items)) != len(items):
            raise ResourceError(f"template file {path} repeats a template for {attr!r}")
    return {attr: list(data[attr]) for attr in ATTRIBUTES}


def load_templates(templates_dir: str | Path) -> Templates:
    files = template_files(templates_dir)
    t = Templates(**{name: _read_template_file(path) for name, path in files.items()})
    for attr in ATTRIBUTES:
        if len(t.biography[attr]) < MIN_BIOGRAPHY_TEMPLATES:
            raise ResourceError(f"{files['biography']}: {attr!r} needs at least {MIN_BIOGRAPHY_TEMPLATES} templates")
        for tpl in t.biography[attr]:
            _check_statement(files["biography"], attr, tpl, need_prefix=False)
        if not t.probe_prompts(attr):
            raise ResourceError(f"{files['biography']}: {attr!r} needs a template with {{name}} before {{{attr}}}")
        seen_prompts = {p for _, p in t.probe_prompts(attr)}
        for tpl in t.paraphrase[attr]:
            _check_statement(files["paraphrase"], attr, tpl, need_prefix=True)
            if prompt_prefix(tpl, attr) in seen_prompts:
                raise ResourceError(f"{files['paraphrase']}: {tpl!r} gives a prompt that training text "
                                    "already contains")
        for tpl in t.true_false[attr]:
            _check_statement(files["true_false"], attr, tpl, need_prefix=False)
        for tpl in t.multiple_choice[attr]:
            if placeholders(tpl) != ["name"]:
                raise ResourceError(f"{files['multiple_choice']}: question must use only {{name}}, once: {tpl!r}")
    return t
