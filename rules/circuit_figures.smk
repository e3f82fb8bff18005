# Figures of knowledge circuits across training (PDF + PNG each; captions in report/circuit_*.rst),
# drawn from every training replicate's circuit summary tables: mean and 95% interval over seeds.
# Hit@k figures use zero ablation and the first edge budget (circuits.edge_budgets[0]); by hand,
# `kcircuits circuit-figure --ablation mean --budget 0.25 ...` draws another.
#
# Outputs, results/{run}/figures/:
#   circuit_hits.{pdf,png}                  own-circuit Hit@k by type and frequency group (+ full model)
#   circuit_cross_group.{pdf,png}           circuit of cell A on cell B, at the last checkpoint
#   circuit_cross_group_training.{pdf,png}  the same across training, within a type
#   circuit_transplant.{pdf,png}            transplant sources' circuits vs each checkpoint's own
#   circuit_faithfulness.{pdf,png}          faithfulness per edge budget

CIRCUIT_SUMMARY = {name: expand(f"{CIRCUITS}/summary_{name}.parquet", seed=SEEDS) for name in ("hits", "stats", "transplant")}


def circuit_figure_shell(*tables):
    """The circuit-figure command with one --TABLE option per summary table it reads."""
    files = " ".join(f"--{t} {{input.{t}}}" for t in tables)
    return (
        "MPLBACKEND=Agg {KC} circuit-figure --kind {params.kind} --settings {params.settings:q} "
        f"--entities {{input.entities}} {files} --pdf {{output.pdf}} --png {{output.png}} > {{log}} 2>&1"
    )


def circuit_figure_outputs(name, label):
    return figure_outputs(name, f"{name}.rst", label, category="Knowledge circuits")


rule figure_circuit_hits:
    input:
        hits=CIRCUIT_SUMMARY["hits"],
        entities=f"{DATA}/entities.parquet",
    output:
        **circuit_figure_outputs("circuit_hits", "circuit Hit@k across training"),
    params:
        kind="hits",
        settings=settings("circuits"),
    log:
        f"{LOGS}/figures/circuit_hits.log",
    conda:
        "../envs/figures.yaml"
    shell:
        circuit_figure_shell("hits")


rule figure_circuit_cross_group:
    input:
        hits=CIRCUIT_SUMMARY["hits"],
        entities=f"{DATA}/entities.parquet",
    output:
        **circuit_figure_outputs("circuit_cross_group", "cross-group Hit@k, last checkpoint"),
    params:
        kind="cross_group",
        settings=settings("circuits"),
    log:
        f"{LOGS}/figures/circuit_cross_group.log",
    conda:
        "../envs/figures.yaml"
    shell:
        circuit_figure_shell("hits")


rule figure_circuit_cross_group_training:
    input:
        hits=CIRCUIT_SUMMARY["hits"],
        entities=f"{DATA}/entities.parquet",
    output:
        **circuit_figure_outputs("circuit_cross_group_training", "cross-group Hit@k across training"),
    params:
        kind="cross_group_training",
        settings=settings("circuits"),
    log:
        f"{LOGS}/figures/circuit_cross_group_training.log",
    conda:
        "../envs/figures.yaml"
    shell:
        circuit_figure_shell("hits")


rule figure_circuit_transplant:
    input:
        hits=CIRCUIT_SUMMARY["hits"],
        transplant=CIRCUIT_SUMMARY["transplant"],
        entities=f"{DATA}/entities.parquet",
    output:
        **circuit_figure_outputs("circuit_transplant", "circuit transplant"),
    params:
        kind="transplant",
        settings=settings("circuits"),
    log:
        f"{LOGS}/figures/circuit_transplant.log",
    conda:
        "../envs/figures.yaml"
    shell:
        circuit_figure_shell("hits", "transplant")


rule figure_circuit_faithfulness:
    input:
        stats=CIRCUIT_SUMMARY["stats"],
        entities=f"{DATA}/entities.parquet",
    output:
        **circuit_figure_outputs("circuit_faithfulness", "circuit faithfulness"),
    params:
        kind="faithfulness",
        settings=settings("circuits"),
    log:
        f"{LOGS}/figures/circuit_faithfulness.log",
    conda:
        "../envs/figures.yaml"
    shell:
        circuit_figure_shell("stats")


CIRCUIT_FIGURE_TARGETS = [
    *rules.figure_circuit_hits.output,
    *rules.figure_circuit_cross_group.output,
    *rules.figure_circuit_cross_group_training.output,
    *rules.figure_circuit_transplant.output,
    *rules.figure_circuit_faithfulness.output,
]
