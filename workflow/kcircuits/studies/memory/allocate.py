"""Allocation strategies: which slots (hook-layer MLP hidden neurons) each document may use.

Every document gets exactly `slots_per_doc` = s slots in every strategy, so the strategies compare
where memory goes, not how much each document has:

  random       s slots per document drawn without replacement, independently (chance overlaps).
  partitioned  a seeded permutation of the slots cut into disjoint blocks of s; block i to doc i.
  simset       one disjoint block of s slots per cluster of similar documents (blocks cut from a
               seeded permutation as for partitioned); every document of cluster c gets block c:
               similar documents share memory, clusters never do.

Document i's slots depend only on the rng and on documents 0..i (and, for simset, their clusters),
so the first n documents of an allocation for N > n documents are an allocation for n.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...stats import stage_rng
from .documents import cluster, document_shingles, jaccard_matrix
from .sweep import STRATEGIES, n_clusters, parse_allocation

ALLOCATION_COLUMNS = ["doc", "slot"]
ALLOCATIONS_COLUMNS = ["documents", "allocation", "doc", "slot"]  # allocate_all: every allocation of the sweep
CLUSTER_COLUMNS = ["documents", "shingle_size", "doc", "cluster"]
SHARING_COLUMNS = ["doc", "n_slots", "shares", "overlap", "shared"]


def _check_fit(strategy: str, blocks: int, n_slots: int, slots_per_doc: int) -> None:
    """ValueError (memory.slots) unless `blocks` disjoint blocks of slots_per_doc fit in n_slots."""
    if blocks * slots_per_doc > n_slots:
        raise ValueError(f"memory.slots: {strategy} needs {blocks} blocks x {slots_per_doc} slots = "
                         f"{blocks * slots_per_doc} slots, the hook layer has {n_slots}")


def _blocks(n_blocks: int, n_slots: int, slots_per_doc: int, rng: np.random.Generator) -> np.ndarray:
    """Disjoint blocks of slots from a seeded permutation [n_blocks, slots_per_doc]; block i holds
    permutation entries i*s .. (i+1)*s - 1."""
    perm = rng.permutation(n_slots)  # [n_slots]
    return perm[: n_blocks * slots_per_doc].reshape(n_blocks, slots_per_doc)


def _check_clusters(clusters, n_docs: int) -> np.ndarray:
    """Cluster labels as int64 [n_docs], each in 0..C-1 with every label used; ValueError otherwise."""
    if clusters is None:
        raise ValueError("memory.slots: simset needs the documents' clusters")
    labels = np.asarray(clusters)
    if labels.shape != (n_docs,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"simset: clusters must be {n_docs} integer labels, got {labels.dtype} {labels.shape}")
    if n_docs and not np.array_equal(np.unique(labels), np.arange(labels.max() + 1)):
        raise ValueError(f"simset: cluster labels must be 0..C-1, each used, got {np.unique(labels).tolist()[:10]}")
    return labels.astype(np.int64)


def allocate(strategy: str, n_docs: int, n_slots: int, slots_per_doc: int, rng: np.random.Generator,
             clusters: np.ndarray | None = None) -> np.ndarray:
    """The allocation mask bool [n_docs, n_slots] of one strategy (module docstring): row i holds
    document i's slots, exactly slots_per_doc of them. clusters: simset's labels [n_docs] in 0..C-1
    (documents.cluster). ValueError naming memory.slots when the slots do not fit
    (partitioned: n_docs x s <= n_slots; simset: C x s <= n_slots; any: 1 <= s <= n_slots)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"memory allocation: unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    if n_docs < 0 or not 1 <= slots_per_doc <= n_slots:
        raise ValueError(f"memory.slots: needs 1 <= slots per document ({slots_per_doc}) <= slots of the "
                         f"hook layer ({n_slots}) and n_docs >= 0 ({n_docs})")
    mask = np.zeros((n_docs, n_slots), dtype=bool)
    if strategy == "random":
        for i in range(n_docs):
            mask[i, rng.choice(n_slots, size=slots_per_doc, replace=False)] = True
    elif strategy == "partitioned":
        _check_fit(strategy, n_docs, n_slots, slots_per_doc)
        blocks = _blocks(n_docs, n_slots, slots_per_doc, rng)  # [n_docs, s]
        mask[np.arange(n_docs)[:, None], blocks] = True
    else:
        labels = _check_clusters(clusters, n_docs)  # [n_docs]
        n_clusters = int(labels.max()) + 1 if n_docs else 0
        _check_fit(f"simset ({n_clusters} clusters)", n_clusters, n_slots, slots_per_doc)
        blocks = _blocks(n_clusters, n_slots, slots_per_doc, rng)  # [C, s]
        mask[np.arange(n_docs)[:, None], blocks[labels]] = True
    return mask


def default_slots(n_slots: int, n_docs: int) -> int:
    """Slots per document when the config leaves it open: n_slots // n_docs (the largest disjoint
    partition), at least 1."""
    if n_docs < 1:
        raise ValueError(f"memory.slots: needs at least one document, got {n_docs}")
    return max(1, n_slots // n_docs)


def allocation_table(mask: np.ndarray) -> pd.DataFrame:
    """The mask bool [D, m] as rows (doc, slot), int64, sorted by doc then slot."""
    doc, slot = np.nonzero(mask)  # row-major: already sorted
    return pd.DataFrame({"doc": doc.astype(np.int64), "slot": slot.astype(np.int64)}, columns=ALLOCATION_COLUMNS)


def sharing(mask: np.ndarray) -> pd.DataFrame:
    """Per document of the mask bool [D, m]: doc, n_slots (its slots), shares (how many other
    documents hold at least one of its slots), overlap (the share of its slots some other document
    also holds; 0 without slots), shared (shares > 0)."""
    mask = np.asarray(mask, dtype=bool)
    x = sp.csr_matrix(mask.astype(np.int32))  # [D, m]
    co = x @ x.T  # slots in common, stored only where > 0 [D, D]
    co.eliminate_zeros()
    shares = np.diff(co.indptr) - (co.diagonal() > 0)  # other documents in common [D]
    n = mask.sum(axis=1)  # [D]
    crowded = mask.sum(axis=0) > 1  # slots held by two or more documents [m]
    both = (mask & crowded).sum(axis=1)  # [D]
    overlap = np.divide(both, n, out=np.zeros(len(n)), where=n > 0)
    return pd.DataFrame({"doc": np.arange(len(n), dtype=np.int64), "n_slots": n.astype(np.int64),
                         "shares": shares.astype(np.int64), "overlap": overlap, "shared": shares > 0},
                        columns=SHARING_COLUMNS)


def cluster_similarity(sim: np.ndarray, labels: np.ndarray) -> dict:
    """Mean Jaccard of pairs of distinct documents in one cluster and in different clusters (None
    without such pairs), and the number of clusters."""
    same = labels[:, None] == labels[None, :]  # [D, D]
    off = ~np.eye(len(labels), dtype=bool)
    def mean(pick):
        return float(sim[pick].mean()) if pick.any() else None

    return {"clusters": int(labels.max()) + 1, "within": mean(same & off), "between": mean(~same)}


def _numbers(documents: pd.DataFrame, mem: dict):
    """(n, documents 0..n-1) for each number n in mem["documents"], ascending."""
    for n in sorted({int(x) for x in mem["documents"]}):
        docs = documents[documents["doc"] < n]
        if docs["doc"].nunique() != n:
            raise ValueError(f"memory.documents: {n} documents asked, the table holds {docs['doc'].nunique()}")
        yield n, docs


def cluster_all(documents: pd.DataFrame, mem: dict) -> tuple[pd.DataFrame, dict]:
    """The simset clusters of the sweep: for each number n in mem["documents"] and each shingle size K
    of a simset-K in mem["allocations"], documents 0..n-1 (rows doc, text) clustered on the Jaccard
    similarity of their K-shingles into n_clusters(mem["clusters"], n) clusters. Returns the table
    (documents, shingle_size, doc, cluster) and a report {"<K>/<n>": cluster_similarity}."""
    sizes = sorted({k for _, k in map(parse_allocation, mem["allocations"]) if k is not None})
    tables, report = [pd.DataFrame({c: pd.Series(dtype=np.int64) for c in CLUSTER_COLUMNS})], {}
    for n, docs in _numbers(documents, mem):
        for k in sizes:
            sim = jaccard_matrix(document_shingles(docs, k, mem["shingle_max_share"]))  # [n, n]
            labels = cluster(sim, n_clusters(mem["clusters"], n))
            tables.append(pd.DataFrame({"documents": n, "shingle_size": k, "doc": np.arange(n), "cluster": labels},
                                       columns=CLUSTER_COLUMNS))
            report[f"{k}/{n}"] = cluster_similarity(sim, labels)
    return pd.concat(tables, ignore_index=True), report


def allocate_all(documents: pd.DataFrame, mem: dict, n_slots: int, slots_per_doc: int, seed: int,
                 clusters: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Every allocation of the sweep for one model (n_slots: its hook layers' MLP width): for each
    number n in mem["documents"] and each name in mem["allocations"], allocate() over documents
    0..n-1 with slots_per_doc slots each; simset-K gives each of cluster_all's clusters a block.
    Each name draws from its own stream, stage_rng(seed, "memory_allocate_<name>"), restarted for
    every n: random and partitioned allocations for n are the first n rows of those for a larger n.

    Returns allocations (documents, allocation, doc, slot) and a report {"<name>/<n>": sharing summary}.
    """
    parsed = {name: parse_allocation(name) for name in mem["allocations"]}  # fails early on a bad name
    tables, report = [], {}
    for n, _ in _numbers(documents, mem):
        for name, (strategy, k) in parsed.items():
            labels = None
            if k is not None:
                rows = clusters[(clusters["documents"] == n) & (clusters["shingle_size"] == k)].sort_values("doc")
                labels = rows["cluster"].to_numpy()
            mask = allocate(strategy, n, n_slots, slots_per_doc, stage_rng(seed, f"memory_allocate_{name}"), labels)
            tables.append(allocation_table(mask).assign(documents=n, allocation=name)[ALLOCATIONS_COLUMNS])
            share = sharing(mask)  # [n, m]
            report[f"{name}/{n}"] = {"shared_documents": int(share["shared"].sum()),
                                     "mean_overlap": float(share["overlap"].mean()),
                                     "slots_used": int(mask.any(axis=0).sum())}
    return pd.concat(tables, ignore_index=True), report
