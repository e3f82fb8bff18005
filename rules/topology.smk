# Circuit topology across training: per replicate tables, then phase-shift and deep-to-shallow tests
# across replicates (figures: rules/figures.smk). Reads only stored circuit files (no model forward).
#
# Outputs:
#   results/{run}/seed-{seed}/analysis/topology.parquet  per checkpoint x cell x budget: sizes, edge
#                                                        entropy, mean layer, Jaccard to final / previous
#   results/{run}/seed-{seed}/analysis/layers.parquet    per checkpoint x cell x budget x parent layer:
#                                                        edge activation ratio
#   results/{run}/analysis/phase_shift.{parquet,json}    two-segment fits (seed x cell x curve) + summary
#   results/{run}/analysis/depth_trend.{parquet,json}    mean-layer slopes with bootstrap intervals


rule topology_tables:
    input:
        scores=across_checkpoints("scores"),
        circuits=across_checkpoints("circuits"),
    output:
        topology=PATHS["topology"],
        layers=PATHS["layers"],
    params:
        settings=settings("analysis"),
    log:
        f"{SEED_LOGS}/analysis/topology.log",
    benchmark:
        f"{SEED_BENCH}/analysis/topology.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/evaluate.yaml"
    shell:
        "OMP_NUM_THREADS=1 python -m kcircuits topology tables --settings {params.settings:q} "
        "--seed {wildcards.seed} --scores {input.scores} --circuits {input.circuits} "
        "--out-topology {output.topology} --out-layers {output.layers} > {log} 2>&1"


rule topology_phase_shift:
    input:
        topology=across_seeds("topology"),
        hits=across_seeds("summary_hits"),  # same seed order as topology
    output:
        table=PATHS["phase_shift"],
        summary=PATHS["phase_shift_json"],
    params:
        settings=settings("analysis"),
    log:
        f"{LOGS}/analysis/phase_shift.log",
    conda:
        "../envs/figures.yaml"
    shell:
        "python -m kcircuits topology phase-shift --settings {params.settings:q} --topology {input.topology} "
        "--hits {input.hits} --out-table {output.table} --out-json {output.summary} > {log} 2>&1"


rule topology_depth_trend:
    input:
        topology=across_seeds("topology"),
    output:
        table=PATHS["depth_trend"],
        summary=PATHS["depth_trend_json"],
    params:
        settings=settings("analysis"),
    log:
        f"{LOGS}/analysis/depth_trend.log",
    conda:
        "../envs/figures.yaml"
    shell:
        "python -m kcircuits topology depth-trend --settings {params.settings:q} --topology {input.topology} "
        "--out-table {output.table} --out-json {output.summary} > {log} 2>&1"


TOPOLOGY_TARGETS = [
    *across_seeds("topology"),
    *across_seeds("layers"),
    *rules.topology_phase_shift.output,
    *rules.topology_depth_trend.output,
]
