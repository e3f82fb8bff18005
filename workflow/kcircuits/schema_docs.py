"""The configuration reference, docs/configuration.md, generated from the config schema.

`render(schema)` writes one Markdown table per top-level section of the schema (the core's
schemas/config.schema.yaml merged with every study's schema.yaml fragment: kcircuits.config.load_schema),
a row per key at any depth: its dotted path, type, constraints and description, in the schema's order.
`$ref`s to `#/$defs/...` are rendered as the referenced definition's fields; the keys of a mapping with
free names (additionalProperties) appear as `<name>`. The output depends on the schema only.

    python -m kcircuits.schema_docs            # (re)write docs/configuration.md
    python -m kcircuits.schema_docs --check    # exit 1 if docs/configuration.md is not what it would write
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGE = Path("docs") / "configuration.md"
FREE_KEY = "<name>"
COMMAND = "python -m kcircuits.schema_docs"

# Constraint keywords in the order they are shown, and how.
_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
_COUNTS = (("minLength", "length >= {}"), ("maxLength", "length <= {}"), ("minItems", "at least {} item{}"),
           ("maxItems", "at most {} item{}"), ("minProperties", "at least {} key{}"),
           ("maxProperties", "at most {} key{}"))


def _text(value) -> str:
    """A description on one line (folded YAML keeps a trailing newline)."""
    return " ".join(str(value).split())


def _literal(value) -> str:
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    """Table-cell safe: no pipe splits the row."""
    return text.replace("|", "\\|")


class _Walker:
    def __init__(self, root: dict):
        self.root = root
        self.rows: list[tuple[str, str, str, str]] = []

    # --- schemas ---------------------------------------------------------------------------
    def resolve(self, node: dict, seen: tuple[str, ...] = ()) -> tuple[dict, tuple[str, ...]]:
        """`node` with its $ref replaced by the referenced definition (the node's own keys win)."""
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                raise ValueError(f"schema: circular $ref {ref}")
            if not ref.startswith("#/"):
                raise ValueError(f"schema: only local $refs are supported, not {ref}")
            target = self.root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            seen = (*seen, ref)
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node, seen

    def alternatives(self, node: dict) -> list:
        return list(node.get("oneOf", [])) + list(node.get("anyOf", []))

    def type_name(self, node: dict, seen: tuple[str, ...] = (), own: str = "") -> str:
        """The node's type in words; `own`: its constraints, placed inside a mapping's words."""
        node, seen = self.resolve(node, seen)
        if "const" in node:
            return _literal(node["const"])
        if "enum" in node:
            return "one of " + ", ".join(_literal(v) for v in node["enum"])
        if self.alternatives(node):
            return " or ".join(dict.fromkeys(self.bounded(alt, seen) for alt in self.alternatives(node)))
        types = node.get("type")
        types = [types] if isinstance(types, str) else list(types or [])
        names = []
        for kind in types:
            if kind == "array" and "items" in node:
                inner = self.bounded(node["items"], seen)
                names.append(f"array of ({inner})" if " or " in inner else f"array of {inner}")
            elif self.is_mapping(node) and kind == "object":
                bounds = f" ({own})" if own else ""
                names.append(f"mapping{bounds} of `{FREE_KEY}` to {self.bounded(node['additionalProperties'], seen)}")
            else:
                names.append(kind)
        return " or ".join(names) if names else "any"

    def bounded(self, node: dict, seen: tuple[str, ...]) -> str:
        """An item's, value's or alternative's type with its constraints."""
        node, seen = self.resolve(node, seen)
        bounds = self.constraints(node, inline=True)
        if self.is_mapping(node):
            return self.type_name(node, seen, own=bounds)
        name = self.type_name(node, seen)
        return f"{name} ({bounds})" if bounds else name

    @staticmethod
    def is_mapping(node: dict) -> bool:
        """An object whose keys are free: its values' schema is additionalProperties."""
        return isinstance(node.get("additionalProperties"), dict) and not node.get("properties")

    def constraints(self, node: dict, inline: bool = False) -> str:
        """The node's own constraints (not its items' or values'), comma-separated."""
        parts = []
        for key, sign in _BOUNDS:
            if key in node:
                parts.append(f"{sign} {_number(node[key])}")
        for key, form in _COUNTS:
            if key in node:
                parts.append(form.format(node[key], "" if node[key] == 1 else "s"))
        if node.get("uniqueItems"):
            parts.append("unique items")
        if "pattern" in node:
            parts.append(f"matches `{node['pattern']}`")
        names = node.get("propertyNames")
        if isinstance(names, dict):
            if "enum" in names:
                parts.append("keys: " + ", ".join(_literal(v) for v in names["enum"]))
            if "pattern" in names:
                parts.append(f"keys match `{names['pattern']}`")
        if "default" in node and not inline:
            parts.append(f"default {_literal(node['default'])}")
        return ", ".join(parts)

    # --- the walk ----------------------------------------------------------------------------
    def walk(self, node: dict, path: str, required: bool | None, seen: tuple[str, ...] = ()) -> None:
        node, seen = self.resolve(node, seen)
        constraints = self.constraints(node)
        if required is False:
            constraints = ", ".join(filter(None, [constraints, "optional"]))
        self.rows.append((path, self.type_name(node, seen), constraints, _text(node.get("description", ""))))
        self.children(node, path, seen)

    def children(self, node: dict, path: str, seen: tuple[str, ...]) -> None:
        prefix = f"{path}." if path else ""
        properties = node.get("properties") or {}
        required = set(node.get("required", []))
        for key, child in properties.items():
            self.walk(child, f"{prefix}{key}", key in required, seen)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            extra, extra_seen = self.resolve(extra, seen)
            if properties or self.has_fields(extra, extra_seen):
                if properties:  # named keys and free ones: the free ones get a row of their own
                    self.walk(extra, f"{prefix}{FREE_KEY}", None, extra_seen)
                else:           # a mapping: its row says what the values are; the values' fields follow
                    self.fields_of_alternatives(extra, f"{prefix}{FREE_KEY}", extra_seen)
        for alt in self.alternatives(node):
            alt, alt_seen = self.resolve(alt, seen)
            if alt.get("properties"):
                self.children(alt, path, alt_seen)

    def has_fields(self, node: dict, seen: tuple[str, ...]) -> bool:
        if node.get("properties"):
            return True
        return any(self.has_fields(*self.resolve(alt, seen)) for alt in self.alternatives(node))

    def fields_of_alternatives(self, node: dict, path: str, seen: tuple[str, ...]) -> None:
        if node.get("properties"):
            self.children(node, path, seen)
            return
        for alt in self.alternatives(node):
            alt, alt_seen = self.resolve(alt, seen)
            self.fields_of_alternatives(alt, path, alt_seen)


def _number(value) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _table(rows) -> list[str]:
    lines = ["| key | type | constraints | description |", "|---|---|---|---|"]
    for path, kind, constraints, description in rows:
        lines.append(f"| `{path}` | {_cell(kind)} | {_cell(constraints)} | {_cell(description)} |")
    return lines


def render(schema: dict) -> str:
    """The configuration reference in Markdown: the schema's top-level scalars, then one section per
    top-level object, a table row per key (dotted path, type, constraints, description)."""
    walker = _Walker(schema)
    generated = (f"Generated by `{COMMAND}` from the config schema (`kcircuits.config.load_schema()`: "
                 "`schemas/config.schema.yaml` and every study's `schema.yaml`); edit the schema's descriptions, "
                 "not this page. Keys are required unless marked optional; `<name>` stands for a key you choose.")
    lines = [f"# {_text(schema.get('title', 'Configuration'))}", "", generated, ""]
    if schema.get("description"):
        lines += [_text(schema["description"]), ""]
    root, _ = walker.resolve(schema)
    required = set(root.get("required", []))
    scalars, sections = [], []
    for key, child in (root.get("properties") or {}).items():
        resolved, seen = walker.resolve(child)
        (sections if resolved.get("properties") or walker.has_fields(resolved, seen) else scalars).append(key)
    if scalars:
        walker.rows = []
        for key in scalars:
            walker.walk(root["properties"][key], key, key in required)
        lines += ["## Top-level keys", "", *_table(walker.rows), ""]
    for key in sections:
        walker.rows = []
        walker.walk(root["properties"][key], key, key in required)
        (_, kind, constraints, description), *rows = walker.rows
        lines += [f"## `{key}`", ""]
        if description:
            lines += [description, ""]
        if kind != "object" or constraints:
            lines += [f"*{', '.join(filter(None, [kind, constraints]))}*", ""]
        lines += [*_table(rows), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kcircuits.schema_docs", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {PAGE} differs from what would be written")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / PAGE, help=f"the page (default: {PAGE})")
    args = parser.parse_args(argv)
    from .config import load_schema

    text = render(load_schema())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            print(f"{args.out}: out of date with the config schema; run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
