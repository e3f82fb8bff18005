"""Training: checkpoint schedule, block packing, exact resumption, kill -9 recovery, model families,
and the training rules end to end under Snakemake (smoke config, shortened)."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO, SMOKE, micro_settings, planned_jobs, snakemake
from kcircuits.config import deep_merge, load_config
from kcircuits.train import schedule
from kcircuits.train.corpus import epoch_blocks, pack_paragraphs


def with_schedule(epochs: int, every: int, steps: list[int]) -> dict:
    return deep_merge(load_config([REPO / "config.yaml"]),
                      {"train": {"continual": {"epochs": epochs},
                                 "checkpoints": {"every_epochs": every, "steps": steps}}})


# ---- schedule (pure) ---------------------------------------------------------------------------

def test_epoch_checkpoints_follow_the_interval_and_always_include_the_last_epoch():
    assert schedule.checkpoint_names(with_schedule(10, 3, [])) == [
        "epoch-000", "epoch-003", "epoch-006", "epoch-009", "epoch-010"]
    assert schedule.checkpoint_names(with_schedule(3, 1, [])) == ["epoch-000", "epoch-001", "epoch-002", "epoch-003"]


def test_step_checkpoints_are_interleaved_by_progress_given_steps_per_epoch():
    cfg = with_schedule(4, 2, [150, 5, 40, 100])
    assert schedule.checkpoint_names(cfg) == [
        "epoch-000", "epoch-002", "epoch-004", "step-000005", "step-000040", "step-000100", "step-000150"]
    assert schedule.checkpoint_names(cfg, steps_per_epoch=50) == [
        "epoch-000", "step-000005", "step-000040", "epoch-002", "step-000100", "step-000150", "epoch-004"]
    assert [schedule.progress(n, 50) for n in ("step-000005", "epoch-002")] == [0.1, 2.0]
    assert schedule.parse_checkpoint("step-000040") == ("step", 40)
    with pytest.raises(ValueError):
        schedule.parse_checkpoint("epoch-2b")


def test_a_step_checkpoint_resumes_from_the_last_epoch_state_strictly_before_it():
    assert [schedule.start_epoch_for_step(s, 50) for s in (1, 49, 50, 51, 100, 101)] == [0, 0, 0, 1, 1, 2]
    with pytest.raises(ValueError, match="beyond the last step"):
        schedule.check_steps_within_training(with_schedule(2, 1, [101]), steps_per_epoch=50)


def test_adding_epochs_or_checkpoints_leaves_every_training_job_param_unchanged():
    before, after = with_schedule(5, 1, []), with_schedule(9, 2, [3, 17])
    # execution detail only: where the job runs (compute.train.device) and how often it saves
    after = deep_merge(after, {"train": {"save_steps": 25}, "compute": {"train": {"device": "cpu"}}})
    for phase in ("base", "corpus", "continual"):
        assert schedule.phase_settings(after, phase) == schedule.phase_settings(before, phase)
    assert schedule.execution_settings(after) == {"kind": "train", "device": "cpu", "deepspeed": None, "save_steps": 25}
    lr_changed = deep_merge(before, {"train": {"continual": {"lr": 5e-4}}})
    assert schedule.phase_settings(lr_changed, "continual") != schedule.phase_settings(before, "continual")
    assert schedule.phase_settings(lr_changed, "base") == schedule.phase_settings(before, "base")


# ---- packing -----------------------------------------------------------------------------------

def test_blocks_start_at_paragraphs_and_an_overflowing_paragraph_is_repeated_whole():
    eos = 0
    paras = [[1, 1, 1], [2, 2, 2, 2], [3, 3], [4, 4, 4, 4, 4, 4, 4, 4, 4, 4]]
    blocks, segments = pack_paragraphs(paras, block_size=8, eos_id=eos)  # [n_blocks, 8], [n_blocks, 2]
    assert blocks.tolist() == [
        [1, 1, 1, 0, 2, 2, 2, 2],   # paragraph 2 is cut by the block end ...
        [2, 2, 2, 2, 0, 3, 3, 0],   # ... and starts the next block whole; 4 does not fit either
        [4, 4, 4, 4, 4, 4, 4, 4],   # 4 + eos is longer than a block: split
        [4, 4, 0, 1, 1, 1, 0, 2],   # the last block is completed from the corpus start, no padding
    ]
    # Whole paragraphs each block starts with (a cut head or a split piece is none).
    assert segments.tolist() == [[4, 0], [5, 3], [0, 0], [0, 0]]


def test_each_epoch_reorders_only_the_whole_paragraphs_inside_a_block():
    paras = [[1, 1, 1], [2, 2, 2, 2], [3, 3], [4, 4, 4, 4, 4, 4, 4, 4, 4, 4]]
    blocks, segments = pack_paragraphs(paras, block_size=8, eos_id=0)
    views = [epoch_blocks(blocks, segments, seed=0, epoch=e) for e in range(12)]
    assert all(np.array_equal(v[[0, 2, 3]], blocks[[0, 2, 3]]) for v in views)  # nothing to reorder there
    seen = {tuple(v[1]) for v in views}
    assert seen == {(2, 2, 2, 2, 0, 3, 3, 0), (3, 3, 0, 2, 2, 2, 2, 0)}  # both orders occur, nothing else
    assert np.array_equal(epoch_blocks(blocks, segments, 0, 5), views[5])  # a function of (seed, epoch)


# ---- training: exact resumption, families ------------------------------------------------------

@pytest.fixture(scope="module")
def micro_start(tiny_data, tmp_path_factory):
    """A freshly initialised micro model to continue from, with the tiny world's files."""
    from kcircuits.tokenizer import load_tokenizer
    from kcircuits.train.model import build_model

    root = tmp_path_factory.mktemp("micro")
    model = build_model(micro_settings()["model"], load_tokenizer(tiny_data / "tokenizer"), seed=0)
    model.save_pretrained(root / "start")
    return {"start": root / "start", "tokenizer": tiny_data / "tokenizer", "corpus": tiny_data / "bios_train.jsonl"}


def micro_world(micro_start, settings, root: Path) -> dict:
    """The continual blocks and steps per epoch for `settings`, in `root`."""
    from kcircuits.train.jobs import continual_corpus

    continual_corpus(settings, micro_start["corpus"], micro_start["tokenizer"], root / "blocks.npz",
                     root / "corpus.json")
    return {**micro_start, "root": root, "blocks": root / "blocks.npz", "summary": root / "corpus.json"}


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    import torch

    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"weights differ in {different}"


def continual(world, settings, until_epoch, start, name, execution=None):
    from kcircuits.train.jobs import train_continual

    out = world["root"] / name
    return out, train_continual(settings, execution or {"device": "cpu"}, start, world["blocks"], world["summary"],
                                world["tokenizer"], world["root"] / f"scratch-{name}", out,
                                until_epoch=until_epoch, threads=1)


@pytest.mark.slow
def test_two_epochs_in_one_job_equal_one_plus_one_resumed(micro_start, tmp_path):
    # Dropout and gradient accumulation on: identity then needs the RNG, optimizer state, step
    # counters and data order all restored exactly, not just the weights.
    s = micro_settings(model={"dropout": 0.1}, train={"grad_accum": 2})
    world = micro_world(micro_start, s, tmp_path)
    whole, info_whole = continual(world, s, 2, world["start"], "whole")
    first, info_first = continual(world, s, 1, world["start"], "first")
    second, info_second = continual(world, s, 2, first, "second")
    assert info_first["global_step"] == info_first["steps_per_epoch"] > 1
    assert_same_weights(whole, second)
    assert {k: info_whole[k] for k in ("global_step", "tokens_seen", "epoch")} == \
           {k: info_second[k] for k in ("global_step", "tokens_seen", "epoch")}
    # The continual state is what a resumed Trainer needs; the scratch folders are gone.
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "kcircuits_state.json"} <= \
           {p.name for p in second.iterdir()}
    assert not list(tmp_path.glob("scratch-*"))


@pytest.mark.slow
def test_a_stream_run_writes_its_checkpoint_schedule_and_reproduces_bit_for_bit(micro_start, tmp_path):
    import torch

    from kcircuits import io
    from kcircuits.checkpoint import checkpoint_metadata
    from kcircuits.tokenizer import load_tokenizer
    from kcircuits.train.corpus import tokenize_paragraphs
    from kcircuits.train.jobs import train_stream
    from kcircuits.vocabulary import step_name

    texts = [r["text"] for r in io.read_jsonl(micro_start["corpus"])[:120]]
    tok = load_tokenizer(micro_start["tokenizer"])
    blocks, _ = pack_paragraphs(tokenize_paragraphs(texts, tok), 64, tok.eos_token_id, fill="eos")
    io.save_npz(tmp_path / "blocks.npz", blocks=blocks)
    s = schedule.stream_settings({**micro_settings(), "order": {"lr": 3e-3, "checkpoints": {"gaps": [1, 2],
                                                                                              "every": 3}}}, "order", 0)
    total = -(-len(blocks) // s["train"]["batch_size"])

    def run(name):
        train_stream(s, {"device": "cpu"}, "order", micro_start["start"], tmp_path / "blocks.npz",
                     micro_start["tokenizer"], tmp_path / f"scratch-{name}", tmp_path / name, threads=1)
        return tmp_path / name

    a, b = run("a"), run("b")
    steps = schedule.stream_steps(total, [1, 2], 3)
    assert total > 6 and steps[:3] == [1, 3, 6] and steps[-1] == total
    assert sorted(p.name for p in a.iterdir()) == [step_name(x) for x in steps]
    last = checkpoint_metadata(a / step_name(total))
    assert (last["phase"], last["global_step"], last["epoch"]) == ("order", total, 1.0)
    assert last["tokens_seen"] == blocks.size
    for name in (p.name for p in a.iterdir()):
        assert_same_weights(a / name, b / name)
    first = weights(a / step_name(1))
    assert any(not torch.equal(first[k], v) for k, v in weights(micro_start["start"]).items())
    assert not list(tmp_path.glob("scratch-*"))


@pytest.mark.slow
def test_a_killed_job_resumes_from_its_last_save_and_finishes_identically(micro_start, tmp_path):
    s = micro_settings()
    micro = micro_world(micro_start, s, tmp_path)
    root = tmp_path
    scratch, out = root / "kill-scratch", root / "kill-out"
    cmd = [sys.executable, "-m", "kcircuits", "train-continual", "--settings", json.dumps(s),
           "--execution", json.dumps({"device": "cpu", "save_steps": 10}), "--start", str(micro["start"]),
           "--blocks", str(micro["blocks"]), "--summary", str(micro["summary"]),
           "--tokenizer", str(micro["tokenizer"]), "--until-epoch", "2", "--threads", "1",
           "--scratch", str(scratch), "--out", str(out)]
    with open(root / "kill-1.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not list(scratch.glob("checkpoint-*/trainer_state.json")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the job ended before its first save"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    assert not out.exists()
    saved = max(int(p.parent.name.split("-")[1]) for p in scratch.glob("checkpoint-*/trainer_state.json"))

    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = re.search(r"resuming this job from its scratch checkpoint .*checkpoint-(\d+)", rerun.stderr)
    assert resumed and int(resumed.group(1)) == saved >= 10
    assert not scratch.exists()

    reference, _ = continual(micro, s, 2, micro["start"], "uninterrupted")
    assert_same_weights(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("family, config_class", [("gpt_neox", "GPTNeoXConfig"), ("llama", "LlamaConfig")])
def test_other_families_build_train_and_reload(micro_start, tmp_path, family, config_class):
    import torch

    from kcircuits.checkpoint import load_model
    from kcircuits.tokenizer import load_tokenizer
    from kcircuits.train.corpus import BlockDataset, load_blocks
    from kcircuits.train.model import build_model
    from kcircuits.train.trainer import run_training

    s = micro_settings(model={"family": family})
    micro = micro_world(micro_start, s, tmp_path)
    tok = load_tokenizer(micro["tokenizer"])
    model = build_model(s["model"], tok, seed=0)
    assert type(model.config).__name__ == config_class
    assert (model.config.eos_token_id, model.config.vocab_size) == (tok.eos_token_id, len(tok))
    dataset = BlockDataset(*load_blocks(micro["blocks"]))
    batch = dataset.input_ids[:8]  # [8, block_size]
    with torch.no_grad():
        before = model(input_ids=batch, labels=batch).loss.item()
    _, trainer = run_training(model, dataset, s, {"device": "cpu"}, tmp_path / "scratch", lr=3e-3, max_steps=15,
                              threads=1)
    assert trainer.state.global_step == 15
    model.save_pretrained(tmp_path / "saved")
    reloaded = load_model(tmp_path / "saved").eval()
    with torch.no_grad():
        after = reloaded(input_ids=batch, labels=batch).loss.item()
    assert after < before - 0.5


@pytest.mark.slow
def test_zero_base_epochs_saves_the_seeded_initial_model_and_init_exports_as_epoch_000(micro_start, tmp_path):
    from kcircuits.train.jobs import export_start, train_base

    s = micro_settings(train={"base": {"epochs": 0, "lr": 1e-3}})
    record = train_base(s, {"device": "cpu"}, micro_start["corpus"], micro_start["tokenizer"], tmp_path / "scratch",
                        tmp_path / "base")
    assert (record["epochs"], record["global_step"]) == (0, 0)
    assert_same_weights(tmp_path / "base", micro_start["start"])  # same seed, same initial weights

    world = micro_world(micro_start, s, tmp_path)
    info = export_start("epoch-000", micro_start["start"], True, world["summary"], micro_start["tokenizer"],
                        tmp_path / "epoch-000", seed=0)
    written = json.loads((tmp_path / "epoch-000" / "checkpoint.json").read_text())
    assert written == info
    assert (info["phase"], info["epoch"], info["source"]) == ("init", 0.0, str(micro_start["start"]))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= \
           {p.name for p in (tmp_path / "epoch-000").iterdir()}


def test_trainer_arguments_carry_the_optimizer_device_and_deepspeed_settings(tmp_path):
    from kcircuits.train.trainer import trainer_kwargs

    s = micro_settings()
    kw = trainer_kwargs(s, {"device": "cpu", "deepspeed": "ds_zero2.json"}, tmp_path, lr=1e-3, epochs=4)
    assert (kw["adam_beta1"], kw["adam_beta2"], kw["adam_epsilon"], kw["weight_decay"]) == (0.9, 0.95, 1e-6, 0.1)
    assert (kw["lr_scheduler_type"], kw["warmup_steps"], kw["max_grad_norm"]) == ("constant", 0, 1.0)
    assert (kw["use_cpu"], kw["deepspeed"], kw["num_train_epochs"], kw["max_steps"]) == (True, "ds_zero2.json", 4, -1)


# ---- the training rules under Snakemake ----------------------------------------------------------

@pytest.mark.slow
def test_training_rules_end_to_end_and_extending_the_schedule_only_adds_jobs(tmp_path):
    short = tmp_path / "short.yaml"
    short.write_text("train:\n  base: {epochs: 1, lr: 3.0e-3}\n  continual: {epochs: 2, lr: 3.0e-3}\n"
                     "  checkpoints: {every_epochs: 1, steps: [3]}\n")
    names = ["epoch-000", "epoch-001", "epoch-002", "step-000003"]
    targets = [f"results/smoke/seed-0/checkpoints/{n}" for n in names]
    snakemake(tmp_path, *targets, configfiles=(SMOKE, short))

    ckpts = tmp_path / "results/smoke/seed-0/checkpoints"
    corpus = json.loads((tmp_path / "results/smoke/seed-0/train/continual/corpus.json").read_text())
    spe, per_epoch = corpus["steps_per_epoch"], corpus["tokens_per_epoch"]
    info = {n: json.loads((ckpts / n / "checkpoint.json").read_text()) for n in names}
    assert {n: (i["phase"], i["global_step"], i["tokens_seen"]) for n, i in info.items()} == {
        "epoch-000": ("base", 0, 0), "epoch-001": ("continual", spe, per_epoch),
        "epoch-002": ("continual", 2 * spe, 2 * per_epoch), "step-000003": ("continual", 3, 3 * 8 * 128)}
    assert info["step-000003"]["epoch"] == pytest.approx(3 / spe)
    assert all(i["name"] == n and i["steps_per_epoch"] == spe and i["seed"] == 0 for n, i in info.items())

    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(ckpts / "epoch-002", local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(ckpts / "epoch-002", local_files_only=True)
    assert tok.model_max_length == 128 and model.config.eos_token_id == tok.eos_token_id
    assert not (ckpts / "epoch-002" / "optimizer.pt").exists()  # model-only
    assert_same_weights(ckpts / "epoch-002", tmp_path / "results/smoke/seed-0/train/continual/state/epoch-002")

    # Same config: nothing to do. Longer and denser schedule: only the new jobs, nothing retrained.
    same = snakemake(tmp_path, "-n", *targets, configfiles=(SMOKE, short))
    assert "Nothing to be done" in same.stdout + same.stderr
    longer = tmp_path / "longer.yaml"
    longer.write_text("train:\n  base: {epochs: 1, lr: 3.0e-3}\n  continual: {epochs: 3, lr: 3.0e-3}\n"
                      "  checkpoints: {every_epochs: 1, steps: [3, 7]}\n  save_steps: 5\n"
                      "compute:\n  train: {device: cpu}\n")
    more = targets + ["results/smoke/seed-0/checkpoints/epoch-003", "results/smoke/seed-0/checkpoints/step-000007"]
    jobs = planned_jobs(snakemake(tmp_path, "-n", *more, configfiles=(SMOKE, longer)))
    assert jobs == {"train_continual": 2, "export_checkpoint": 2}  # epoch-003 and step-000007: state and export
