"""Documents of the memory study: which entities, grouped how; shingles, Jaccard, clusters.

A document is the training paragraphs (bios_train) of `entities_per_document` probed entities. Its
text is represented by its set of word k-shingles; documents are compared by exact Jaccard
similarity and grouped by average-linkage agglomerative clustering on 1 - J (the simset
allocation gives each cluster one block of slots). Pure functions of their inputs and the
np.random.Generator passed in (kcircuits.config.stage_rng).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

DOCUMENT_COLUMNS = ["doc", "entity_id", "paragraph", "text"]
DEFAULT_TYPES = ("new",)  # knowledge the start model does not have
_WORD = re.compile(r"[^\W_]+")  # a run of letters or digits (Unicode), nothing else


def eligible_entities(bios: list[dict], entities: pd.DataFrame, probes: pd.DataFrame,
                      types: Sequence[str]) -> np.ndarray:
    """Ids of the entities of `types` that are probed and have training paragraphs, ascending [E]."""
    ok = entities["type"].isin(list(types)) & entities["entity_id"].isin(probes["entity_id"].unique())
    ok &= entities["entity_id"].isin({int(r["entity_id"]) for r in bios})
    return np.sort(entities.loc[ok, "entity_id"].to_numpy(dtype=np.int64))


def choose_documents(bios: list[dict], entities: pd.DataFrame, probes: pd.DataFrame, n_documents: int,
                     entities_per_document: int, types: Sequence[str] = DEFAULT_TYPES,
                     rng: np.random.Generator | None = None) -> pd.DataFrame:
    """The study's documents: one row per paragraph, columns doc, entity_id, paragraph, text.

    Eligible: entities of `types` that the probes ask about and that have training paragraphs
    (bios: rows of bios_train.jsonl, at least entity_id and text), in entity_id order. A seeded
    permutation of all of them is drawn and its first n_documents x entities_per_document entities
    are cut into consecutive groups: doc 0 is the first group. The permutation does not depend on
    n_documents, so with the same rng seed the documents of a smaller n are the first documents of
    a larger one. A document's paragraphs are all its entities' training paragraphs in file order;
    `paragraph` numbers them 0.. within the document. Rows are sorted by doc, then paragraph.
    """
    if rng is None:
        raise TypeError("choose_documents needs rng (kcircuits.config.stage_rng)")
    if n_documents < 1 or entities_per_document < 1:
        raise ValueError(f"memory.documents: needs n_documents >= 1 and entities_per_document >= 1, "
                         f"got {n_documents} and {entities_per_document}")
    ids = eligible_entities(bios, entities, probes, types)  # [E]
    need = n_documents * entities_per_document
    if need > len(ids):
        raise ValueError(f"memory.documents: {n_documents} documents x {entities_per_document} entities need {need} "
                         f"probed entities of types {list(types)} with training paragraphs, only {len(ids)} exist")
    chosen = ids[rng.permutation(len(ids))[:need]]  # [need]
    doc_of = dict(zip(chosen.tolist(), (np.arange(need) // entities_per_document).tolist()))
    rows = pd.DataFrame({"entity_id": [int(r["entity_id"]) for r in bios], "text": [r["text"] for r in bios]})
    rows["doc"] = rows["entity_id"].map(doc_of)
    rows = rows.dropna(subset=["doc"]).astype({"doc": np.int64})
    rows = rows.sort_values("doc", kind="stable")  # file order within each document
    rows["paragraph"] = rows.groupby("doc").cumcount().astype(np.int64)
    return rows[DOCUMENT_COLUMNS].reset_index(drop=True)


def shingles(text: str, k: int) -> frozenset[str]:
    """The word k-shingles of a text: lowercased, words are runs of letters/digits (punctuation and
    apostrophes split words: "Lee's" -> "lee", "s"), a shingle is k consecutive words joined by one
    space; k = 1 gives the set of words. A text of fewer than k words gives one shingle, all its
    words joined (the empty set for a text without words)."""
    if k < 1:
        raise ValueError(f"shingles: k must be >= 1, got {k}")
    words = _WORD.findall(text.lower())
    if not words:
        return frozenset()
    if len(words) < k:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i:i + k]) for i in range(len(words) - k + 1))


def document_shingles(documents: pd.DataFrame, k: int, max_share: float = 1.0) -> list[frozenset]:
    """One shingle set per document, docs 0..D-1 (documents: rows doc, text, one per paragraph; the
    docs must be 0..D-1). A document's set is the union of its paragraphs' k-shingles: no shingle
    spans two paragraphs, since their order is arbitrary (training shuffles them, end-of-text between).

    Shingles found in more than `max_share` of the documents are left out (the near-duplicate
    detector's stop shingles): in biographies they are template words, and with them every long
    document resembles every other (50 default documents, 10 clusters: one cluster of 34 with all
    shingles, sizes 2-9 without those in more than 20%)."""
    docs = np.sort(documents["doc"].unique())
    if not np.array_equal(docs, np.arange(len(docs))):
        raise ValueError(f"document_shingles: docs must be 0..{len(docs) - 1}, got {docs.tolist()[:10]}...")
    sets: list[set] = [set() for _ in docs]
    for doc, text in zip(documents["doc"].to_numpy(), documents["text"].to_numpy()):
        sets[int(doc)] |= shingles(str(text), k)
    counts = Counter(s for doc in sets for s in doc)
    common = {s for s, c in counts.items() if c > max_share * len(sets)}
    return [frozenset(s - common) for s in sets]


def shingle_matrix(sets: list[frozenset]) -> sp.csr_matrix:
    """Binary doc x shingle matrix [D, V] (V distinct shingles), int32 ones."""
    vocab: dict[str, int] = {}
    cols = [vocab.setdefault(s, len(vocab)) for doc in sets for s in doc]
    rows = np.repeat(np.arange(len(sets)), [len(doc) for doc in sets])
    data = np.ones(len(cols), dtype=np.int32)
    return sp.csr_matrix((data, (rows, np.asarray(cols, dtype=np.int64))), shape=(len(sets), len(vocab)))


def jaccard_matrix(sets: list[frozenset]) -> np.ndarray:
    """Exact Jaccard similarity |A & B| / |A | B| of every pair of sets, float64 [D, D], symmetric.

    X = the binary doc x shingle matrix (scipy.sparse); intersections X @ X.T, unions |A| + |B| - |A & B|.
    The diagonal is 1; two empty sets are 1 on the diagonal and 0 off it. Exact rather than MinHash:
    the clustering needs the full D x D matrix anyway, and exact is fast at the study's sizes
    (measured on one CPU core, documents of 7 bios_train paragraphs, ~290 words, k = 1 and 2: 1000
    documents 0.2 s; 5000 documents 5 s and ~1 GB peak with cluster(); cluster() itself 0.02 s and
    1-2.5 s). The templated biographies share most words, so X @ X.T is nearly dense: the time is
    quadratic in D.
    """
    x = shingle_matrix(sets)  # [D, V]
    sizes = np.diff(x.indptr).astype(np.int64)  # |A| per document [D]
    inter = (x @ x.T).toarray()  # |A & B|, int [D, D]
    union = sizes[:, None] + sizes[None, :] - inter  # [D, D]
    sim = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)  # empty pairs stay 0
    np.fill_diagonal(sim, 1.0)
    return sim


def first_appearance(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..C-1 in the order each first appears [D]."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse.ravel()]


def cluster(similarity: np.ndarray, n_clusters: int) -> np.ndarray:
    """Cluster labels [D] int64 of D documents: average-linkage agglomerative clustering on the
    distance 1 - similarity (scipy linkage on the condensed matrix, fcluster "maxclust"), labels
    renumbered 0..C-1 in order of first appearance. At most n_clusters clusters (fewer only when
    merge heights tie at the cut, e.g. identical documents); n_clusters >= D: every document its own
    cluster; 1: all in one. Deterministic."""
    d = similarity.shape[0]
    if similarity.shape != (d, d):
        raise ValueError(f"cluster: similarity must be square, got shape {similarity.shape}")
    if n_clusters < 1:
        raise ValueError(f"cluster: n_clusters must be >= 1, got {n_clusters}")
    if n_clusters >= d:
        return np.arange(d, dtype=np.int64)
    if n_clusters == 1:
        return np.zeros(d, dtype=np.int64)
    dist = 1.0 - (similarity + similarity.T) / 2  # symmetric against rounding  [D, D]
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(np.clip(dist, 0.0, None), checks=False), method="average")
    return first_appearance(fcluster(z, n_clusters, criterion="maxclust"))
