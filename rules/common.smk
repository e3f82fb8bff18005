# Helpers shared by every rule file: config validation, output paths, the stage command.
import json
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

REPO = Path(workflow.basedir)
sys.path.insert(0, str(REPO / "workflow"))

from kcircuits.config import ConfigError, resource_inputs, stage_settings, validate_config

# Validate before any job is scheduled: a bad key stops the run here with a message naming it.
try:
    validate_config(config, root=REPO)
except ConfigError as err:
    raise WorkflowError(str(err))

RUN = config["run"]
RESULTS = f"results/{RUN}"
DATA = f"{RESULTS}/data"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
RESOURCE_FILES = resource_inputs(config, root=REPO)
POOLS_DIR = str(Path(RESOURCE_FILES["pools"][0]).parent)
TEMPLATES_DIR = str(Path(RESOURCE_FILES["templates"][0]).parent)

# The stage CLI, importable from the checkout even where the package is not installed (conda envs).
# Never reach a model hub; keep idle OpenMP threads from spinning on shared cores.
KC = f"HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH={shlex.quote(str(REPO / 'workflow'))}${{PYTHONPATH:+:$PYTHONPATH}} python -m kcircuits"


def settings(stage):
    """The config sections a stage reads, as JSON: a rule param, so editing them reruns the stage.

    A function, so Snakemake does not read the JSON's braces (or a prompt's "{name}") as wildcards.
    """
    text = json.dumps(stage_settings(config, stage), sort_keys=True)
    return lambda wildcards: text
