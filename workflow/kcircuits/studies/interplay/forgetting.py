"""Forgetting corpora and the replay mix (Ou et al. 2025, forgetting experiment).

After the main study's last checkpoint, training continues on a corpus of other knowledge, with a
share r of the training examples (packed token blocks) replaced by replay of the original
continual-pre-training corpus. Two forgetting corpora:

  other_entities -- fresh entities never seen before (names unused by the main world), type "other".
  conflicting    -- the main world's probed entities with every attribute changed to a different
                    value; the orig_* columns keep the values they conflict with.

Both are entity tables with the main table's columns and dtypes, so the biography and probe code
reads them unchanged; `corpus_paragraphs` turns one into training paragraphs (bios_train rows).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ... import ATTRIBUTES
from ...data.biographies import entity_paragraphs, entity_values
from ...data.entities import VALUE_COLUMNS, draw_attributes, like_entities
from ...resources import Templates

CORPORA = ("other_entities", "conflicting")


def conflicting_entities(entities: pd.DataFrame, ids, pools: dict, years: dict, paragraphs: int,
                         rng: np.random.Generator) -> pd.DataFrame:
    """The entities with the given entity_ids (in id order), every attribute changed.

    Ids, names, types and frequency groups are kept; every attribute gets a value that differs from
    the current one (the birthday as a whole: day, month and year together); the current values move
    to the orig_* columns, so each row says what it conflicts with; frequency = `paragraphs`.
    """
    ids = sorted({int(i) for i in ids})
    table = entities.set_index("entity_id", drop=False)
    missing = [i for i in ids if i not in table.index]
    if missing:
        raise ValueError(f"conflicting_entities: no entity with id {missing[:5]}")
    rows = []
    for i in ids:
        row = table.loc[i]
        current = {c: row[c] for c in VALUE_COLUMNS}
        if any(pd.isna(v) for v in current.values()):
            raise ValueError(f"conflicting_entities: entity {i} ({row['type']}) has no current attribute values")
        rows.append({**row.to_dict(), "frequency": int(paragraphs),
                     **draw_attributes(rng, pools, years, avoid=current),
                     **{f"orig_{c}": v for c, v in current.items()}})
    return like_entities(entities, rows).reset_index(drop=True)


def corpus_paragraphs(table: pd.DataFrame, templates: Templates, rng: np.random.Generator) -> list[dict]:
    """Each entity's `frequency` training paragraphs stating its current (not orig_*) values.

    Rows exactly as bios_train rows: entity_id, paragraph, text, spans, layout; table order.
    """
    out: list[dict] = []
    for row in table.itertuples(index=False):
        row = pd.Series(row._asdict())
        train, _ = entity_paragraphs(rng, row["entity_id"], row["name"], entity_values(row),
                                     templates.biography, int(row["frequency"]), 0)
        out += train
    return out


def _read_order(rng: np.random.Generator, n_source: int, k: int) -> np.ndarray:
    """k indices into a source of n_source items: passes in fresh random orders, each without
    replacement, the last one cut short; [k] int64."""
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    passes = -(-k // n_source)
    return np.concatenate([rng.permutation(n_source) for _ in range(passes)])[:k].astype(np.int64)


def replay_mix(new_blocks: np.ndarray, replay_blocks: np.ndarray, n_examples: int, share: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The forgetting run's training stream: n_examples blocks, round(share * n_examples) of them
    (at random positions) replay blocks, the rest new-corpus blocks.

    new_blocks [n_new, block_size], replay_blocks [n_replay, block_size]. Each source is read in a
    random order without replacement, a fresh order per pass when it runs out.
    Returns blocks [n_examples, block_size] int64 and is_replay [n_examples] bool.
    """
    new_blocks, replay_blocks = np.asarray(new_blocks), np.asarray(replay_blocks)
    if new_blocks.ndim != 2 or replay_blocks.ndim != 2:
        raise ValueError("replay_mix: blocks must be 2-d arrays [n_blocks, block_size]")
    if new_blocks.shape[1] != replay_blocks.shape[1]:
        raise ValueError(f"replay_mix: block sizes differ: new {new_blocks.shape[1]}, replay {replay_blocks.shape[1]}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"replay_mix: replay share must lie in [0, 1], got {share}")
    if n_examples < 0:
        raise ValueError(f"replay_mix: n_examples must be >= 0, got {n_examples}")
    n_replay = int(round(share * n_examples))
    for name, source, need in (("new", new_blocks, n_examples - n_replay), ("replay", replay_blocks, n_replay)):
        if need and not len(source):
            raise ValueError(f"replay_mix: {need} {name} blocks needed but the {name} corpus is empty")
    is_replay = np.zeros(n_examples, dtype=bool)  # [n_examples]
    is_replay[rng.choice(n_examples, size=n_replay, replace=False)] = True
    out = np.empty((n_examples, new_blocks.shape[1]), dtype=np.int64)  # [n_examples, block_size]
    out[~is_replay] = new_blocks[_read_order(rng, len(new_blocks), n_examples - n_replay)]
    out[is_replay] = replay_blocks[_read_order(rng, len(replay_blocks), n_replay)]
    return out, is_replay


def followed_facts(probed: pd.DataFrame, per_cell: int | None, rng: np.random.Generator) -> pd.DataFrame:
    """The learned facts whose forgetting is measured: every attribute of `per_cell` probed entities
    per (type, frequency group), a seeded sample (None: all). -> entity_id, type, freq_group, attribute."""
    keys = ["type", "freq_group"]
    chosen = [part.iloc[np.sort(rng.choice(len(part), min(per_cell or len(part), len(part)), replace=False))]
              for _, part in probed.sort_values("entity_id").groupby(keys, sort=True)]
    entities = pd.concat(chosen).sort_values("entity_id")[["entity_id", *keys]]
    return entities.merge(pd.DataFrame({"attribute": list(ATTRIBUTES)}), how="cross").reset_index(drop=True)
