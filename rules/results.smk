# Results across seeds and checkpoints: one tidy table with every metric, and the findings summary
# (does each of the original study's three findings hold in this run?).
#
# Outputs:
#   results/{run}/analysis/table.parquet   row per (seed, checkpoint, task, type, freq_group, budget)
#   results/{run}/analysis/findings.json   the three findings with their numbers and verdicts
#   results/{run}/analysis/findings.md     the same, as a short markdown report
# EVAL, CIRCUITS, COMPONENTS, SEED_ANALYSIS, ANALYSIS and the rules they name come from earlier files.


rule results_table:
    input:
        eval=expand(rules.eval_summary.output.summary, seed=SEEDS),
        stats=expand(rules.circuit_summary.output.stats, seed=SEEDS),
        hits=expand(rules.circuit_summary.output.hits, seed=SEEDS),
        transplants=expand(rules.circuit_summary.output.transplant, seed=SEEDS),
        topology=expand(rules.topology_tables.output.topology, seed=SEEDS),
        roles=expand(rules.components_summary.output.roles, seed=SEEDS),
        lens=expand(rules.components_summary.output.lens, seed=SEEDS),
    output:
        table=f"{ANALYSIS}/table.parquet",
    params:
        settings=settings("analysis"),
    log:
        f"{LOGS}/analysis/table.log",
    conda:
        "../envs/figures.yaml"
    shell:
        "{KC} results table --settings {params.settings:q} --eval {input.eval} --stats {input.stats} "
        "--hits {input.hits} --transplants {input.transplants} --topology {input.topology} "
        "--roles {input.roles} --lens {input.lens} --out {output.table} > {log} 2>&1"


rule findings:
    input:
        entity_evals=expand(rules.eval_summary.output.entities, seed=SEEDS),
        phase_shift=rules.topology_phase_shift.output.summary,
        depth_trend=rules.topology_depth_trend.output.summary,
    output:
        json=f"{ANALYSIS}/findings.json",
        md=report(f"{ANALYSIS}/findings.md", caption="../report/findings.rst", category="Findings",
                  labels={"summary": "findings (markdown)"}),
    params:
        settings=settings("analysis"),
    log:
        f"{LOGS}/analysis/findings.log",
    conda:
        "../envs/figures.yaml"
    shell:
        "{KC} results findings --settings {params.settings:q} --entity-evals {input.entity_evals} "
        "--phase-shift {input.phase_shift} --depth-trend {input.depth_trend} "
        "--out-json {output.json} --out-md {output.md} > {log} 2>&1"


LOCAL_RULES_EXTRA.update({"results_table", "findings"})
RESULTS_TARGETS = [*rules.results_table.output, *rules.findings.output]
