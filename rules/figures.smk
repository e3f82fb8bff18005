# Figures of knowledge acquisition (PDF + PNG each; captions in report/ for `snakemake --report`).
# Curves read every training replicate's summary (mean and 95% interval over seeds).

FIGURES = f"{RESULTS}/figures"


def figure_outputs(name, caption, label, category="Knowledge acquisition"):
    """PDF and PNG of one figure, both shown in the Snakemake report under one category."""
    kw = {"caption": f"../report/{caption}", "category": category}
    return {
        "pdf": report(f"{FIGURES}/{name}.pdf", labels={"figure": label, "format": "PDF"}, **kw),
        "png": report(f"{FIGURES}/{name}.png", labels={"figure": label, "format": "PNG"}, **kw),
    }


FIGURE_SHELL = (
    "MPLBACKEND=Agg {KC} figure --kind {params.kind} --settings {params.settings:q} --table {input.table} "
    "--entities {input.entities} --pdf {output.pdf} --png {output.png} > {log} 2>&1"
)


rule figure_acquisition:
    input:
        table=expand(rules.eval_summary.output.summary, seed=SEEDS),
        entities=f"{DATA}/entities.parquet",
    output:
        **figure_outputs("acquisition", "acquisition.rst", "acquisition curves"),
    params:
        kind="acquisition",
        settings=settings("figures"),
    log:
        f"{LOGS}/figures/acquisition.log",
    conda:
        "../envs/figures.yaml"
    shell:
        FIGURE_SHELL


rule figure_overwriting:
    input:
        table=expand(rules.eval_summary.output.summary, seed=SEEDS),
        entities=f"{DATA}/entities.parquet",
    output:
        **figure_outputs("overwriting", "overwriting.rst", "overwriting of revised facts"),
    params:
        kind="overwriting",
        settings=settings("figures"),
    log:
        f"{LOGS}/figures/overwriting.log",
    conda:
        "../envs/figures.yaml"
    shell:
        FIGURE_SHELL


rule figure_heatmap:
    input:
        table=expand(rules.eval_summary.output.entities, seed=SEEDS[0]),  # one replicate's entities
        entities=f"{DATA}/entities.parquet",
    output:
        **figure_outputs("entity_heatmap", "entity_heatmap.rst", "entity x checkpoint recall"),
    params:
        kind="heatmap",
        settings=settings("figures"),
    log:
        f"{LOGS}/figures/entity_heatmap.log",
    conda:
        "../envs/figures.yaml"
    shell:
        FIGURE_SHELL


FIGURE_TARGETS = [
    *rules.figure_acquisition.output,
    *rules.figure_overwriting.output,
    *rules.figure_heatmap.output,
]
