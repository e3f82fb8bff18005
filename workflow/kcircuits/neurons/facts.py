"""Facts and their bags: what knowledge neurons are found for.

A fact is (entity, attribute) with its value; its bag is the fact's query prompts, one per training
template whose prefix ends before the value (the primary probes: probes.parquet holds exactly these
rows). Facts are sampled per type x frequency group x attribute among the probed entities, once for
every checkpoint (data stage), so that each checkpoint's neurons belong to the same facts.

The target of a prompt is the value's first token after the prompt (as every knowledge metric here);
for revised entities a second target, the base-world value (`orig_answer`), gives the neurons of the
fact the model first learnt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import ATTRIBUTES
from ..batching import pad_right
from ..evaluate.scoring import answer_token_ids
from ..tokenizer import bos_prefix

FACT_COLUMNS = ["fact", "entity_id", "name", "type", "freq_group", "frequency", "attribute"]
TARGET_KINDS = {"value": "answer", "original": "orig_answer"}  # target kind -> the probe column it scores


def sample_facts(probes: pd.DataFrame, per_cell: int, rng: np.random.Generator) -> pd.DataFrame:
    """The prompt rows of per_cell sampled facts per (type, frequency group, attribute) (all of them where
    fewer), with a `fact` number in (entity, attribute) order: the facts' bags."""
    chosen = []
    for _, cell in probes.groupby(["type", "freq_group", "attribute"], sort=True):
        ids = np.sort(cell["entity_id"].unique())
        take = rng.choice(ids, size=min(per_cell, len(ids)), replace=False)
        chosen += [(int(e), cell["attribute"].iloc[0]) for e in take]
    keys = pd.DataFrame(sorted(chosen, key=lambda k: (k[0], ATTRIBUTES.index(k[1]))),
                        columns=["entity_id", "attribute"])
    keys.insert(0, "fact", np.arange(len(keys)))
    bags = keys.merge(probes, on=["entity_id", "attribute"], how="left", validate="one_to_many")
    return bags.sort_values(["fact", "template"], kind="stable").reset_index(drop=True)


@dataclass
class Bags:
    """Prompts of many bags, encoded for one model: ids [Q, T] right-padded, last [Q], targets [Q];
    rows: the prompt rows they came from (fact columns, template, prompt, answer, target_kind)."""
    ids: torch.Tensor
    last: torch.Tensor
    targets: torch.Tensor
    rows: pd.DataFrame

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, mask) -> "Bags":
        """The bags' prompts where mask [Q] holds (same encoding)."""
        keep = np.flatnonzero(np.asarray(mask))
        index = torch.as_tensor(keep, device=self.ids.device)
        return Bags(self.ids[index], self.last[index], self.targets[index], self.rows.iloc[keep].reset_index(drop=True))


def prompt_rows(bags: pd.DataFrame, kinds=tuple(TARGET_KINDS)) -> pd.DataFrame:
    """Every prompt of `bags` once per target kind it has (original: revised entities only), in
    (target kind, fact, template) order, the scored value in column `answer`."""
    parts = [bags[bags[column].notna()].assign(answer=bags[column], target_kind=kind)
             for kind, column in TARGET_KINDS.items() if kind in kinds]
    return pd.concat(parts, ignore_index=True)[FACT_COLUMNS + ["target_kind", "template", "prompt", "answer"]]


def encode(tok, rows: pd.DataFrame, device="cpu", prepend_bos: bool = False) -> Bags:
    """Prompt rows (prompt_rows, or prompts.parquet) encoded for one model on its `device`; rows gain
    `target`. prepend_bos: BOS first (kcircuits.tokenizer.bos_prefix), as the circuits read them."""
    prompt_ids, _, first = answer_token_ids(tok, rows["prompt"].tolist(), rows["answer"].tolist())
    bos = bos_prefix(tok, prepend_bos)
    ids, last = pad_right([bos + p for p in prompt_ids], tok.pad_token_id)  # [Q, T] right-padded, [Q]
    return Bags(ids.to(device), last.to(device), torch.from_numpy(first).to(device),
                rows.reset_index(drop=True).assign(target=first))
