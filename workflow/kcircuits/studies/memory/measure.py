"""Measure one point of the document-memory sweep: what the trained model recalls, and where.

With the main study's machinery, on the documents' entities:
- facts: top-1 and Hit@k of the first value token on each fact's query prompts (evaluate.facts
  .fact_accuracy), and for `measure.neuron_facts` sampled facts their knowledge neurons (integrated
  gradients and the original selection, kcircuits.neurons) with how many lie in the hook layer and
  inside the fact's document's allocated slots;
- paragraphs: exact continuation -- given the first `measure.prefix_share` of a training paragraph's
  tokens, is every following token the argmax (exactly when greedy decoding reproduces the rest);
- documents: each document's sharing (slots also allocated to others) and the slot share of its
  tokens' activation energy at the hook layer (memory.loss.slot_share), against chance s / m;
- circuits: EAP-IG circuits of the documents' facts per cell (circuits.pipeline.circuit_tables), the
  in-circuit edges leaving each layer (analysis.topology.layer_ratios) and Hit@k;
- generations: the generation probe (evaluate.generation) on one query prompt per fact.

With a gated memory (memory.module: gated; module.py) every measure reads each document's
rows under its key (document_parts); a circuit pair reads its clean prompt's document.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .loss import slot_count, slot_share
from .module import slot_activity

FACT_KEYS = ["entity_id", "attribute"]


def document_probes(probes: pd.DataFrame, documents: pd.DataFrame) -> pd.DataFrame:
    """The query prompts of the documents' entities, each with its document (`doc`)."""
    owners = documents[["entity_id", "doc"]].drop_duplicates()
    return probes.merge(owners, on="entity_id").reset_index(drop=True)


def document_parts(memory, frame: pd.DataFrame):
    """The rows measured together: all of `frame` (rows with `doc`), or with a gated memory each
    document's rows while the memory reads that document. A generator: measure a part before the next."""
    if memory is None:
        yield frame
        return
    for doc, part in frame.groupby("doc", sort=True):
        with memory.reading(int(doc)):
            yield part


def per_document(memory, frame: pd.DataFrame, measure) -> pd.DataFrame:
    """measure(rows) -> table, over document_parts, concatenated."""
    return pd.concat([measure(part) for part in document_parts(memory, frame)], ignore_index=True)


def continuation(hf, tok, documents: pd.DataFrame, prefix_share: float, batch_size: int) -> pd.DataFrame:
    """Per paragraph: doc, paragraph, n_prefix, n_tokens, token_accuracy (share of continuation tokens
    that are the argmax) and exact (all of them)."""
    from ...evaluate.scoring import encode, score_tokens

    sequences = encode(tok, documents["text"].tolist())
    prefix = [min(len(s) - 1, max(1, round(prefix_share * len(s)))) for s in sequences]
    seq = np.concatenate([np.full(len(s) - k, i) for i, (s, k) in enumerate(zip(sequences, prefix))])  # [Q]
    position = np.concatenate([np.arange(k - 1, len(s) - 1) for s, k in zip(sequences, prefix)])  # [Q]
    target = np.array([sequences[i][p + 1] for i, p in zip(seq, position)])
    _, rank = score_tokens(hf, sequences, seq, position, target, batch_size, tok.pad_token_id, want_logprob=False)
    correct = pd.Series(rank == 0).groupby(seq)
    return pd.DataFrame({"doc": documents["doc"].to_numpy(), "paragraph": documents["paragraph"].to_numpy(),
                         "n_prefix": prefix, "n_tokens": [len(s) for s in sequences],
                         "token_accuracy": correct.mean().to_numpy(), "exact": correct.all().to_numpy().astype(float)})


@torch.no_grad()
def document_slot_share(hf, tok, documents: pd.DataFrame, layer: int, allocation: np.ndarray,
                        batch_size: int, memory=None) -> pd.Series:
    """Per doc: the mean slot share (memory.loss.slot_share) of its paragraphs' tokens at `layer`
    (of a gated memory's units, each token reading its document)."""
    from contextlib import nullcontext

    from ...batching import pad_right
    from ...evaluate.scoring import encode

    device = next(hf.parameters()).device
    mask = torch.from_numpy(allocation).to(device)  # [D, m]
    sequences, owner = encode(tok, documents["text"].tolist()), documents["doc"].to_numpy()
    shares, owners = [], []
    for b0 in range(0, len(sequences), batch_size):
        ids, last = pad_right(sequences[b0:b0 + batch_size], tok.pad_token_id)  # [B, T], [B]
        doc = torch.tensor(owner[b0:b0 + batch_size])[:, None].repeat(1, ids.shape[1])  # [B, T]
        doc[torch.arange(ids.shape[1])[None, :] > last[:, None]] = -1  # padding belongs to no document
        reading = memory.reading(doc.to(device)) if memory is not None else nullcontext()
        with reading, slot_activity(hf, layer, memory) as store:
            hf(input_ids=ids.to(device), attention_mask=(doc >= 0).long().to(device))
        shares.append(slot_share(store["hidden"], doc.to(device), mask).cpu())
        owners.append(doc[doc >= 0])
    return pd.Series(torch.cat(shares).numpy()).groupby(torch.cat(owners).numpy()).mean()


def knowledge_neurons(model, tok, probes: pd.DataFrame, n: dict, prepend_bos: bool, memory=None) -> pd.DataFrame:
    """Rows (entity_id, attribute, layer, neuron) of each fact's knowledge neurons (n: config
    `neurons`), selected per attribute as the neuron stage does, from the probes' prompts."""
    from ...neurons.attribute import attribute
    from ...neurons.facts import encode
    from ...neurons.select import coarse, select_configured

    parts, scores = [], []
    for part in document_parts(memory, probes):
        bags = encode(tok, part, model.device, prepend_bos)
        with model.precision(n["dtype"]):
            ig = attribute(model, bags.ids, bags.last, bags.targets, n["ig_steps"], n["ig_points"], n["batch_size"])
        L, Q, m = ig.shape
        parts.append(bags.rows)
        scores.append(ig.permute(1, 0, 2).reshape(Q, L * m).cpu().numpy())  # [Q, L * m]
    rows, scores, found = pd.concat(parts, ignore_index=True), np.concatenate(scores), []
    for attr, part in rows.groupby("attribute", sort=True):
        masks = {e: coarse(scores[g.index.to_numpy()], n["threshold"]) for e, g in part.groupby("entity_id")}
        chosen, _ = select_configured(masks, n)
        found += [(e, attr, int(i) // m, int(i) % m) for e, idx in chosen.items() for i in idx]
    return pd.DataFrame(found, columns=[*FACT_KEYS, "layer", "neuron"])


def neuron_locality(neurons: pd.DataFrame, facts: pd.DataFrame, layer: int, allocation: np.ndarray) -> pd.DataFrame:
    """Per sampled fact (facts: entity_id, attribute, doc): n_neurons, n_at_layer (in the hook layer),
    n_inside (in the hook layer and in the document's allocated slots)."""
    kn = neurons.merge(facts[[*FACT_KEYS, "doc"]], on=FACT_KEYS)
    at = kn["layer"] == layer
    inside = at & allocation[kn["doc"].to_numpy(), kn["neuron"].to_numpy()]
    counts = pd.DataFrame({**{k: kn[k] for k in FACT_KEYS}, "n_neurons": 1, "n_at_layer": at.astype(int),
                           "n_inside": inside.astype(int)}).groupby(FACT_KEYS).sum()
    out = facts[FACT_KEYS].merge(counts, on=FACT_KEYS, how="left").fillna(0)
    return out.astype({c: int for c in ("n_neurons", "n_at_layer", "n_inside")})


def circuit_layers(model, tok, pairs: pd.DataFrame, probes: pd.DataFrame, tasks: dict[str, str], c: dict,
                   max_pairs: int | None, memory=None) -> pd.DataFrame:
    """Per cell x budget x layer (-1: input): in-circuit edges leaving the layer (layer_ratios), its
    share of the circuit's edges, and the circuit's Hit@k under each ablation as columns."""
    from ...analysis.topology import edge_mask, layer_ratios
    from ...circuits.pipeline import circuit_tables
    from ...vocabulary import CELL

    parts = None if memory is None else (lambda rows: document_parts(memory, rows))
    edges, hits = circuit_tables(model, tok, pairs, probes, tasks, c, max_pairs, parts)
    frames = []
    for (budget, *cell), part in edges.groupby(["budget", *CELL], sort=True):
        ratios = layer_ratios(model.graph, edge_mask(model.graph, part)[0])
        ratios["edge_share"] = ratios["n_circuit_edges"] / max(1, ratios["n_circuit_edges"].sum())
        frames.append(ratios.assign(budget=budget, **dict(zip(CELL, cell))))
    if not frames:
        return pd.DataFrame(columns=[*CELL, "budget", "layer", "n_circuit_edges", "edge_share"])
    table = pd.concat(frames, ignore_index=True)
    wide = hits.pivot_table(index=[*CELL, "budget"], columns="ablation", values="hit_at_k").add_prefix("hit_at_k_")
    full = hits.groupby([*CELL, "budget"])["full_model_hit_at_k"].first()
    table = table.merge(wide.join(full).reset_index(), on=[*CELL, "budget"], how="left")
    return table[[*CELL, "budget", *[col for col in table.columns if col not in (*CELL, "budget")]]]


def generations(hf, tok, probes: pd.DataFrame, settings: dict, memory=None) -> pd.DataFrame:
    """The generation probe (evaluate.generation) on one query prompt each of evaluate.generation_probe
    .facts documents' facts (a seeded sample), target its value."""
    from ...evaluate.generation import probe_rows, sample_generations
    from ...stats import stage_rng

    gp, ev = settings["evaluate"]["generation_probe"], settings["evaluate"]
    facts = probes.sort_values([*FACT_KEYS, "template"]).drop_duplicates(FACT_KEYS).reset_index(drop=True)
    chosen = stage_rng(settings["seed"], "memory_generations").permutation(len(facts))[: gp["facts"]]
    def probe(part):
        texts = sample_generations(hf, tok, part["prompt"].tolist(), gp["samples"], gp["temperature"],
                                   gp["max_new_tokens"], ev["batch_size"], settings["seed"])
        return probe_rows(part, texts, {"value": "answer"}).merge(part[[*FACT_KEYS, "doc"]], on=FACT_KEYS)

    return per_document(memory, facts.iloc[np.sort(chosen)], probe)


def fact_table(model, tok, probes: pd.DataFrame, layer: int, allocation: np.ndarray, s: dict,
               memory=None) -> pd.DataFrame:
    """Per fact of the documents: doc, type, freq_group, top1, hit_at_k, n_prompts, and for the
    sampled facts n_neurons, n_at_layer, n_inside (NaN for the others)."""
    from ...evaluate.facts import FACT, fact_accuracy
    from ...stats import stage_rng

    ev, mem = s["evaluate"], s["memory"]["measure"]
    recall = per_document(memory, probes,
                          lambda part: fact_accuracy(model.hf, tok, part, ev["hit_k"], ev["batch_size"]))
    recall = recall.drop(columns="target").merge(probes[[*FACT_KEYS, "doc"]].drop_duplicates(), on=FACT_KEYS)
    keys = recall[FACT_KEYS]
    chosen = keys.iloc[np.sort(stage_rng(s["seed"], "memory_neurons").permutation(len(keys))[: mem["neuron_facts"]])]
    sampled = probes.merge(chosen, on=FACT_KEYS)
    kn = knowledge_neurons(model, tok, sampled, s["neurons"], s["circuits"]["prepend_bos"], memory)
    local = neuron_locality(kn, sampled[[*FACT_KEYS, "doc"]].drop_duplicates(), layer, allocation)
    table = recall.merge(local, on=FACT_KEYS, how="left")
    lead = ["doc", *[c for c in FACT if c != "target"]]
    return table[[*lead, *[c for c in table.columns if c not in lead]]]


def measure_point(model, tok, documents: pd.DataFrame, allocations: pd.DataFrame, probes: pd.DataFrame,
                  pairs: pd.DataFrame, s: dict, memory=None) -> dict[str, pd.DataFrame]:
    """Every table of one point (s: the memory stage settings with `run`, the point; memory: the run's
    gated memory, attached to the model), keyed as memory.stage.MEASURES."""
    from ...evaluate.facts import select_facts
    from .allocate import sharing
    from .train import allocation_mask

    run, ev, mem = s["run"], s["evaluate"], s["memory"]["measure"]
    n, layer = run["documents"], run["layer"]
    m = slot_count(model.hf, layer)
    mask = allocation_mask(allocations, run["allocation"], n, m)  # [D, m]
    probes = document_probes(probes, documents)
    probes, pairs, tasks = select_facts(probes, pairs, probes[FACT_KEYS], s["circuit_pairs"]["tasks"])
    pairs = pairs.merge(probes[["entity_id", "doc"]].drop_duplicates().rename(columns={"entity_id": "clean_entity_id"}),
                        on="clean_entity_id")  # a pair reads its clean subject's document
    shares = document_slot_share(model.hf, tok, documents, layer, mask, ev["batch_size"], memory)
    docs = sharing(mask).assign(slot_share=shares.reindex(range(n)), chance=mask.sum(1) / m)
    return {
        "facts": fact_table(model, tok, probes, layer, mask, s, memory),
        "paragraphs": per_document(memory, documents, lambda part: continuation(
            model.hf, tok, part, mem["prefix_share"], ev["batch_size"])),
        "documents": docs,
        "circuits": circuit_layers(model, tok, pairs, probes, tasks, s["circuits"], mem["max_pairs"], memory),
        "generations": generations(model.hf, tok, probes, s, memory),
    }
