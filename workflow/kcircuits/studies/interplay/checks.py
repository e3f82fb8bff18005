"""The knowledge-interplay study's config checks (after the schema): knowledge types that can be ordered."""
from __future__ import annotations

from ...config import ConfigError


def check(cfg: dict, root) -> None:
    """Knowledge types that can be ordered (disjoint, one kind of member, names usable in paths)."""
    from .streams import check_types, knowledge_types

    try:
        check_types(knowledge_types(cfg["order"]["types"]), cfg["order"]["entity_types"])
    except ValueError as err:
        raise ConfigError(str(err)) from err
