"""The RECKONING study's config checks (after the schema): question and headquarters templates the
task can fill, and a start checkpoint that can exist."""
from __future__ import annotations

import re

from ... import ATTRIBUTES
from ...config import ConfigError
from ...resources import placeholders
from ...vocabulary import CHECKPOINT_WILDCARD
from . import HEADQUARTERS


def check_questions(questions: dict, attributes: list[str]) -> None:
    """ConfigError unless every question template uses {name} once and nothing else in braces, every
    key is an attribute or "headquarters", and at least one question applies to `attributes`."""
    for key, tpl in questions.items():
        if key not in ATTRIBUTES and key != HEADQUARTERS:
            raise ConfigError(f"reckoning.questions.{key}: not an attribute ({', '.join(ATTRIBUTES)}) "
                              f"nor {HEADQUARTERS!r}")
        try:
            ok = isinstance(tpl, str) and placeholders(tpl) == ["name"]
        except ValueError:  # unbalanced braces
            ok = False
        if not ok:
            raise ConfigError(f"reckoning.questions.{key}: {tpl!r} must be text with exactly one {{name}} "
                              f"and no other placeholder")
    applies = [k for k in questions if k in attributes or (k == HEADQUARTERS and "company" in attributes)]
    if not applies:
        raise ConfigError(f"reckoning.questions: no question applies to the attributes {list(attributes)} "
                          f"(headquarters needs company)")


def check_hq_template(template) -> None:
    """ConfigError unless the headquarters fact uses {company} then {city} once each (nothing else in
    braces), {city} after a space, so its text up to the city is a prompt naming the company."""
    try:
        fields = placeholders(template) if isinstance(template, str) else None
    except ValueError:  # unbalanced braces
        fields = None
    if fields is None or sorted(fields) != ["city", "company"]:
        raise ConfigError(f"reckoning.headquarters_fact: {template!r} must use {{company}} and {{city}} "
                          f"exactly once each and no other placeholder")
    cut = template.index("{city}")
    if cut == 0 or template[cut - 1] != " " or template.index("{company}") > cut:
        raise ConfigError(f"reckoning.headquarters_fact: {template!r} needs {{company}} before {{city}} "
                          f"and a space right before {{city}}")


def check(cfg: dict, root) -> None:
    """RECKONING's question and headquarters templates, and a start checkpoint that can exist."""
    r = cfg["reckoning"]
    check_questions(r["questions"], r["attributes"])
    check_hq_template(r["headquarters_fact"])
    if r["start"] != "last" and not re.fullmatch(CHECKPOINT_WILDCARD, r["start"]):
        raise ConfigError(f"reckoning.start: {r['start']!r} is neither last nor a checkpoint name (epoch-005)")
