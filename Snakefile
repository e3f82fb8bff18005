# kcircuits: watch language models acquire knowledge, checkpoint by checkpoint.
# Thin by design: stage logic lives in workflow/kcircuits, rules in rules/*.smk, every path in PATHS
# and the functions rules call in rules/common.smk.
import os

from snakemake.utils import min_version

min_version("9.0")


# The embedded default; --configfile FILE merges FILE over it (paper scale, tests).
configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/tokenizer.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/circuits.smk"
include: "rules/components.smk"
include: "rules/neurons.smk"
include: "rules/topology.smk"


# Each study's rules (kcircuits.studies: its folder's rules.smk), after the core's, before the results.
for study in STUDIES.values():

    include: study.file("common.smk")
    include: study.file("rules.smk")


include: "rules/results.smk"
include: "rules/figures.smk"


rule all:
    default_target: True
    input:
        DATA_TARGETS,
        TRAIN_TARGETS,
        EVAL_TARGETS,
        CIRCUIT_TARGETS,
        COMPONENT_TARGETS,
        NEURON_TARGETS,
        TOPOLOGY_TARGETS,
        RESULTS_TARGETS,
        FIGURE_TARGETS,
        STUDY_TARGETS,


# Light rules run on the submitting machine under a cluster executor (no queue wait): checkpoint
# exports (file copies), joins of finished tables across checkpoints or seeds, and figures. The one
# place that says so: a new light rule adds its name here.
LOCAL_RULES = [
    "all",
    "export_start_checkpoint",
    "export_checkpoint",
    "eval_summary",
    "circuit_summary",
    "components_summary",
    "neurons_summary",
    "topology_tables",
    "topology_phase_shift",
    "topology_depth_trend",
    "results_table",
    "findings",
    *FIGURE_RULES,
    *STUDY_LOCAL_RULES,
]
workflow.localrules(*LOCAL_RULES)
