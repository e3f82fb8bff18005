"""The RECKONING stage by hand (`kcircuits companies`, `kcircuits reckoning tasks | train | evaluate |
circuits`) on a tiny world and a random checkpoint, and the circuit pieces: theta' encoded with zero
rates is theta's circuit model exactly, the encoded circuit compared with itself has Jaccard 1, and a
context too long for the model is one error naming the key."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from helpers import REPO, micro_settings, random_checkpoint
from kcircuits.cli import main

CONFIG = {
    "reckoning": {"entities": {"train": 4, "validation": 2, "test": 8}, "distractors": [0, 2],
                  "inner": {"steps": 2}, "outer": {"epochs": 1, "batch_size": 2},
                  "evaluate": {"extra_steps": 1, "timing_questions": [1, 2]}, "circuits": {"entities": 8}},
    "circuits": {"max_pairs": 4, "edge_budgets": [20], "ig_steps": 2},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Config, data tables, tokenizer and a random start checkpoint, written once."""
    import yaml

    from kcircuits.config import deep_merge
    from kcircuits.data.entities import generate_entities
    from kcircuits.resources import load_pools
    from kcircuits.stats import stage_rng
    from kcircuits.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("reckoning")
    config = root / "config.yaml"
    base = deep_merge(yaml.safe_load((REPO / "config.yaml").read_text()), CONFIG)
    base["resources"].update({k: str(REPO / base["resources"][k]) for k in ("pools", "templates")})
    config.write_text(yaml.safe_dump(base))
    pools = load_pools(REPO / "resources" / "pools")
    entities, _ = generate_entities({**micro_settings(), "entities": {**base["entities"], "n": 20, "background": 5}},
                                    pools, stage_rng(0, "entities"))
    entities.to_parquet(root / "entities.parquet")
    paths = {name: root / f"{name}.parquet" for name in ("companies", "r_entities", "contexts", "questions")}
    assert main(["companies", "--config", str(config), "--out", str(paths["companies"])]) == 0
    assert main(["reckoning", "tasks", "--config", str(config), "--entities", str(root / "entities.parquet"),
                 "--companies", str(paths["companies"]), "--out-entities", str(paths["r_entities"]),
                 "--out-contexts", str(paths["contexts"]), "--out-questions", str(paths["questions"]),
                 "--report", str(root / "tasks.json")]) == 0
    contexts = pd.read_parquet(paths["contexts"])
    texts = [f for facts in contexts["facts"] for f in facts] + list(pd.read_parquet(paths["questions"])["question"])
    tok = train_bpe(texts * 2 + ["fact 0: fact 1: fact 2:"], 600, 1)
    ckpt = random_checkpoint(root, tok, "epoch-001", 1.0, layers=2, n_positions=128)
    return {"root": root, "config": config, "checkpoint": ckpt, "tok": tok, **paths}


def _io(world) -> list[str]:
    return ["--config", str(world["config"]), "--contexts", str(world["contexts"]), "--questions",
            str(world["questions"]), "--tokenizer", str(world["checkpoint"]), "--threads", "1", "--device", "cpu"]


@pytest.mark.slow  # trains (one epoch of a tiny model)
@pytest.mark.parametrize("method", ["reckoning_mt", "ft_icr"])
def test_train_evaluate_and_circuits_by_hand(world, method):
    root = world["root"]
    out = root / method
    assert main(["reckoning", "train", "--method", method, *_io(world), "--start", str(world["checkpoint"]),
                 "--out", str(out / "model")]) == 0
    record = json.loads((out / "model" / "train.json").read_text())
    assert record["method"] == method and len(record["history"]) == 1
    assert main(["reckoning", "evaluate", "--method", method, *_io(world), "--model", str(out / "model"),
                 *[f"--out-{n}={out / n}.parquet" for n in ("answers", "recitation", "timing")]]) == 0
    answers = pd.read_parquet(out / "answers.parquet")
    questions = pd.read_parquet(world["questions"])
    n_steps = 4 if method == "reckoning_mt" else 1  # steps 0 .. 2 + 1 extra; in-context: 0
    assert len(answers) == n_steps * (questions["split"] == "test").sum()
    assert answers["first_rank"].ge(1).all() and set(answers["method"]) == {method}
    timing = pd.read_parquet(out / "timing.parquet")
    assert list(timing["questions"]) == [1, 2] and timing["seconds"].gt(0).all()
    if method != "reckoning_mt":
        return
    assert len(pd.read_parquet(out / "recitation.parquet")) > 0
    continual = _continual_circuit(root / "circuits.parquet")
    hits = pd.DataFrame([{"task": "city", "type": "new", "freq_group": "high", "budget": "20", "target_type": "new",
                          "target_freq_group": "high", "ablation": "zero", "hit_at_k": 0.5}])
    hits.to_parquet(root / "hits.parquet")
    outs = [f"--out-{n.replace('_', '-')}={out / n}.parquet" for n in ("circuits", "hits", "compare", "layers")]
    assert main(["reckoning", "circuits", "--method", method, *_io(world), "--model", str(out / "model"),
                 "--continual", str(continual), "--continual-hits", str(root / "hits.parquet"), *outs]) == 0
    compare = pd.read_parquet(out / "compare.parquet")
    encoded = compare[compare["source"] == "encoded"]
    assert len(encoded) and (encoded["jaccard_with_encoded"] == 1).all()
    assert set(compare["source"]) == {"encoded", "continual"}


def _continual_circuit(path):
    """A made-up main-study circuit of the city task: one edge."""
    frame = pd.DataFrame([{"task": "city", "type": "new", "freq_group": "high", "parent": "input", "child": "m0",
                           "score": 1.0, "budget": "20"}])
    frame.to_parquet(path)
    return path


def test_zero_rates_encode_nothing_into_the_circuit_model(world):
    from kcircuits.checkpoint import load_model
    from kcircuits.circuits.model import CircuitModel
    from kcircuits.studies.reckoning.circuits import encoded_circuit_model
    from kcircuits.studies.reckoning.inner import LearnedRates, adapted_names, use_eager_attention

    model = use_eager_attention(load_model(world["checkpoint"], fused_gelu=False))
    rates = LearnedRates(adapted_names(model, "all"), 2, 0.0)
    facts = list(pd.read_parquet(world["contexts"])["facts"].iloc[0])
    encoded = encoded_circuit_model(model, rates, world["tok"], facts, {"steps": 2, "optimizer": "adam"})
    plain = CircuitModel(load_model(world["checkpoint"]))
    ids = torch.tensor([world["tok"]("Question: who?")["input_ids"]])
    assert torch.equal(encoded.hf(ids).logits, plain.hf(ids).logits)
    weights = plain.hf.state_dict()
    assert all(torch.equal(w, weights[name]) for name, w in encoded.hf.state_dict().items())


def test_a_context_longer_than_the_model_is_an_error_naming_the_key(world):
    from kcircuits.config import ConfigError
    from kcircuits.studies.reckoning.stage import prepare

    contexts, questions = pd.read_parquet(world["contexts"]), pd.read_parquet(world["questions"])
    with pytest.raises(ConfigError, match="reckoning.distractors"):
        prepare(contexts, questions, "train", world["tok"], 16)
