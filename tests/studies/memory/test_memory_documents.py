"""Documents of the memory study and their allocations: shingles and exact Jaccard, clusters,
the three allocation strategies (s slots per document each), the documents drawn from probed
entities (nested, grouped, filtered by type) and the allocation names."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from kcircuits.stats import stage_rng
from kcircuits.studies.memory.allocate import (
    ALLOCATIONS_COLUMNS,
    CLUSTER_COLUMNS,
    SHARING_COLUMNS,
    allocate,
    allocate_all,
    allocation_table,
    cluster_all,
    default_slots,
    sharing,
)
from kcircuits.studies.memory.documents import (
    DOCUMENT_COLUMNS,
    choose_documents,
    cluster,
    document_shingles,
    jaccard_matrix,
    shingles,
)
from kcircuits.studies.memory.sweep import n_clusters, parse_allocation


def world(n_new: int = 8, probed_new: int = 6, paragraphs: int = 2):
    """Hand-made bios/entities/probes: new entities 0..n_new-1 (the first probed_new probed), revised
    n_new, n_new+1 (probed), background n_new+2 (no paragraphs). bios interleave the entities:
    paragraph 0 of every entity, then paragraph 1, ..."""
    types = ["new"] * n_new + ["revised", "revised", "background"]
    entities = pd.DataFrame({"entity_id": np.arange(len(types)), "type": types})
    probed = [*range(probed_new), n_new, n_new + 1]
    probes = pd.DataFrame({"entity_id": np.repeat(probed, 2), "attribute": ["city", "major"] * len(probed)})
    bios = [{"entity_id": e, "paragraph": j, "text": f"entity {e} paragraph {j}"}
            for j in range(paragraphs) for e in range(n_new + 2)]
    return bios, entities, probes


def test_shingles_words_case_punctuation_and_short_texts():
    assert shingles("The cat, sat!", 1) == {"the", "cat", "sat"}
    assert shingles("The cat sat", 2) == {"the cat", "cat sat"}
    assert shingles("Lee's 1978 car", 1) == {"lee", "s", "1978", "car"}
    assert shingles("Hi there", 3) == {"hi there"}  # fewer words than k: one shingle of all of them
    assert shingles(" ... ", 2) == frozenset()
    with pytest.raises(ValueError, match="k must be >= 1"):
        shingles("a b", 0)


def test_jaccard_of_hand_made_texts():
    texts = ["the cat sat", "the cat ran"]
    one = jaccard_matrix([shingles(t, 1) for t in texts])
    two = jaccard_matrix([shingles(t, 2) for t in texts])
    assert one[0, 1] == pytest.approx(2 / 4) and one[1, 0] == pytest.approx(2 / 4)
    assert two[0, 1] == pytest.approx(1 / 3)
    assert np.diag(one).tolist() == [1.0, 1.0]


def test_jaccard_matrix_equals_brute_force_sets():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]
    sets = [frozenset(rng.choice(words, size=rng.integers(0, 8))) for _ in range(15)] + [frozenset(), frozenset()]
    got = jaccard_matrix(sets)
    for i, j in itertools.product(range(len(sets)), repeat=2):
        a, b = sets[i], sets[j]
        want = 1.0 if i == j else (len(a & b) / len(a | b) if a | b else 0.0)
        assert got[i, j] == pytest.approx(want), (i, j)


def test_document_shingles_are_the_union_of_paragraphs_never_across_them():
    docs = pd.DataFrame({"doc": [0, 0, 1], "text": ["a b", "c d", "A B c"]})
    assert document_shingles(docs, 2) == [frozenset({"a b", "c d"}), frozenset({"a b", "b c"})]
    assert document_shingles(docs, 1)[0] == {"a", "b", "c", "d"}
    with pytest.raises(ValueError, match="0..1"):
        document_shingles(pd.DataFrame({"doc": [0, 2], "text": ["a", "b"]}), 1)


def test_clusters_separate_two_obviously_similar_groups_deterministically():
    a = ["alpha beta gamma delta epsilon", "alpha beta gamma delta zeta", "alpha beta gamma eta delta"]
    b = ["one two three four five", "one two three four six", "one two seven three four"]
    texts = [b[0], a[0], a[1], b[1], a[2], b[2]]
    sim = jaccard_matrix([shingles(t, 1) for t in texts])
    labels = cluster(sim, 2)
    assert labels.tolist() == [0, 1, 1, 0, 1, 0]  # renumbered by first appearance: doc 0 is cluster 0
    assert np.array_equal(cluster(sim.copy(), 2), labels)
    assert cluster(sim, 6).tolist() == list(range(6)) and cluster(sim, 60).tolist() == list(range(6))
    assert cluster(sim, 1).tolist() == [0] * 6
    assert cluster(np.ones((1, 1)), 3).tolist() == [0]
    # every pair within a group has J = 4/6: merge heights tie, so maxclust cannot stop at 4 clusters
    assert cluster(sim, 4).tolist() == labels.tolist()
    untied = jaccard_matrix([shingles(t, 1) for t in ["a b c d", "a b c e", "a b f g", "x y z", "x y w"]])
    assert cluster(untied, 3).tolist() == [0, 0, 1, 2, 2]


def test_partitioned_blocks_are_disjoint_with_s_each():
    mask = allocate("partitioned", 5, 40, 7, np.random.default_rng(0))
    assert mask.shape == (5, 40) and mask.dtype == bool
    assert mask.sum(axis=1).tolist() == [7] * 5
    assert mask.sum(axis=0).max() == 1  # no slot in two documents
    assert sharing(mask)["shared"].sum() == 0


def test_simset_shares_a_block_within_a_cluster_and_never_across():
    clusters = np.array([0, 1, 0, 2, 1, 0])
    mask = allocate("simset", 6, 30, 5, np.random.default_rng(1), clusters)
    assert mask.sum(axis=1).tolist() == [5] * 6
    for i, j in itertools.combinations(range(6), 2):
        if clusters[i] == clusters[j]:
            assert np.array_equal(mask[i], mask[j]), (i, j)
        else:
            assert not (mask[i] & mask[j]).any(), (i, j)
    table = sharing(mask)
    assert table["shares"].tolist() == [2, 1, 2, 0, 1, 2]
    assert table["overlap"].tolist() == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="clusters"):
        allocate("simset", 6, 30, 5, np.random.default_rng(1))


def test_random_is_seeded_with_s_per_document():
    same = [allocate("random", 20, 64, 8, stage_rng(3, "memory_allocate_random")) for _ in range(2)]
    other = allocate("random", 20, 64, 8, stage_rng(4, "memory_allocate_random"))
    assert np.array_equal(same[0], same[1])
    assert not np.array_equal(same[0], other)
    assert same[0].sum(axis=1).tolist() == [8] * 20
    assert same[0].sum(axis=0).max() > 1  # 160 draws of 64 slots overlap by chance


@pytest.mark.parametrize("args", [("partitioned", 5, 40, 9, None), ("simset", 4, 10, 4, np.array([0, 1, 2, 0])),
                                  ("random", 3, 10, 11, None), ("random", 3, 10, 0, None)])
def test_slots_that_do_not_fit_name_memory_slots(args):
    strategy, n, m, s, clusters = args
    with pytest.raises(ValueError, match=r"^memory\.slots: .*\b%d\b" % m):
        allocate(strategy, n, m, s, np.random.default_rng(0), clusters)


def test_default_slots_and_number_of_clusters():
    assert default_slots(3072, 50) == 61 and default_slots(10, 50) == 1
    assert n_clusters(5, 50) == 5 and n_clusters(500, 50) == 50 and n_clusters(1, 50) == 1
    assert n_clusters(0.2, 50) == 10 and n_clusters(0.01, 50) == 1 and n_clusters(1.0, 50) == 50
    assert n_clusters(0.25, 10) == 3  # 2.5 rounds half up
    assert n_clusters(5.0, 50) == 5
    for bad in (0, 1.5, -0.1, True, "3"):
        with pytest.raises(ValueError, match="memory.clusters"):
            n_clusters(bad, 50)


def test_allocation_and_sharing_tables():
    mask = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=bool)
    assert allocation_table(mask).values.tolist() == [[0, 0], [0, 1], [1, 1], [1, 2], [2, 3]]
    table = sharing(mask)
    assert list(table.columns) == SHARING_COLUMNS
    assert table["n_slots"].tolist() == [2, 2, 1]
    assert table["shares"].tolist() == [1, 1, 0]
    assert table["overlap"].tolist() == [0.5, 0.5, 0.0]
    assert table["shared"].tolist() == [True, True, False]


def test_documents_are_nested_across_numbers_of_documents():
    bios, entities, probes = world(n_new=60, probed_new=60, paragraphs=1)
    small = choose_documents(bios, entities, probes, 10, 1, ["new"], stage_rng(0, "memory_documents"))
    large = choose_documents(bios, entities, probes, 50, 1, ["new"], stage_rng(0, "memory_documents"))
    other = choose_documents(bios, entities, probes, 10, 1, ["new"], stage_rng(1, "memory_documents"))
    assert list(small.columns) == DOCUMENT_COLUMNS
    pd.testing.assert_frame_equal(small, large[large["doc"] < 10].reset_index(drop=True))
    assert large["doc"].nunique() == 50 and large["entity_id"].nunique() == 50
    assert not small["entity_id"].equals(other["entity_id"])


def test_documents_group_entities_in_file_order():
    bios, entities, probes = world()
    docs = choose_documents(bios, entities, probes, 3, 2, ["new"], stage_rng(0, "memory_documents"))
    assert docs["doc"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert docs["paragraph"].tolist() == [0, 1, 2, 3] * 3
    file_row = {r["text"]: i for i, r in enumerate(bios)}
    for _, doc in docs.groupby("doc"):
        assert doc["entity_id"].nunique() == 2
        assert doc["text"].map(file_row).is_monotonic_increasing
        assert sorted(doc["text"]) == sorted(r["text"] for r in bios if r["entity_id"] in set(doc["entity_id"]))
    assert sorted(docs["entity_id"].unique()) == list(range(6))  # every probed new entity, none other


def test_documents_filter_types_and_need_enough_entities():
    bios, entities, probes = world()
    revised = choose_documents(bios, entities, probes, 2, 1, ["revised"], stage_rng(0, "memory_documents"))
    assert sorted(revised["entity_id"].unique()) == [8, 9]
    both = choose_documents(bios, entities, probes, 8, 1, ["new", "revised"], stage_rng(0, "memory_documents"))
    assert sorted(both["entity_id"].unique()) == [0, 1, 2, 3, 4, 5, 8, 9]  # 6, 7 unprobed; 10 background
    with pytest.raises(ValueError, match=r"memory\.documents: 4 documents x 2 entities need 8 .* only 6"):
        choose_documents(bios, entities, probes, 4, 2, ["new"], stage_rng(0, "memory_documents"))


def test_allocation_names():
    assert parse_allocation("random") == ("random", None)
    assert parse_allocation("partitioned") == ("partitioned", None)
    assert parse_allocation("simset-1") == ("simset", 1) and parse_allocation("simset-2") == ("simset", 2)
    for bad in ("simset", "simset-3", "simset-0", "Random", "partitioned-2", ""):
        with pytest.raises(ValueError, match=f"memory.allocations: unknown allocation '{bad}'"):
            parse_allocation(bad)


def test_allocate_all_covers_every_number_and_name():
    texts = ["red green blue", "one two three", "red green yellow", "one two four"]
    docs = pd.DataFrame({"doc": [0, 1, 2, 3], "text": texts})
    mem = {"documents": [4, 2], "allocations": ["random", "partitioned", "simset-1"], "clusters": 0.5,
           "shingle_max_share": 1.0}
    clusters, cluster_report = cluster_all(docs, mem)
    allocations, report = allocate_all(docs, mem, 16, 4, seed=0, clusters=clusters)
    assert list(allocations.columns) == ALLOCATIONS_COLUMNS and list(clusters.columns) == CLUSTER_COLUMNS
    assert len(allocations) == (2 + 4) * 3 * 4  # every document s slots, per number and name
    four = clusters[clusters["documents"] == 4]
    assert four["cluster"].tolist() == [0, 1, 0, 1]
    for name in ("random", "partitioned"):  # a smaller number's allocation is the larger one's first rows
        def pick(n):
            return allocations[(allocations["allocation"] == name) & (allocations["documents"] == n)]

        assert pick(2)[["doc", "slot"]].values.tolist() == pick(4).query("doc < 2")[["doc", "slot"]].values.tolist()
    assert report["partitioned/4"]["shared_documents"] == 0
    assert report["simset-1/4"]["shared_documents"] == 4
    assert cluster_report["1/4"]["within"] > cluster_report["1/4"]["between"]
    random4 = allocations[(allocations["allocation"] == "random") & (allocations["documents"] == 4)]
    mask = allocate("random", 4, 16, 4, stage_rng(0, "memory_allocate_random"))
    assert random4[["doc", "slot"]].values.tolist() == allocation_table(mask).values.tolist()




def test_shingles_in_more_than_the_max_share_of_documents_are_left_out():
    docs = pd.DataFrame({"doc": [0, 1, 2, 3], "text": ["she lives in paris", "he lives in rome", "she lives in rome",
                                                      "he works in paris"]})
    assert document_shingles(docs, 1) == [frozenset(t.split()) for t in docs["text"]]
    kept = document_shingles(docs, 1, max_share=0.5)  # "in" (4 of 4) and "lives" (3 of 4) are template words
    assert kept == [frozenset({"she", "paris"}), frozenset({"he", "rome"}), frozenset({"she", "rome"}),
                    frozenset({"he", "works", "paris"})]
