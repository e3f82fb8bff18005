"""Cluster execution without a cluster: the paper-scale DAG (dry run, no data on disk), per-job
resources from `compute:`, the light rules, a retry after an out-of-memory kill (with more memory),
the DeepSpeed and multi-process (torchrun) wiring, and a real two-process training run on CPU (gloo)
against a single process.

The run through a real SLURM is tests/test_slurm.py."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from helpers import REPO, TINY, micro_settings, planned_jobs, snakemake
from kcircuits.config import load_config
from kcircuits.figures.stage import all_figures
from kcircuits.train import launch

PAPER = REPO / "config.paper.yaml"
ZERO2 = REPO / "resources" / "deepspeed" / "zero2.json"


def dry_run_jobs(output: str) -> list[dict]:
    """Each job of a dry run (-n -p): rule, threads, resources (dict) and shell command."""
    jobs = []
    for block in re.split(r"\n\[[^\]]+\]\n", output):
        head = re.search(r"^(?:local)?(?:rule|checkpoint) (\w+):", block, re.M)
        if not head:
            continue
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        jobs.append({"rule": head.group(1), "threads": int(threads.group(1)) if threads else 1,
                     "resources": dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {},
                     "shell": shell.group(1) if shell else ""})
    return jobs


# ---- paper-scale config ------------------------------------------------------------------------

def test_paper_config_is_gpt2_small_with_50k_entities_25_epochs_and_8000_edge_circuits():
    cfg = load_config([REPO / "config.yaml", PAPER])
    assert {k: cfg["model"][k] for k in ("family", "n_layer", "n_embd", "n_head", "n_positions")} == {
        "family": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024}
    assert cfg["entities"]["n"] == 50000
    assert cfg["train"]["continual"]["epochs"] == 25 and cfg["train"]["checkpoints"]["every_epochs"] == 1
    assert cfg["circuits"]["edge_budgets"] == [8000]
    # Where jobs compute is compute.KIND.device (train.device is gone): every model-running kind on a GPU.
    assert "device" not in cfg["train"]
    assert {kind: (spec["device"], spec["gpu"] >= 1) for kind, spec in cfg["compute"].items()} == {
        kind: ("cuda", True)
        for kind in ("train", "evaluate", "circuits", "analysis", "neurons", "stream", "reckoning", "memory")}
    # Document memory at the seed's grid: two families x two sizes, 6 hook layers, 8 alphas (0 included),
    # 4 allocations, 2 ... 1000 documents.
    memory = cfg["memory"]
    assert (len(memory["models"]), len(memory["layers"]), len(memory["alphas"]),
            len(memory["allocations"])) == (4, 6, 8, 4)
    assert memory["documents"] == [2, 10, 50, 100, 1000] and 0.0 in memory["alphas"]


# Per-checkpoint rules -> the compute kind they ask for (config compute.KIND).
PER_CHECKPOINT = {"evaluate": "evaluate", "circuit_scores": "circuits", "circuit_eval": "circuits",
                  "circuit_transplant": "circuits", "components_measure": "analysis", "neurons_measure": "neurons"}


@pytest.mark.slow
def test_paper_dry_run_counts_jobs_per_rule_without_data_on_disk(tmp_path):
    proc = snakemake(tmp_path, "-n", "-p", "--cores", "64", configfiles=(PAPER,))  # cores: no cap on threads
    assert not (tmp_path / "results").exists()
    counts = planned_jobs(proc)
    cfg = load_config([REPO / "config.yaml", PAPER])
    seeds = len(cfg["train"]["seeds"])
    epochs, ckpts = 25, 26  # continual epochs; checkpoints = epoch-000 + one per epoch (no step checkpoints)
    # Every figure of the figure table (the core's and each study's) has its caption and its rule.
    table = all_figures()
    assert all(figure.caption.is_file() for figure in table.values())
    figures = sorted(table)
    expected = {
        # data, once: the six data stages and the knowledge-neuron facts
        **dict.fromkeys(("entities", "biographies", "probes", "qa", "tokenizer", "circuit_pairs", "neuron_facts"), 1),
        # training, per seed: one job per continual epoch, one export per checkpoint
        "train_base": seeds, "continual_corpus": seeds, "train_continual": epochs * seeds,
        "export_start_checkpoint": seeds, "export_checkpoint": epochs * seeds,
        # one job per checkpoint and seed (circuits.draw is off: no drawings) ...
        **dict.fromkeys(PER_CHECKPOINT, ckpts * seeds),
        # ... joined per seed across checkpoints ...
        **dict.fromkeys(("eval_summary", "circuit_summary", "components_summary", "neurons_summary",
                         "topology_tables"), seeds),
        # ... and across seeds: topology tests, the results table, findings, every figure
        **dict.fromkeys(("topology_phase_shift", "topology_depth_trend", "results_table", "findings", "all"), 1),
        **{f"figure_{name}": 1 for name in figures},
        # knowledge interplay: corpora once, the forgetting streams per seed, one training and one
        # measuring job per run (20 ordered pairs + random; 2 corpora x 6 replay shares) and seed
        "order_corpus": 1, "forgetting_corpus": 1, "forgetting_mix": seeds, "order_summary": 1,
        "forgetting_summary": 1, "train_stream": (21 + 12) * seeds, "interplay_measure": (21 + 12) * seeds,
        # RECKONING: the company table and the task once; per seed, every method trained and evaluated,
        # the two encoded ones' circuits; one summary
        "companies": 1, "reckoning_tasks": 1, "reckoning_train": 5 * seeds, "reckoning_evaluate": 5 * seeds,
        "reckoning_circuits": 2 * seeds, "reckoning_summary": 1,
        # document memory: the documents once, the allocations per model (4); per seed a base model for
        # each model but the main study's; per seed, model and number of documents (5), one plain run
        # and one run per point with alpha > 0 (6 layers x 7 alphas x 4 allocations), every point measured
        "memory_documents": 1, "memory_allocations": 4, "memory_base": 3 * seeds,
        "memory_train": 4 * 5 * (1 + 6 * 7 * 4) * seeds, "memory_measure": 4 * 5 * 6 * 8 * 4 * seeds,
        "memory_summary": 1,
    }
    assert len(figures) >= 20 and counts == expected

    # Heavy jobs carry the paper's compute section: what sbatch will be asked for.
    jobs = dry_run_jobs(proc.stdout)
    train = [j for j in jobs if j["rule"] == "train_continual"]
    assert len(train) == epochs * seeds
    assert train[0]["threads"] == 8
    assert {k: train[0]["resources"][k] for k in ("gpu", "mem_mb", "runtime")} == {
        "gpu": "1", "mem_mb": "32000", "runtime": "720"}
    assert "--processes 1 " in train[0]["shell"]
    assert json.loads(re.search(r"--execution '([^']*)'", train[0]["shell"]).group(1))["device"] == "cuda"
    # Every per-checkpoint job (and every stream run's measurement, every RECKONING job): one GPU, its kind's threads,
    # memory and time, and computes on cuda.
    reckoning = dict.fromkeys(("reckoning_train", "reckoning_evaluate", "reckoning_circuits"), "reckoning")
    memory = dict.fromkeys(("memory_train", "memory_measure"), "memory")
    for rule, kind in {**PER_CHECKPOINT, "interplay_measure": "circuits", **reckoning, **memory}.items():
        spec = cfg["compute"][kind]
        rule_jobs = [j for j in jobs if j["rule"] == rule]
        assert len(rule_jobs) == counts[rule], rule
        for job in rule_jobs:
            assert job["threads"] == spec["threads"], rule
            assert {k: job["resources"][k] for k in ("gpu", "mem_mb", "runtime")} == {
                "gpu": "1", "mem_mb": str(spec["mem_mb"]), "runtime": str(spec["runtime"])}, rule
            assert re.search(r" --device cuda(?: |$)", job["shell"]), (rule, job["shell"][-300:])


# ---- retries: a job killed for memory comes back with more ---------------------------------------

# `python` for the jobs of one run (first on PATH): the first `python -m kcircuits STAGE` is killed
# with SIGKILL, as an out-of-memory killer (the kernel's, SLURM's) does: its job exits with 137.
# Every other command runs on the test's interpreter.
KILL_ONCE = """#!/usr/bin/env bash
if [ "$1 $2 $3" = "-m kcircuits {stage}" ] && mkdir {marker} 2>/dev/null; then
    kill -KILL $$
fi
exec {python} "$@"
"""


@pytest.mark.slow
def test_a_job_killed_for_memory_is_retried_with_twice_the_memory_and_the_same_result(tmp_path, monkeypatch):
    shims, marker = tmp_path / "bin", tmp_path / "killed-once"
    shims.mkdir()
    (shims / "python").write_text(KILL_ONCE.format(stage="evaluate", marker=shlex.quote(str(marker)),
                                                   python=shlex.quote(sys.executable)))
    (shims / "python").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")  # inherited by Snakemake's jobs
    overlay = tmp_path / "retry.yaml"
    overlay.write_text(yaml.safe_dump({"train": {"base": {"epochs": 1}}, "compute": {"evaluate": {"mem_mb": 1234}}}))
    work, target = tmp_path / "work", "results/tiny/seed-0/eval/epoch-000.parquet"

    proc = snakemake(work, target, "--retries", "1", configfiles=(TINY, overlay))
    out = proc.stdout + proc.stderr
    assert marker.is_dir()  # the first attempt was killed ...
    assert re.search(r"^Error in rule evaluate:", out, re.MULTILINE) and "exit status 137" in out
    assert re.search(r"^Trying to restart job \d+\.", out, re.MULTILINE)
    # ... and the second asked for twice compute.evaluate.mem_mb (what sbatch --mem gets on a cluster)
    attempts = [j["resources"]["mem_mb"] for j in dry_run_jobs(out) if j["rule"] == "evaluate"]
    assert attempts == ["1234", "2468"], attempts
    # Its outputs are those of a clean run of the same job.
    outputs = [work / target, *(work / f"results/tiny/seed-0/eval/{kind}/epoch-000.parquet"
                                for kind in ("entities", "generations"))]
    retried = [p.read_bytes() for p in outputs]
    rerun = snakemake(work, target, "--forcerun", "evaluate", configfiles=(TINY, overlay))
    assert planned_jobs(rerun) == {"evaluate": 1}
    assert [p.read_bytes() for p in outputs] == retried


# ---- compute resources, DeepSpeed, multi-process wiring ----------------------------------------

@pytest.mark.slow
def test_compute_section_sets_threads_resources_and_training_processes(tmp_path):
    overlay = tmp_path / "multi.yaml"
    overlay.write_text(yaml.safe_dump({
        "compute": {"train": {"threads": 6, "mem_mb": 1234, "runtime": 7, "gpu": 4, "device": "cpu"},
                    "evaluate": {"threads": 3, "mem_mb": 999, "runtime": 5, "gpu": 0, "device": "cuda"}},
        "train": {"deepspeed": "resources/deepspeed/zero2.json"}}))
    proc = snakemake(tmp_path, "-n", "-p", "--cores", "8", configfiles=(TINY, overlay))
    jobs = dry_run_jobs(proc.stdout)
    for rule in ("train_base", "train_continual"):
        job = next(j for j in jobs if j["rule"] == rule)
        assert job["threads"] == 6
        assert {k: job["resources"][k] for k in ("gpu", "mem_mb", "runtime")} == {
            "gpu": "4", "mem_mb": "1234", "runtime": "7"}
        assert "--threads 6 --processes 4 " in job["shell"]
        # The DeepSpeed config reaches the job as an absolute path, whatever the working directory.
        execution = json.loads(re.search(r"--execution '([^']*)'", job["shell"]).group(1))
        assert execution["deepspeed"] == str(ZERO2) and execution["device"] == "cpu"  # compute.train.device
    # device cuda: the job computes there and asks for a GPU even with gpu: 0 (never a CPU-only allocation)
    evaluate = next(j for j in jobs if j["rule"] == "evaluate")
    assert evaluate["threads"] == 3 and evaluate["resources"]["mem_mb"] == "999"
    assert evaluate["resources"]["gpu"] == "1" and " --device cuda " in evaluate["shell"]


@pytest.mark.slow
def test_a_missing_deepspeed_config_stops_the_workflow_before_any_job(tmp_path):
    overlay = tmp_path / "ds.yaml"
    overlay.write_text("train: {deepspeed: resources/deepspeed/nope.json}\n")
    proc = snakemake(tmp_path, "-n", configfiles=(TINY, overlay), check=False)
    assert proc.returncode != 0 and "DeepSpeed config not found" in proc.stdout + proc.stderr


def test_zero2_config_leaves_batch_clipping_and_optimizer_to_the_trainer():
    ds = json.loads(ZERO2.read_text())
    assert ds["zero_optimization"]["stage"] == 2
    # "auto": filled by the Trainer from train.* so the numbers match a run without DeepSpeed ...
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "gradient_clipping"):
        assert ds[key] == "auto", key
    # ... and no optimizer/scheduler of its own: the Trainer's AdamW and constant LR from the config.
    assert "optimizer" not in ds and "scheduler" not in ds


def test_trainer_receives_the_deepspeed_config_and_fills_its_auto_values(tmp_path):
    pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra (pip install -e '.[deepspeed]')")
    from transformers import TrainingArguments

    from kcircuits.train.trainer import trainer_kwargs

    s = load_config([REPO / "config.yaml"])
    kw = trainer_kwargs(s, {"device": "cpu", "deepspeed": str(ZERO2)}, tmp_path, lr=1e-3, epochs=1)
    args = TrainingArguments(**kw)
    filled = args.hf_deepspeed_config.config
    assert filled["train_micro_batch_size_per_gpu"] == s["train"]["batch_size"]
    assert filled["gradient_clipping"] == s["train"]["max_grad_norm"]


def test_launcher_splits_the_global_batch_and_relaunches_under_torchrun(monkeypatch):
    for var in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "LOCAL_WORLD_SIZE", launch.ARGV_ENV):
        monkeypatch.delenv(var, raising=False)
    assert not launch.needs_launcher(1, None) and not launch.needs_launcher(0, None)
    assert launch.needs_launcher(2, None) and launch.needs_launcher(1, "zero2.json")  # DeepSpeed: always a launcher
    cmd, env = launch.launcher_command(["train-continual", "--start", "x", "--processes", "4"], 4, python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m", "kcircuits"]
    assert json.loads(env[launch.ARGV_ENV]) == ["train-continual", "--start", "x", "--processes", "4"]
    assert launch.launched_argv() is None
    monkeypatch.setenv(launch.ARGV_ENV, env[launch.ARGV_ENV])  # what `python -m kcircuits` runs in each process
    assert launch.launched_argv() == ["train-continual", "--start", "x", "--processes", "4"]
    assert launch.per_device_batch_size(16, 4) == 4
    with pytest.raises(ValueError, match="not divisible"):
        launch.per_device_batch_size(16, 3)
    monkeypatch.setenv("LOCAL_RANK", "1")  # inside torchrun: never launch again
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "1")
    assert not launch.needs_launcher(4, "zero2.json") and not launch.is_main_process()
    assert launch.threads_per_process(8) == 2 and launch.per_device_batch_size(16) == 4


@pytest.mark.slow
def test_two_training_processes_on_cpu_match_one(tiny_data, tmp_path):
    """--processes 2 relaunches under torchrun (gloo on CPU): each process takes half of every global
    batch, so steps per epoch and the logged losses match a single process; only RANK 0 publishes."""
    import torch
    from safetensors.torch import load_file

    from kcircuits.tokenizer import load_tokenizer
    from kcircuits.train.jobs import continual_corpus
    from kcircuits.train.model import build_model

    settings = micro_settings(train={"continual": {"epochs": 1}})  # device: in --execution
    build_model(settings["model"], load_tokenizer(tiny_data / "tokenizer"), seed=0).save_pretrained(tmp_path / "start")
    summary = continual_corpus(settings, tiny_data / "bios_train.jsonl", tiny_data / "tokenizer",
                               tmp_path / "blocks.npz", tmp_path / "corpus.json")
    out = {}
    for n in (1, 2):
        out[n] = tmp_path / f"state-{n}"
        cmd = [sys.executable, "-m", "kcircuits", "train-continual", "--settings", json.dumps(settings),
               "--execution", json.dumps({"device": "cpu"}), "--start", str(tmp_path / "start"),
               "--blocks", str(tmp_path / "blocks.npz"), "--summary", str(tmp_path / "corpus.json"),
               "--tokenizer", str(tiny_data / "tokenizer"), "--until-epoch", "1",
               "--scratch", str(tmp_path / f"scratch-{n}"),
               "--threads", "2", "--processes", str(n), "--out", str(out[n])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                              env={**__import__("os").environ, "PYTHONPATH": str(REPO / "workflow")})
        assert proc.returncode == 0, proc.stderr[-4000:]
    assert "torch.distributed.run" in proc.stderr  # the second run went through the launcher
    states = {n: json.loads((out[n] / "trainer_state.json").read_text()) for n in out}
    assert states[2]["global_step"] == states[1]["global_step"] == summary["steps_per_epoch"]
    losses = {n: [h["loss"] for h in states[n]["log_history"] if "loss" in h] for n in out}
    assert len(losses[1]) >= 2 and losses[2] == pytest.approx(losses[1], rel=1e-4)
    assert not (tmp_path / "scratch-2").exists()  # published once, scratch dropped
    a, b = load_file(out[1] / "model.safetensors"), load_file(out[2] / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-2) for k in a)
