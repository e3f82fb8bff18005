# Figures: one rule per entry of FIGURES, `figure_<name>`, writing results/{run}/figures/<name>.{pdf,png}
# (each requestable by path: only what it reads is built) with `kcircuits figure <name>`, its log in
# logs/figures/<name>.log and its caption report/<name>.rst in `snakemake --report`. Curves are the mean
# and 95% interval over every training replicate's tables.
#
# An entry: the report category and label, the settings passed (--settings), the inputs besides the
# entities table that every figure reads (group order), and whether rule all asks for it (enabled); each input key becomes an option of the
# command (--key, underscores as dashes) taking one or more paths. A new figure: an entry here, a
# caption in report/, and its NAME in the figure command.
# Hit@k figures use zero ablation and the first edge budget (circuits.edge_budgets[0]); by hand,
# `kcircuits figure circuit_hits --ablation mean --budget 0.25 ...` draws another.
ACQUISITION = "Knowledge acquisition"
CIRCUIT = "Knowledge circuits"
TOPOLOGY = "Circuit topology"
COMPONENTS = "Specialised heads and logit lens"
NEURONS_CATEGORY = "Knowledge neurons"
INTERPLAY_CATEGORY = "Knowledge interplay"
RECKONING_CATEGORY = "RECKONING"
MEMORY_CATEGORY = "Document memory"
# the document-memory figures read the allocations' order and the first edge budget
MEMORY_FIGURE_SETTINGS = narrow_settings("memory", memory=["allocations"], circuits=["edge_budgets"])

FIGURES = {
    "acquisition": dict(
        category=ACQUISITION,
        label="acquisition curves",
        settings=settings("figures"),
        inputs=dict(table=across_seeds("eval_summary")),
    ),
    "overwriting": dict(
        category=ACQUISITION,
        label="overwriting of revised facts",
        settings=settings("figures"),
        inputs=dict(table=across_seeds("eval_summary")),
    ),
    "entity_heatmap": dict(
        category=ACQUISITION,
        label="entity x checkpoint recall",
        settings=settings("figures"),
        inputs=dict(table=expand(PATHS["eval_summary_entities"], seed=SEEDS[0])),  # one replicate's entities
    ),
    "generation_probe": dict(
        category=ACQUISITION,
        label="generation probe: new vs original value in sampled generations",
        settings=settings("figures"),
        inputs=dict(table=across_seeds("eval_summary_generations")),
    ),
    "circuit_hits": dict(
        category=CIRCUIT,
        label="circuit Hit@k across training",
        settings=settings("circuits"),
        inputs=dict(hits=across_seeds("summary_hits")),
    ),
    "circuit_cross_group": dict(
        category=CIRCUIT,
        label="cross-group Hit@k, last checkpoint",
        settings=settings("circuits"),
        inputs=dict(hits=across_seeds("summary_hits")),
    ),
    "circuit_cross_group_training": dict(
        category=CIRCUIT,
        label="cross-group Hit@k across training",
        settings=settings("circuits"),
        inputs=dict(hits=across_seeds("summary_hits")),
    ),
    "circuit_transplant": dict(
        category=CIRCUIT,
        label="circuit transplant",
        settings=settings("circuits"),
        inputs=dict(hits=across_seeds("summary_hits"), transplant=across_seeds("summary_transplant")),
    ),
    "circuit_faithfulness": dict(
        category=CIRCUIT,
        label="circuit faithfulness",
        settings=settings("circuits"),
        inputs=dict(stats=across_seeds("summary_stats")),
    ),
    "topology_entropy": dict(
        category=TOPOLOGY,
        label="circuit edge entropy across training",
        settings=settings("analysis"),
        inputs=dict(topology=across_seeds("topology")),
    ),
    "topology_jaccard": dict(
        category=TOPOLOGY,
        label="circuit Jaccard to final and previous",
        settings=settings("analysis"),
        inputs=dict(topology=across_seeds("topology")),
    ),
    "topology_layers": dict(
        category=TOPOLOGY,
        label="edge activation ratio, layer x checkpoint",
        settings=settings("analysis"),
        inputs=dict(topology=across_seeds("topology"), layers=across_seeds("layers")),
    ),
    "topology_mean_layer": dict(
        category=TOPOLOGY,
        label="mean circuit layer and its trend",
        settings=settings("analysis"),
        inputs=dict(topology=across_seeds("topology"), trend=PATHS["depth_trend_json"]),
    ),
    "head_roles": dict(
        category=COMPONENTS,
        label="mover / relation / mixture heads in circuits",
        settings=COMPONENTS_SETTINGS,
        inputs=dict(roles=across_seeds("seed_head_roles")),
    ),
    "head_layers": dict(
        category=COMPONENTS,
        label="in-circuit heads by layer and role",
        settings=COMPONENTS_SETTINGS,
        inputs=dict(layers=across_seeds("seed_head_layers")),
    ),
    "logit_lens": dict(
        category=COMPONENTS,
        label="logit-lens rank by layer",
        settings=COMPONENTS_SETTINGS,
        inputs=dict(lens=across_seeds("seed_logit_lens")),
    ),
    "neurons_layers": dict(
        category=NEURONS_CATEGORY,
        label="knowledge neurons by layer, IG vs baseline",
        settings=settings("neurons"),
        inputs=dict(layers=across_seeds("neuron_layers")),
    ),
    "neurons_suppress": dict(
        category=NEURONS_CATEGORY,
        label="suppress / amplify knowledge neurons",
        settings=settings("neurons"),
        inputs=dict(interventions=across_seeds("seed_neuron_interventions")),
    ),
    "neurons_edit": dict(
        category=NEURONS_CATEGORY,
        label="fact edits across training",
        settings=settings("neurons"),
        inputs=dict(edits=across_seeds("seed_neuron_edits")),
    ),
    "neurons_erase": dict(
        category=NEURONS_CATEGORY,
        label="erasing an attribute",
        settings=settings("neurons"),
        inputs=dict(erase=across_seeds("seed_neuron_erase")),
    ),
    "neurons_training": dict(
        category=NEURONS_CATEGORY,
        label="knowledge neurons across training",
        settings=settings("neurons"),
        inputs=dict(evolution=across_seeds("neuron_evolution")),
    ),
    "neurons_circuit_overlap": dict(
        category=NEURONS_CATEGORY,
        label="knowledge neurons inside circuits",
        settings=settings("neurons"),
        inputs=dict(overlap=across_seeds("seed_neuron_overlap")),
    ),
    # knowledge interplay (rules/interplay.smk): one summary across seeds and runs per study
    "order_accuracy": dict(
        category=INTERPLAY_CATEGORY,
        enabled=ORDER["enabled"],
        label="knowledge order: B's accuracy after A first",
        settings=settings("order"),
        inputs=dict(outcome=PATHS["order_outcome"]),
    ),
    "order_heatmap": dict(
        category=INTERPLAY_CATEGORY,
        enabled=ORDER["enabled"],
        label="knowledge order: interference and synergy, A x B",
        settings=settings("order"),
        inputs=dict(outcome=PATHS["order_outcome"]),
    ),
    "order_circuits": dict(
        category=INTERPLAY_CATEGORY,
        enabled=ORDER["enabled"],
        label="knowledge order: B's circuits with vs without A first",
        settings=settings("order"),
        inputs=dict(overlap=PATHS["order_overlap"]),
    ),
    "forgetting_recall": dict(
        category=INTERPLAY_CATEGORY,
        enabled=FORGETTING["enabled"],
        label="forgetting: recall per replay share",
        settings=settings("forgetting"),
        inputs=dict(recall=PATHS["forgetting_recall"]),
    ),
    "forgetting_circuits": dict(
        category=INTERPLAY_CATEGORY,
        enabled=FORGETTING["enabled"],
        label="forgetting: circuits per replay share",
        settings=settings("forgetting"),
        inputs=dict(circuits=PATHS["forgetting_circuits"]),
    ),
    # RECKONING (rules/reckoning.smk): the summary across methods and seeds
    "reckoning_accuracy": dict(
        category=RECKONING_CATEGORY,
        enabled=RECKONING["enabled"],
        label="RECKONING: label accuracy by hops and distractors",
        settings=settings("reckoning"),
        inputs=dict(accuracy=PATHS["reckoning_summary_accuracy"]),
    ),
    "reckoning_steps": dict(
        category=RECKONING_CATEGORY,
        enabled=RECKONING["enabled"],
        label="RECKONING: accuracy against test-time inner steps",
        settings=settings("reckoning"),
        inputs=dict(steps=PATHS["reckoning_summary_steps"]),
    ),
    "reckoning_recitation": dict(
        category=RECKONING_CATEGORY,
        enabled=RECKONING["enabled"],
        label="RECKONING: recitation of the relevant facts",
        settings=settings("reckoning"),
        inputs=dict(recitation=PATHS["reckoning_summary_recitation"]),
    ),
    "reckoning_timing": dict(
        category=RECKONING_CATEGORY,
        enabled=RECKONING["enabled"],
        label="RECKONING: time to answer k questions",
        settings=settings("reckoning"),
        inputs=dict(timing=PATHS["reckoning_summary_timing"]),
    ),
    "reckoning_circuits": dict(
        category=RECKONING_CATEGORY,
        enabled=RECKONING["enabled"],
        label="RECKONING: circuits of theta' against the pre-trained circuits",
        settings=settings("reckoning"),
        inputs=dict(
            layers=PATHS["reckoning_summary_circuit_layers"],
            hits=PATHS["reckoning_summary_circuit_hits"],
            compare=PATHS["reckoning_summary_circuit_compare"],
        ),
    ),
    # document memory (rules/memory.smk): the summary across points and seeds
    "memory_recall": dict(
        category=MEMORY_CATEGORY,
        enabled=MEMORY["enabled"],
        label="document memory: recall and interference against alpha",
        settings=MEMORY_FIGURE_SETTINGS,
        inputs=dict(
            recall=PATHS["memory_summary_recall"],
            interference=PATHS["memory_summary_interference"],
        ),
    ),
    "memory_layers": dict(
        category=MEMORY_CATEGORY,
        enabled=MEMORY["enabled"],
        label="document memory: layer sweep at alpha 0",
        settings=MEMORY_FIGURE_SETTINGS,
        inputs=dict(layers=PATHS["memory_summary_layers"], recall=PATHS["memory_summary_recall"]),
    ),
    "memory_locality": dict(
        category=MEMORY_CATEGORY,
        enabled=MEMORY["enabled"],
        label="document memory: knowledge neurons and activation inside the slots",
        settings=MEMORY_FIGURE_SETTINGS,
        inputs=dict(locality=PATHS["memory_summary_locality"]),
    ),
}

for name, figure in FIGURES.items():
    inputs = {**figure["inputs"], "entities": PATHS["entities"]}

    rule:
        name:
            f"figure_{name}"
        input:
            **inputs,
        output:
            **figure_outputs(name, figure["label"], figure["category"]),
        params:
            name=name,
            settings=figure["settings"],
            options=input_options,
        log:
            f"{LOGS}/figures/{name}.log",
        conda:
            "../envs/figures.yaml"
        shell:
            # only params, input and output: a shell command is formatted when the job runs, after
            # this loop has moved on (a loop variable would hold the last figure's values)
            "MPLBACKEND=Agg python -m kcircuits figure {params.name} --settings {params.settings:q} "
            "--pdf {output.pdf} --png {output.png} {params.options} > {log} 2>&1"


FIGURE_RULES = [f"figure_{name}" for name in FIGURES]
# A figure of a study switched off (order.enabled, forgetting.enabled, reckoning.enabled, memory.enabled) is left out
# of the default target but stays requestable by path.
FIGURE_TARGETS = expand(
    PATHS["figure"],
    name=[name for name, figure in FIGURES.items() if figure.get("enabled", True)],
    ext=["pdf", "png"],
)
