"""Document memory ("Simset"): does deciding in advance *where* each document is memorised help recall?

  documents   groups of biography paragraphs: probed entities the start model does not know
              (type "new" by default), drawn by a seeded permutation, `entities_per_document`
              consecutive ones per document; the documents of a smaller run are the first ones of
              a larger run (documents.choose_documents).
  shingles    each document as its set of word k-shingles; exact Jaccard similarity between
              documents; average-linkage clusters on 1 - J (documents).
  allocation  every document gets the same number s of "slots" -- MLP hidden neurons of a hook
              layer: random (independent draws, chance overlaps), partitioned (disjoint blocks)
              or simset-K (one disjoint block per cluster of K-shingle-similar documents, shared
              by its documents) (allocate).
  training    LM loss + alpha x an inductive loss that pushes each document's tokens to keep
              their hook-layer activity inside its slots (loss, train; module: a gated memory).
  measures    per point: recall, exact continuation, slot share, knowledge-neuron locality,
              circuits and the generation probe (measure); across points: recall and interference
              against alpha = 0 (summary).

Modules: sweep (the sweep's axes: allocations, models, hook layers), documents, allocate, loss,
module, train, measure, stage (the CLI), summary (tables and findings), plots and figures (the
figures and their table), checks (config checks); rules.smk and common.smk hold the study's rules.
"""
from .. import Study

STUDY = Study(
    name="memory",
    title="Document memory",
    package=__name__,
    sections={
        # documents (model width for the slots), training (the train section's optimiser), measures
        # (the main study's probes, circuits, neurons and generation probe), summary (bootstrap)
        "memory": ["memory", "model", "train", "evaluate", "circuits", "circuit_pairs", "neurons", "analysis"],
    },
    check=".checks:check",
    stages=(".stage",),
    figures=".figures",
    findings={"memory": ".summary:memory_markdown"},
    place=30,
)
