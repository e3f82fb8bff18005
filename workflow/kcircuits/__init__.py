"""kcircuits: watch language models acquire knowledge, one checkpoint at a time."""

__version__ = "0.1.0"

ATTRIBUTES = ("birthday", "city", "major", "university", "company")
"""Every entity attribute, in the canonical order used by tables and reports."""

TYPES = ("new", "revised")
"""Probed entity types: new = completely new knowledge (K_compl), revised = changed facts about an
entity the base world already knew (K_rel)."""
