"""Analyses across checkpoints (and across training replicates) of the stored circuit files.

    topology.py        per seed: circuit sizes, Jaccard to the final / previous circuit, edge
                       entropy, score-weighted mean layer, per-layer edge activation ratio
    trends.py          two-segment (phase-shift) fits and bootstrap slope intervals
    topology_stage.py  `kcircuits topology ACTION`, one action per Snakemake rule
    heads.py           per checkpoint: each head's direct contribution to the target logit split by
                       source (subject vs relation tokens); mover / relation / mixture roles
    logit_lens.py      per checkpoint: rank and probability of the target when each layer's
                       residual stream is unembedded (last position, and best subject position)
    components_stage.py  `kcircuits components ACTION` (heads + logit lens per checkpoint, summary)
    report_stage.py    `kcircuits results ACTION` (the tidy table, the findings)

Import from the submodules; this file imports nothing, so the CLI starts without loading torch.
"""
