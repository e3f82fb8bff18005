"""Bad configs stop with a message naming the key, before any work starts."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import REPO, snakemake
from kcircuits.config import ConfigError, deep_merge, load_config, validate_config

DEFAULT = load_config([REPO / "config.yaml"])


def with_changes(changes: dict) -> dict:
    cfg = deep_merge(DEFAULT, changes)
    groups = changes.get("entities", {}).get("frequency_groups")
    if groups is not None:  # replace, not merge: the test is about exactly these groups
        cfg["entities"]["frequency_groups"] = groups
    return cfg


def test_default_config_is_valid():
    validate_config(copy.deepcopy(DEFAULT))


def test_depth_config_is_deeper_with_replicates_and_a_checkpoint_every_epoch():
    cfg = validate_config(load_config([REPO / "config.yaml", REPO / "config.depth.yaml"]))
    assert cfg["run"] == "depth" and cfg["model"]["family"] == "gpt2" and cfg["model"]["n_layer"] >= 6
    assert len(cfg["train"]["seeds"]) >= 2 and cfg["train"]["checkpoints"]["every_epochs"] == 1


@pytest.mark.parametrize("changes, expected", [
    ({"colour": "blue"}, "unknown key(s) 'colour'"),
    ({"entities": {"size": 10}}, "entities: unknown key(s) 'size'"),
    ({"entities": {"n": "many"}}, "entities.n: 'many' is not of type 'integer'"),
    ({"entities": {"n": -5}}, "entities.n: -5 is less than the minimum of 1"),
    ({"entities": {"new_fraction": 1.5}}, "entities.new_fraction: 1.5 is greater than the maximum of 1"),
    ({"entities": {"frequency_lambda": 0}}, "entities.frequency_lambda"),
    ({"seed": 1.5}, "seed: 1.5 is not of type 'integer'"),
    ({"run": "a/b"}, "run: 'a/b' does not match"),
    ({"probes": {"n_per_group": 0}}, "probes.n_per_group: 0 is less than the minimum of 1"),
    ({"qa": {"n_options": 1}}, "qa.n_options"),
    ({"evaluate": {"generation_probe": {"samples": 0}}},
     "evaluate.generation_probe.samples: 0 is less than the minimum of 1"),
    ({"evaluate": {"generation_probe": {"temperature": 0}}}, "evaluate.generation_probe.temperature"),
    ({"evaluate": {"generation_probe": {"top_k": 5}}}, "evaluate.generation_probe: unknown key(s) 'top_k'"),
    ({"tokenizer": {"kind": "wordpiece"}}, "tokenizer.kind: 'wordpiece' is not one of"),
    ({"circuit_pairs": {"tasks": {"hobby": "{name} likes"}}}, "circuit_pairs.tasks: 'hobby' is not one of"),
    ({"entities": {"frequency_groups": {"low": {"min": 1, "max": 2}, "medium": {"min": 2, "max": 5},
                                        "high": {"min": 6}}}}, "frequency_groups.medium: min 2 overlaps"),
    ({"entities": {"frequency_groups": {"low": {"min": 1, "max": 1}, "high": {"min": 6}}}},
     "frequency_groups.high: min 6 leaves frequencies 2..5 in no group"),
    ({"entities": {"frequency_groups": {"low": {"min": 1, "max": 3}}}}, "frequencies above 3 fall in no group"),
    ({"entities": {"birth_years": {"min": 2000, "max": 1990}}}, "entities.birth_years: min is greater than max"),
    ({"tokenizer": {"kind": "pretrained", "path": None}}, "tokenizer.path: required"),
    ({"tokenizer": {"kind": "pretrained", "path": "/nonexistent/gpt2"}},
     "tokenizer.path: no Hugging Face tokenizer files"),
    ({"circuit_pairs": {"tasks": {"city": "{name} is from"}}},
     "circuit_pairs.tasks.city: '{name} is from' is not a prompt"),
    ({"entities": {"n": 10_000_000}}, "invented names needed"),
    ({"model": {"n_embd": 130, "n_head": 4}}, "model.n_embd (130) must be divisible by model.n_head (4)"),
    ({"model": {"family": "llama", "n_embd": 36, "n_head": 4}},
     "model.n_embd / model.n_head (36 / 4 = 9) must be even"),
    ({"train": {"block_size": 256}}, "train.block_size (256) exceeds model.n_positions (128)"),
    ({"analysis": {"heads": {"mover_ratio": 0.1, "relation_ratio": 10.0}}},
     "analysis.heads.mover_ratio (0.1) must be greater than analysis.heads.relation_ratio (10.0)"),
    ({"analysis": {"heads": {"mover_ratio": 2.0, "relation_ratio": 2.0}}},
     "analysis.heads.mover_ratio (2.0) must be greater"),
    ({"model": {"init": "/nonexistent/dir"}}, "model.init: /nonexistent/dir: no such folder"),
    ({"neurons": {"ig_points": "right"}}, "neurons.ig_points: 'right' is not one of"),
    ({"neurons": {"facts_per_cell": 0}}, "neurons.facts_per_cell: 0 is less than the minimum of 1"),
    ({"neurons": {"share": {"band": [5, 2]}}}, "neurons.share.band: lower end 5 is above the upper end 2"),
    ({"neurons": {"threshold": 0.05}}, "neurons.threshold (0.05) is below neurons.store_threshold (0.1)"),
    ({"neurons": {"baseline_threshold": 0.05}}, "neurons.baseline_threshold (0.05) is below"),
    ({"neurons": {"min_prompts": 5}}, "resources.templates: 'birthday' has 4 query templates"),
    ({"neurons": {"edit": {"lambda3": 1}}}, "neurons.edit: unknown key(s) 'lambda3'"),
    ({"reckoning": {"questions": {"city": "Where does {person} live?"}}}, "reckoning.questions.city"),
    ({"reckoning": {"questions": {"hobby": "What does {name} do?"}}}, "reckoning.questions.hobby: not an attribute"),
    ({"reckoning": {"headquarters_fact": "{city} hosts {company}."}}, "reckoning.headquarters_fact"),
    ({"reckoning": {"start": "the end"}}, "reckoning.start: 'the end' is neither last nor a checkpoint name"),
    ({"resources": {"shared_first_words": "yes"}}, "resources.shared_first_words: 'yes' is not of type 'boolean'"),
    ({"world": {"paraphrase_share": 0}}, "world.paraphrase_share: 0 is less than or equal to the minimum of 0"),
    ({"world": {"source": "/nonexistent/data"}}, "world.source: /nonexistent/data holds no selection_pool/"),
    ({"resources": {"entities": "/nonexistent/entities.parquet"}}, "resources.entities: no such file"),
    ({"reckoning": {"inner": {"optimizer": "lion"}}}, "reckoning.inner.optimizer: 'lion' is not one of"),
    ({"reckoning": {"methods": ["maml"]}}, "reckoning.methods.0: 'maml' is not one of"),
    ({"memory": {"layers": [0, 2]}}, "memory.layers: layer 2 is outside a model of 2 layers"),
    ({"memory": {"models": {"small": {"n_layer": 1}}}}, "memory.layers: layer 1 is outside a model of 1 layers"),
    ({"memory": {"models": {"main": None, "again": None}}}, "memory.models: ['main', 'again'] are all the main"),
    ({"memory": {"models": {"odd": {"n_head": 3}}}}, "memory.models: model.n_embd (128) must be divisible"),
    ({"memory": {"models": {"big": {"n_layers": 4}}}}, "memory.models.big"),
    ({"memory": {"models": {"Big/1": None}}}, "memory.models"),
    ({"memory": {"allocations": ["simset-3"]}}, "memory.allocations.0"),
    ({"memory": {"slots": 20}}, "memory.slots: partitioned needs 50 disjoint blocks of 20 slots"),
    ({"memory": {"clusters": 2.5}}, "memory.clusters"),
    ({"memory": {"start": "the end"}}, "memory.start: 'the end' is neither first, last nor a checkpoint name"),
    ({"memory": {"measure": {"prefix_share": 1.0}}}, "memory.measure.prefix_share"),
])
def test_bad_values_name_the_key(changes, expected):
    with pytest.raises(ConfigError) as err:
        validate_config(with_changes(changes))
    assert expected in str(err.value)


def test_missing_section_is_named():
    cfg = copy.deepcopy(DEFAULT)
    del cfg["probes"]
    with pytest.raises(ConfigError, match="'probes' is a required property"):
        validate_config(cfg)


@pytest.fixture()
def resources_copy(tmp_path) -> Path:
    shutil.copytree(REPO / "resources", tmp_path / "resources")
    return tmp_path / "resources"


def _cfg_for(resources: Path) -> dict:
    return with_changes({"resources": {"pools": str(resources / "pools"), "templates": str(resources / "templates")}})


def test_missing_pool_file_is_named(resources_copy):
    (resources_copy / "pools" / "majors.txt").unlink()
    with pytest.raises(ConfigError, match=r"missing resource file: .*pools/majors.txt"):
        validate_config(_cfg_for(resources_copy))


def test_empty_pool_is_named(resources_copy):
    (resources_copy / "pools" / "cities.txt").write_text("# nothing here\n\n")
    with pytest.raises(ConfigError, match=r"pool file is empty: .*cities.txt"):
        validate_config(_cfg_for(resources_copy))


def test_values_sharing_a_first_word_are_rejected(resources_copy):
    with open(resources_copy / "pools" / "cities.txt", "a") as fh:
        fh.write("New York\nNew Orleans\n")
    with pytest.raises(ConfigError, match="'New York' and 'New Orleans' begin with the same word 'New'"):
        validate_config(_cfg_for(resources_copy))


def test_values_sharing_a_first_word_pass_behind_the_switch(resources_copy):
    with open(resources_copy / "pools" / "cities.txt", "a") as fh:
        fh.write("New York\nNew Orleans\n")
    validate_config(deep_merge(_cfg_for(resources_copy), {"resources": {"shared_first_words": True}}))


def test_template_with_wrong_placeholder_is_named(resources_copy):
    path = resources_copy / "templates" / "biography.yaml"
    data = yaml.safe_load(path.read_text())
    data["city"][0] = "{name} lives in {town}."
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"biography.yaml: template for 'city' must use"):
        validate_config(_cfg_for(resources_copy))


def test_paraphrase_that_training_already_contains_is_rejected(resources_copy):
    path = resources_copy / "templates" / "paraphrase.yaml"
    data = yaml.safe_load(path.read_text())
    data["city"].append("{name} lives in {city}, they say.")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="gives a prompt that training text already contains"):
        validate_config(_cfg_for(resources_copy))


def test_llama_and_neox_shapes_that_build_pass():
    validate_config(with_changes({"model": {"family": "llama", "n_embd": 32, "n_head": 4}}))  # head size 8
    validate_config(with_changes({"model": {"family": "gpt_neox", "n_embd": 36, "n_head": 4}}))  # odd head: fine


def _init_cfg(init: str, **model) -> dict:
    """Default config starting from `init`, resources absolute (validate_config's root is then the init's)."""
    return with_changes({"model": {"init": init, **model},
                         "resources": {k: str(REPO / "resources" / k) for k in ("pools", "templates")}})


def _hf_folder(folder: Path, n_positions: int = 128, model_type: str | None = None) -> Path:
    """A tiny GPT-2 saved by transformers (config.json + model.safetensors); model_type rewritten if given."""
    import json

    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=50, n_layer=1, n_embd=16, n_head=2, n_positions=n_positions,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(folder)
    if model_type:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
    return folder


def test_model_init_holding_a_model_passes_and_is_resolved_against_the_root(tmp_path):
    from kcircuits.config import init_dir

    _hf_folder(tmp_path / "models" / "start")
    cfg = _init_cfg("models/start")
    validate_config(cfg, root=tmp_path)
    assert init_dir(cfg, root=tmp_path) == tmp_path / "models" / "start"
    with pytest.raises(ConfigError, match=r"model.init: .*models/start: no such folder"):
        validate_config(cfg, root=tmp_path / "elsewhere")


def test_model_init_without_a_model_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^model.init: .*empty: not a Hugging Face model folder"):
        validate_config(_init_cfg(str(tmp_path / "empty")))
    _hf_folder(tmp_path / "bert", model_type="bert")
    with pytest.raises(ConfigError, match=r"model.init: .*bert/config.json has model_type 'bert'"):
        validate_config(_init_cfg(str(tmp_path / "bert")))


def test_model_init_context_must_cover_the_block_size(tmp_path):
    _hf_folder(tmp_path / "short", n_positions=64)
    with pytest.raises(ConfigError, match=r"train.block_size \(128\) exceeds the 64 positions of model.init"):
        validate_config(_init_cfg(str(tmp_path / "short")))
    _hf_folder(tmp_path / "long", n_positions=128)
    validate_config(_init_cfg(str(tmp_path / "long"), n_positions=64))  # model.n_positions: unused with init


@pytest.mark.slow
def test_snakemake_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("entities:\n  new_fraction: 2\n")
    proc = snakemake(tmp_path, configfiles=(bad,), check=False)
    assert proc.returncode != 0
    assert "entities.new_fraction: 2 is greater than the maximum of 1" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
