"""RECKONING (Chen et al., NeurIPS 2023): write a context's facts into the weights with a learned
inner loop, then answer questions about them without the facts in context.

  tasks.py     the task in this world: fresh entities per split, their fact sentences, distractors,
               one- and two-hop questions (companies get a headquarters city)
  inner.py     the inner loop (torch.func): N gradient steps of causal-LM loss on the facts, with
               learned learning rates per parameter tensor and per step
  train.py     the outer loop: RECKONING (single- and multi-task) and the in-context baselines
  evaluate.py  answers, inner-step sweep, recitation, wall time; circuits of the encoded weights
  stage.py     `kcircuits reckoning ACTION`, one action per rule (rules/reckoning.smk)
"""

# Every method a run trains; ENCODED methods answer from weights the inner loop wrote (theta'),
# the others read their context in the prompt (fine-tuned with it: FT-ICR, and its controls).
METHODS = ("reckoning", "reckoning_mt", "ft_icr", "no_facts", "random_facts")
ENCODED = ("reckoning", "reckoning_mt")
HEADQUARTERS = "headquarters"  # the two-hop question's key and the headquarters fact's kind
