"""Knowledge circuits: EAP / EAP-IG edge attribution over the node graph of a causal LM, circuit
selection, and circuit evaluation (faithfulness, ablated Hit@k, transplant), as in the original
study (arXiv 2502.11196, which uses hannamw/EAP-IG).

    graph.py      nodes, slots, edges, names; Circuit masks; top-n / greedy selection; pruning
    model.py      an explicit forward per family (GPT-2, GPT-NeoX, Llama) exposing every node input
    light.py      the modules model.py reads, built from a checkpoint folder without transformers
    attribute.py  EAP, EAP-IG (input interpolation) and exact per-edge patching; conventions
    evaluate.py   faithfulness, Hit@k under zero / mean ablation, cross-group, transplant
    metrics.py    logit difference (sign convention), edge entropy, Spearman
    store.py      scores as safetensors, circuits as parquet
    draw.py       DOT / SVG

Import from the submodules; this file imports nothing, so the CLI (and every data job) starts
without loading torch.
"""
