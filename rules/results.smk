# Results across seeds and checkpoints: one tidy table with every metric, and the findings summary
# (does each of the original study's three findings hold in this run? the knowledge-neuron claim; and,
# when those studies are on, knowledge order, forgetting with replay and RECKONING).
#
# Outputs:
#   results/{run}/analysis/table.parquet   row per (seed, checkpoint, task, type, freq_group, budget)
#   results/{run}/analysis/findings.json   the findings with their numbers and verdicts
#   results/{run}/analysis/findings.md     the same, as a short markdown report


rule results_table:
    input:
        eval=across_seeds("eval_summary"),
        stats=across_seeds("summary_stats"),
        hits=across_seeds("summary_hits"),
        transplants=across_seeds("summary_transplant"),
        topology=across_seeds("topology"),
        roles=across_seeds("seed_head_roles"),
        lens=across_seeds("seed_logit_lens"),
        neuron_evolution=across_seeds("neuron_evolution"),
        neuron_overlap=across_seeds("seed_neuron_overlap"),
        neuron_interventions=across_seeds("seed_neuron_interventions"),
    output:
        table=PATHS["table"],
    params:
        settings=settings("analysis"),
    log:
        f"{LOGS}/analysis/table.log",
    conda:
        "../envs/figures.yaml"
    shell:
        "python -m kcircuits results table --settings {params.settings:q} --eval {input.eval} "
        "--stats {input.stats} --hits {input.hits} --transplants {input.transplants} "
        "--topology {input.topology} --roles {input.roles} --lens {input.lens} "
        "--neuron-evolution {input.neuron_evolution} --neuron-overlap {input.neuron_overlap} "
        "--neuron-interventions {input.neuron_interventions} --out {output.table} > {log} 2>&1"


rule findings:
    input:
        unpack(finding_inputs),
        entity_evals=across_seeds("eval_summary_entities"),
        phase_shift=PATHS["phase_shift_json"],
        depth_trend=PATHS["depth_trend_json"],
        neuron_interventions=across_seeds("seed_neuron_interventions"),
    output:
        json=PATHS["findings_json"],
        md=report(
            PATHS["findings_md"],
            caption="../report/findings.rst",
            category="Findings",
            labels={"summary": "findings (markdown)"},
        ),
    params:
        settings=settings("analysis"),
        studies=lambda wildcards, input: " ".join(f"--{key} {input[key]}" for key in FINDING_INPUTS),
    log:
        f"{LOGS}/analysis/findings.log",
    conda:
        "../envs/figures.yaml"
    shell:
        "python -m kcircuits results findings --settings {params.settings:q} --entity-evals {input.entity_evals} "
        "--phase-shift {input.phase_shift} --depth-trend {input.depth_trend} "
        "--neuron-interventions {input.neuron_interventions} {params.studies} "
        "--out-json {output.json} --out-md {output.md} > {log} 2>&1"


RESULTS_TARGETS = [*rules.results_table.output, *rules.findings.output]
