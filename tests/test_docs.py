"""The documentation: the generated configuration page is current, the generator renders what a schema
says, the README stays a short front page with the quick start, and every relative link resolves.
Fast: no Snakemake, no torch."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from kcircuits.config import load_schema
from kcircuits.schema_docs import main, render

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
STUDY_PAGES = sorted((REPO / "workflow" / "kcircuits" / "studies").glob("*/README.md"))
PAGES = [README, *sorted((REPO / "docs").glob("*.md")), *STUDY_PAGES]
QUICK_START = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && snakemake --cores all",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest",
)
STUDIES = ("interplay", "reckoning", "memory")


def test_configuration_page_is_current():
    page = REPO / "docs" / "configuration.md"
    assert page.read_text(encoding="utf-8") == render(load_schema()), \
        "docs/configuration.md is out of date: run `python -m kcircuits.schema_docs`"
    assert main(["--check"]) == 0


def test_check_fails_on_a_stale_page(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("# stale\n", encoding="utf-8")
    assert main(["--check", "--out", str(stale)]) == 1
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "python -m kcircuits.schema_docs" in message
    assert main(["--out", str(stale)]) == 0 and main(["--check", "--out", str(stale)]) == 0


SCHEMA = {
    "title": "toy configuration",
    "description": "A toy\n  schema.\n",
    "type": "object",
    "required": ["name", "outer", "jobs"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z]+$", "description": "The name."},
        "outer": {
            "description": "An outer section.",
            "type": "object",
            "required": ["inner", "mode"],
            "properties": {
                "inner": {
                    "type": "object",
                    "required": ["depth"],
                    "properties": {
                        "depth": {"type": "integer", "minimum": 1, "description": "How deep | really."},
                        "ratio": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
                    },
                },
                "mode": {"enum": ["fast", "slow"], "description": "The mode."},
                "groups": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "properties": {"min": {"type": "integer"}}},
                },
            },
        },
        "jobs": {
            "type": "object",
            "properties": {
                "train": {"$ref": "#/$defs/resources", "description": "Training jobs."},
                "eval": {"$ref": "#/$defs/resources"},
            },
        },
    },
    "$defs": {
        "resources": {
            "type": "object",
            "description": "Resources of one kind of job.",
            "properties": {"threads": {"type": "integer", "minimum": 1, "description": "Threads per job."}},
        },
    },
}


def _rows(text: str) -> dict[str, list[str]]:
    """Table rows by key: [type, constraints, description]."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in re.split(r"(?<!\\)\|", match[2])]
    return rows


def test_render_walks_nested_keys_enums_and_refs():
    text = render(SCHEMA)
    assert text == render(SCHEMA), "deterministic"
    assert text.startswith("# toy configuration\n") and "A toy schema." in text
    rows = _rows(text)
    # every key at every depth, by its dotted path, in the schema's order
    assert list(rows) == ["name", "outer.inner", "outer.inner.depth", "outer.inner.ratio", "outer.mode",
                          "outer.groups", "outer.groups.<name>.min", "jobs.train", "jobs.train.threads",
                          "jobs.eval", "jobs.eval.threads"]
    assert [line for line in text.splitlines() if line.startswith("## ")] == \
        ["## Top-level keys", "## `outer`", "## `jobs`"]
    assert "An outer section." in text
    assert rows["name"] == ["string", "matches `^[a-z]+$`", "The name."]
    assert rows["outer.inner.depth"] == ["integer", ">= 1", "How deep \\| really."]  # a pipe cannot split the row
    assert rows["outer.inner.ratio"] == ["number or null", "> 0, <= 1, optional", ""]
    assert rows["outer.mode"][0] == "one of `fast`, `slow`" and rows["outer.mode"][2] == "The mode."
    assert rows["outer.groups"][0] == "mapping of `<name>` to object"
    # $ref: the definition's fields under each key; the referring key's description wins over the definition's
    assert rows["jobs.train"] == ["object", "optional", "Training jobs."]
    assert rows["jobs.eval"] == ["object", "optional", "Resources of one kind of job."]
    assert rows["jobs.train.threads"] == rows["jobs.eval.threads"] == ["integer", ">= 1, optional", "Threads per job."]


def test_render_rejects_a_circular_ref():
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"$ref": "#/$defs/a"}}}
    with pytest.raises(ValueError, match="circular"):
        render(schema)


def test_readme_is_a_short_front_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    for command in QUICK_START:
        assert command in text
    assert "snakemake --cores all" in text
    for study in STUDIES:
        assert f"workflow/kcircuits/studies/{study}/README.md" in text


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _without_code_blocks(page: Path) -> str:
    return re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)


def _relative_links(page: Path):
    """(file, anchor) of every relative link; file is the page itself for an anchor of its own."""
    for target in LINK.findall(_without_code_blocks(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # a URL or mail address
        path, _, anchor = target.partition("#")
        yield (page.parent / path if path else page), anchor


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces as hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", _without_code_blocks(page), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    links = list(_relative_links(page))
    missing = [str(target) for target, _ in links if not target.exists()]
    assert not missing, f"{page.relative_to(REPO)}: links to missing files {missing}"
    dangling = [f"{target.name}#{anchor}" for target, anchor in links
                if anchor and target.suffix == ".md" and anchor not in _anchors(target)]
    assert not dangling, f"{page.relative_to(REPO)}: links to missing headings {dangling}"


def test_every_study_has_its_page():
    assert {p.parent.name for p in STUDY_PAGES} >= set(STUDIES)
