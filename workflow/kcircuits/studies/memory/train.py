"""A document-memory run: train a main-study checkpoint on the documents, with the inductive loss.

The documents' paragraphs are packed into blocks as the continual corpus is (kcircuits.train.corpus:
shuffled once by the seed, an end-of-text after each, blocks start at paragraph boundaries, whole
paragraphs reordered each epoch), and a second array packed the same way says which document owns
each token (-1: end-of-text), so the loss knows every token's allocation. The project's Trainer
(kcircuits.train.trainer.run_training: resumable, seeded, the `train:` optimiser) runs
`memory.epochs` epochs at `memory.lr`; with alpha > 0 its loss is LM + alpha x L_ind at the hook
layer (loss.py). alpha = 0 is plain training, bit for bit (tests/studies/memory/test_memory_loss.py),
so it runs once per number of documents whatever the layer and allocation.
With `memory.module: gated` a gated memory (module.py) at the hook layer trains alone,
every token reading its document's key; its alpha = 0 run depends on the layer, not the allocation.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ... import io
from ...stats import stage_rng
from ...train.corpus import BlockDataset, epoch_blocks, pack_paragraphs, steps_per_epoch, tokenize_paragraphs
from .loss import inductive_loss

log = logging.getLogger("kcircuits.studies.memory")


def document_blocks(documents: pd.DataFrame, tok, block_size: int, seed: int) -> tuple[np.ndarray, ...]:
    """documents (rows: doc, text, one per paragraph) -> blocks [n, block_size] token ids, owners
    [n, block_size] (the document of each token, -1 for end-of-text) and segments (pack_paragraphs)."""
    order = stage_rng(seed, "memory_blocks").permutation(len(documents))
    texts, docs = documents["text"].to_numpy()[order], documents["doc"].to_numpy()[order]
    tokens = tokenize_paragraphs(list(texts), tok)
    blocks, segments = pack_paragraphs(tokens, block_size, tok.eos_token_id)
    owners, _ = pack_paragraphs([[int(d)] * len(t) for d, t in zip(docs, tokens)], block_size, -1)  # same layout
    return blocks, owners, segments


class DocumentBlocks(BlockDataset):
    """BlockDataset whose items also carry `doc` [block_size]: the owner of every token, reordered
    with the tokens each epoch."""

    def __init__(self, blocks: np.ndarray, owners: np.ndarray, segments: np.ndarray | None = None, seed: int = 0):
        self.owners = owners
        super().__init__(blocks, segments, seed)

    def set_epoch(self, epoch: int) -> None:
        import torch

        if epoch == self.epoch:
            return
        super().set_epoch(epoch)
        view = self.owners if self.segments is None else epoch_blocks(self.owners, self.segments, self.seed, epoch)
        self.doc = torch.as_tensor(view, dtype=torch.long)  # [n_blocks, block_size]

    def __getitem__(self, i: int) -> dict:
        return {**super().__getitem__(i), "doc": self.doc[i]}


def memory_trainer(alpha: float, layer: int, allocation, memory=None):
    """A Trainer class whose loss is LM + alpha x L_ind at `layer` (allocation: bool tensor [D, m];
    None: the LM loss alone); with a gated memory (module.py) every token reads its
    document's key, and L_ind is on the memory's units."""
    from contextlib import nullcontext

    from transformers import Trainer

    from .module import slot_activity

    class MemoryTrainer(Trainer):
        inductive = []  # L_ind of each micro-batch since the last log

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            doc = inputs.pop("doc")  # [B, T]
            hf = self.accelerator.unwrap_model(model)
            with memory.reading(doc) if memory is not None else nullcontext(), \
                    slot_activity(hf, layer, memory) as store:
                loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            if allocation is None:
                return (loss, outputs) if return_outputs else loss
            ind = inductive_loss(store["hidden"], doc, allocation.to(doc.device))
            self.inductive.append(float(ind.detach()))
            # The LM loss of a model taking num_items_in_batch is already a share of the accumulated
            # batch, and the Trainer then does not divide by the accumulation steps: do it for L_ind.
            shared = self.model_accepts_loss_kwargs and num_items_in_batch is not None
            total = loss + alpha / (self.current_gradient_accumulation_steps if shared else 1) * ind
            return (total, outputs) if return_outputs else total

        def log(self, logs, *args, **kwargs):
            if self.inductive and "loss" in logs:
                logs["inductive_loss"] = float(np.mean(self.inductive))
                self.inductive.clear()
            super().log(logs, *args, **kwargs)

    return MemoryTrainer


def allocation_mask(allocations: pd.DataFrame, name: str, n_docs: int, n_slots: int) -> np.ndarray:
    """bool [n_docs, n_slots] of one allocation of n_docs documents (rows: documents, allocation, doc, slot)."""
    rows = allocations[(allocations["allocation"] == name) & (allocations["documents"] == n_docs)]
    if len(rows) == 0 or rows["slot"].max() >= n_slots:
        raise ValueError(f"memory.allocations: no allocation {name!r} of {n_docs} documents within the model's "
                         f"{n_slots} MLP neurons (memory.slots, model.init)")
    mask = np.zeros((n_docs, n_slots), dtype=bool)
    mask[rows["doc"].to_numpy(), rows["slot"].to_numpy()] = True
    return mask


def train_run(settings: dict, execution: dict, start: str, documents: str, allocations: str, tokenizer_dir: str,
              scratch: str, out: str, threads: int | None = None) -> dict:
    """Train one run (settings: seed, train, memory {epochs, lr, module, gated}, run {documents,
    alpha, layer, allocation}) from the checkpoint `start`; write a checkpoint folder `out`; return
    its record. A gated memory (memory.module) trains alone, the model frozen, and is saved beside it."""
    from contextlib import nullcontext

    import torch

    from ...checkpoint import load_model
    from ...tokenizer import load_tokenizer
    from ...train.export import export_checkpoint
    from ...train.trainer import run_training
    from .loss import slot_count
    from .module import PREFIX, build_memory

    run, mem, t = settings["run"], settings["memory"], settings["train"]
    tok = load_tokenizer(tokenizer_dir)
    docs = pd.read_parquet(documents)
    docs = docs[docs["doc"] < run["documents"]]
    blocks, owners, segments = document_blocks(docs, tok, t["block_size"], settings["seed"])
    model = load_model(start, fused_gelu=False)
    memory = None
    if mem["module"] == "gated":
        memory = build_memory(model, run["layer"], run["documents"], mem["gated"], settings["seed"])
        model.requires_grad_(False).add_module(PREFIX.rstrip("."), memory)
    mask = None
    if run["alpha"] > 0:
        mask = torch.from_numpy(allocation_mask(pd.read_parquet(allocations), run["allocation"], run["documents"],
                                                slot_count(model, run["layer"])))
    if mask is None and memory is None:
        dataset, trainer_class = BlockDataset(blocks, segments, settings["seed"]), None
    else:
        dataset = DocumentBlocks(blocks, owners, segments, settings["seed"])
        trainer_class = memory_trainer(run["alpha"], run["layer"], mask, memory)
    with memory.attached(model, run["layer"]) if memory is not None else nullcontext():
        final, trainer = run_training(model, dataset, settings, execution, Path(scratch), mem["lr"],
                                      epochs=mem["epochs"], inputs=[start, documents, allocations], threads=threads,
                                      trainer_class=trainer_class)
    if memory is not None:
        final = split_memory(memory, final, Path(scratch) / "export")
    spe = steps_per_epoch(len(blocks), t["batch_size"], t["grad_accum"])
    info = {"phase": "memory", "epoch": float(mem["epochs"]), "global_step": trainer.state.global_step,
            "steps_per_epoch": spe, "tokens_seen": int(trainer.state.num_input_tokens_seen), "seed": settings["seed"],
            "run": run, "module": mem["module"],
            "versions": io.package_versions("torch", "transformers", "accelerate", "safetensors")}
    record = export_checkpoint("memory", final, tokenizer_dir, out, info)
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("memory run %s: %d documents, %d blocks, %d steps", run, run["documents"], len(blocks),
             trainer.state.global_step)
    return record


def split_memory(memory, final: Path, folder: Path) -> Path:
    """A copy of the trained checkpoint `final` in `folder` whose model weights are the language
    model's, with the gated memory's in their own file (module.save_memory); the
    resumable checkpoint itself stays whole."""
    from safetensors.torch import load_file

    from ...train.export import model_files
    from .module import save_memory

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in model_files(final):
        shutil.copy2(path, folder / path.name)
    save_memory(memory, folder, load_file(str(final / "model.safetensors")))
    return folder
