# Knowledge neurons (Dai et al. 2022) at every checkpoint, on the same facts at each: the facts' bags
# once, then per (seed, checkpoint) attribution, selection and experiments, then a join per seed with
# the neurons' evolution across checkpoints (figures: rules/figures.smk; contract of every table:
# workflow/kcircuits/neurons/stage.py).
#
# Outputs:
#   results/{run}/data/neuron_bags.parquet                        sampled facts x their query prompts
#   results/{run}/seed-{seed}/neurons/{ckpt}/prompts.parquet      prompt x target: P(target), rank
#   results/{run}/seed-{seed}/neurons/{ckpt}/scores.safetensors   per prompt, its top IG / activation scores
#   results/{run}/seed-{seed}/neurons/{ckpt}/{facts,neurons,interventions,edits,erase,overlap}.parquet
#   results/{run}/seed-{seed}/analysis/neuron_{facts,interventions,edits,erase,overlap,evolution,layers}.parquet


rule neuron_facts:
    input:
        probes=PATHS["probes"],
    output:
        bags=PATHS["neuron_bags"],
    params:
        settings=narrow_settings("neurons", neurons=["facts_per_cell"]),
    log:
        f"{LOGS}/data/neuron_facts.log",
    conda:
        "../envs/data.yaml"
    shell:
        "python -m kcircuits neurons facts --settings {params.settings:q} --probes {input.probes} "
        "--out {output.bags} > {log} 2>&1"


# Attribution, selection and experiments in one job per checkpoint: a second job would load Python,
# torch and the model again, as long as the work itself on the default. `kcircuits neurons select`
# re-selects from the saved scores by hand.
rule neurons_measure:
    input:
        checkpoint=PATHS["checkpoint"],
        tokenizer=PATHS["tokenizer"],
        bags=PATHS["neuron_bags"],
        circuits=PATHS["circuits"],
    output:
        **{name: PATHS[f"neurons_{name}"] for name in NEURON_TABLES},
        prompts=PATHS["neuron_prompts"],
        scores=PATHS["neuron_scores"],
    params:
        device=job_device("neurons"),
        settings=NEURON_SETTINGS,
        outputs=output_options,
    log:
        f"{SEED_LOGS}/neurons/{{ckpt}}.log",
    benchmark:
        f"{SEED_BENCH}/neurons/{{ckpt}}.tsv"
    threads: job_threads("neurons")  # config compute.neurons
    resources:
        **job_resources("neurons"),
    conda:
        "../envs/evaluate.yaml"
    shell:
        "TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS={threads} python -m kcircuits neurons measure "
        "--settings {params.settings:q} --checkpoint {input.checkpoint} --tokenizer {input.tokenizer} "
        "--bags {input.bags} --circuits {input.circuits} --threads {threads} --device {params.device} {params.outputs} > {log} 2>&1"


rule neurons_summary:
    input:
        **{name: across_checkpoints(f"neurons_{name}") for name in NEURON_TABLES},
    output:
        **{name: PATHS[f"seed_neuron_{name}"] for name in NEURON_SEED_TABLES},
        evolution=PATHS["neuron_evolution"],
        layers=PATHS["neuron_layers"],
    params:
        settings=NEURON_SETTINGS,
        inputs=input_options,
        outputs=output_options,
    log:
        f"{SEED_LOGS}/neurons/summary.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "python -m kcircuits neurons summary --settings {params.settings:q} {params.inputs} {params.outputs} "
        "> {log} 2>&1"


NEURON_TARGETS = expand(
    [*(PATHS[f"seed_neuron_{name}"] for name in NEURON_SEED_TABLES), PATHS["neuron_evolution"], PATHS["neuron_layers"]],
    seed=SEEDS,
)
