# Figures: one rule per entry of the one figure table (kcircuits.figures.stage.all_figures: the core's
# figures and every study's), `figure_<name>`, writing results/{run}/figures/<name>.{pdf,png} (each
# requestable by path: only what it reads is built) with `kcircuits figure <name>`, its log in
# logs/figures/<name>.log and its caption (report/<name>.rst of its folder) in `snakemake --report`.
# Curves are the mean and 95% interval over every training replicate's tables.
#
# An entry names the PATHS key of each input (one option of the command each, --key with underscores
# as dashes; a path with {seed} gives every replicate's file), the settings stage (cut to some keys
# where the entry says), and the config switch that puts it in the default target. A new figure: an
# entry in its module's FIGURES and a caption beside it.
FIGURE_TABLE = all_figures()


for name, figure in FIGURE_TABLE.items():

    rule:
        name:
            f"figure_{name}"
        input:
            **figure_inputs(figure),
            entities=PATHS["entities"],
        output:
            **figure_outputs(name, figure.label, figure.category, figure.caption),
        params:
            name=name,
            settings=figure_settings(figure),
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


FIGURE_RULES = [f"figure_{name}" for name in FIGURE_TABLE]
# A figure of a study switched off (its `enabled` key) is left out of the default target but stays
# requestable by path.
FIGURE_TARGETS = expand(
    PATHS["figure"],
    name=[name for name, figure in FIGURE_TABLE.items() if is_enabled(figure, config)],
    ext=["pdf", "png"],
)
