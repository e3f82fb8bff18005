# kcircuits: watch language models acquire knowledge, checkpoint by checkpoint.
# Thin by design: stage logic lives in workflow/kcircuits, rules in rules/*.smk.
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
include: "rules/figures.smk"
include: "rules/circuits.smk"
include: "rules/topology.smk"
include: "rules/circuit_figures.smk"
include: "rules/components.smk"
include: "rules/results.smk"


rule all:
    input:
        DATA_TARGETS,
        TRAIN_TARGETS,
        EVAL_TARGETS,
        FIGURE_TARGETS,
        CIRCUIT_TARGETS,
        CIRCUIT_FIGURE_TARGETS,
        TOPOLOGY_TARGETS,
        COMPONENT_TARGETS,
        RESULTS_TARGETS,
    default_target: True


# Light rules (tables across checkpoints, figures, exports, all) stay on the submitting machine
# under a cluster executor; see rules/common.smk.
LOCAL_RULES = register_local_rules()
