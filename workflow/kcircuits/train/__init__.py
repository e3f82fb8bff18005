"""Training: the base phase (the world before), continual pre-training, checkpoint export.

Modules: `model` builds the causal LM (kcircuits.checkpoint loads one), `corpus` packs paragraphs
into training blocks, `schedule` names the checkpoints (pure, used by the Snakefile), `trainer` runs the Hugging Face
Trainer with resumable saves, `export` writes the model-only checkpoint folders analysed downstream,
`jobs` is one function per training job and `stage` their commands (`launch`: several processes).
"""
import os

# On a shared 2-core machine, OpenMP threads that spin while waiting make two torch threads 5-9x
# slower; the policy is read once when torch loads, so it must be set before any torch import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
