# Circuit topology across training: per replicate tables, then phase-shift and deep-to-shallow tests
# and figures across replicates. Reads only stored circuit files (no model forward): light jobs.
#
# Outputs:
#   results/{run}/seed-{seed}/analysis/topology.parquet  per checkpoint x cell x budget: sizes, edge
#                                                        entropy, mean layer, Jaccard to final / previous
#   results/{run}/seed-{seed}/analysis/layers.parquet    per checkpoint x cell x budget x parent layer:
#                                                        edge activation ratio
#   results/{run}/analysis/phase_shift.{parquet,json}    two-segment fits (seed x cell x curve) + summary
#   results/{run}/analysis/depth_trend.{parquet,json}    mean-layer slopes with bootstrap intervals
#   results/{run}/figures/topology_{entropy,jaccard,layers,mean_layer}.{pdf,png}
# CIRCUITS (with {seed}), CHECKPOINTS, SEEDS, FIGURES and figure_outputs come from earlier rule files.

SEED_ANALYSIS = f"{SEED_DIR}/analysis"
ANALYSIS = f"{RESULTS}/analysis"
TOPOLOGY_TABLES = {name: expand(f"{SEED_ANALYSIS}/{name}.parquet", seed=SEEDS) for name in ("topology", "layers")}
LOCAL_RULES_EXTRA.update({"topology_tables", "topology_phase_shift", "topology_depth_trend"})


rule topology_tables:
    input:
        scores=expand(f"{CIRCUITS}/{{ckpt}}/scores.safetensors", ckpt=CHECKPOINTS, allow_missing=True),
        circuits=expand(f"{CIRCUITS}/{{ckpt}}/circuits.parquet", ckpt=CHECKPOINTS, allow_missing=True),
    output:
        topology=f"{SEED_ANALYSIS}/topology.parquet",
        layers=f"{SEED_ANALYSIS}/layers.parquet",
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
        "OMP_NUM_THREADS=1 {KC} topology tables --settings {params.settings:q} --seed {wildcards.seed} "
        "--scores {input.scores} --circuits {input.circuits} "
        "--out-topology {output.topology} --out-layers {output.layers} > {log} 2>&1"


rule topology_phase_shift:
    input:
        topology=TOPOLOGY_TABLES["topology"],
        hits=expand(f"{CIRCUITS}/summary_hits.parquet", seed=SEEDS),  # same seed order as topology
    output:
        table=f"{ANALYSIS}/phase_shift.parquet",
        summary=f"{ANALYSIS}/phase_shift.json",
    params:
        settings=settings("analysis"),
    log:
        f"{LOGS}/analysis/phase_shift.log",
    conda:
        "../envs/figures.yaml"
    shell:
        "{KC} topology phase-shift --settings {params.settings:q} --topology {input.topology} --hits {input.hits} "
        "--out-table {output.table} --out-json {output.summary} > {log} 2>&1"


rule topology_depth_trend:
    input:
        topology=TOPOLOGY_TABLES["topology"],
    output:
        table=f"{ANALYSIS}/depth_trend.parquet",
        summary=f"{ANALYSIS}/depth_trend.json",
    params:
        settings=settings("analysis"),
    log:
        f"{LOGS}/analysis/depth_trend.log",
    conda:
        "../envs/figures.yaml"
    shell:
        "{KC} topology depth-trend --settings {params.settings:q} --topology {input.topology} "
        "--out-table {output.table} --out-json {output.summary} > {log} 2>&1"


def topology_figure_outputs(name, label):
    return figure_outputs(name, f"{name}.rst", label, category="Circuit topology")


TOPOLOGY_FIGURE_SHELL = (
    "MPLBACKEND=Agg {KC} topology figure --kind {params.kind} --settings {params.settings:q} "
    "--topology {input.topology} --entities {input.entities} {params.extra} "
    "--pdf {output.pdf} --png {output.png} > {log} 2>&1"
)


rule figure_topology_entropy:
    input:
        topology=TOPOLOGY_TABLES["topology"],
        entities=f"{DATA}/entities.parquet",
    output:
        **topology_figure_outputs("topology_entropy", "circuit edge entropy across training"),
    params:
        kind="entropy",
        extra="",
        settings=settings("analysis"),
    log:
        f"{LOGS}/figures/topology_entropy.log",
    conda:
        "../envs/figures.yaml"
    shell:
        TOPOLOGY_FIGURE_SHELL


rule figure_topology_jaccard:
    input:
        topology=TOPOLOGY_TABLES["topology"],
        entities=f"{DATA}/entities.parquet",
    output:
        **topology_figure_outputs("topology_jaccard", "circuit Jaccard to final and previous"),
    params:
        kind="jaccard",
        extra="",
        settings=settings("analysis"),
    log:
        f"{LOGS}/figures/topology_jaccard.log",
    conda:
        "../envs/figures.yaml"
    shell:
        TOPOLOGY_FIGURE_SHELL


rule figure_topology_layers:
    input:
        topology=TOPOLOGY_TABLES["topology"],
        layers=TOPOLOGY_TABLES["layers"],
        entities=f"{DATA}/entities.parquet",
    output:
        **topology_figure_outputs("topology_layers", "edge activation ratio, layer x checkpoint"),
    params:
        kind="layers",
        extra=lambda wildcards, input: "--layers " + " ".join(input.layers),
        settings=settings("analysis"),
    log:
        f"{LOGS}/figures/topology_layers.log",
    conda:
        "../envs/figures.yaml"
    shell:
        TOPOLOGY_FIGURE_SHELL


rule figure_topology_mean_layer:
    input:
        topology=TOPOLOGY_TABLES["topology"],
        trend=rules.topology_depth_trend.output.summary,
        entities=f"{DATA}/entities.parquet",
    output:
        **topology_figure_outputs("topology_mean_layer", "mean circuit layer and its trend"),
    params:
        kind="mean-layer",
        extra=lambda wildcards, input: f"--trend {input.trend}",
        settings=settings("analysis"),
    log:
        f"{LOGS}/figures/topology_mean_layer.log",
    conda:
        "../envs/figures.yaml"
    shell:
        TOPOLOGY_FIGURE_SHELL


TOPOLOGY_TARGETS = [
    *TOPOLOGY_TABLES["topology"],
    *TOPOLOGY_TABLES["layers"],
    *rules.topology_phase_shift.output,
    *rules.topology_depth_trend.output,
    *rules.figure_topology_entropy.output,
    *rules.figure_topology_jaccard.output,
    *rules.figure_topology_layers.output,
    *rules.figure_topology_mean_layer.output,
]
