# The example study: one summary across seeds of the core's evaluation tables.


rule example_summary:
    input:
        eval=across_seeds("eval_summary"),
    output:
        table=PATHS["example_table"],
        json=PATHS["example_json"],
    params:
        settings=settings("example"),
    log:
        f"{LOGS}/example/summary.log",
    conda:
        env("figures")
    shell:
        "python -m kcircuits example summary --settings {params.settings:q} --eval {input.eval} "
        "--out-table {output.table} --out-json {output.json} > {log} 2>&1"


if config["example"]["enabled"]:
    STUDY_TARGETS.extend(rules.example_summary.output)
    FINDING_INPUTS["example"] = PATHS["example_json"]
STUDY_LOCAL_RULES.append("example_summary")
