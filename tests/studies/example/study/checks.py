"""The example study's config check (after the schema): a metric the evaluation writes."""
from __future__ import annotations

from ...config import ConfigError

FAMILIES = ("query_", "paraphrase_", "bio_", "base_", "mc_", "tf_")


def check(cfg: dict, root) -> None:
    metric = cfg["example"]["metric"]
    if not metric.startswith(FAMILIES):
        raise ConfigError(f"example.metric: {metric!r} is not an evaluation metric (one of {', '.join(FAMILIES)}...)")
