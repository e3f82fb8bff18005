"""RECKONING (Chen et al., NeurIPS 2023): write a context's facts into the weights with a learned
inner loop, then answer questions about them without the facts in context.

Every method starts from a checkpoint of the main study (reckoning.start: by default its last epoch)
and gets the same contexts and budget; the encoded methods' weights theta' also get circuits,
compared with the main study's circuits at that checkpoint.

  tasks.py            the task in this world: the companies' headquarters, fresh entities per split,
                      their fact sentences, distractors, one- and two-hop questions
  inner.py            the inner loop (torch.func): N gradient steps of causal-LM loss on the facts,
                      with learned learning rates per parameter tensor and per step
  batches.py          a context's token batches (facts, questions, answers)
  train.py            the outer loop: RECKONING (single- and multi-task) and the in-context baselines
  evaluate.py         answers, inner-step sweep, recitation, wall time
  circuits.py         circuits of the encoded weights theta'
  summary.py          tables and the finding across methods and seeds (circuit_summary.py: theta''s
                      circuits against the main study's), and its findings.md section
  plots.py, figures.py  the figures and their table
  checks.py           config checks (question and headquarters templates, start checkpoint)
  stage.py            `kcircuits reckoning ACTION`, one action per rule (rules.smk), and
                      `kcircuits companies`; common.smk holds the study's paths and rule functions
"""
from .. import Study

# Every method a run trains; ENCODED methods answer from weights the inner loop wrote (theta'),
# the others read their context in the prompt (fine-tuned with it: FT-ICR, and its controls).
METHODS = ("reckoning", "reckoning_mt", "ft_icr", "no_facts", "random_facts")
ENCODED = ("reckoning", "reckoning_mt")
HEADQUARTERS = "headquarters"  # the two-hop question's key and the headquarters fact's kind

STUDY = Study(
    name="reckoning",
    title="RECKONING",
    package=__name__,
    sections={
        # the companies' headquarters: pools and the seed only
        "companies": [],
        # tasks (birth years of fresh entities), training, evaluation, circuits (the main study's
        # circuit settings and tasks), summary (bootstrap), figures
        "reckoning": ["reckoning", "entities", "circuits", "circuit_pairs", "analysis"],
    },
    check=".checks:check",
    stages=(".stage",),
    figures=".figures",
    findings={"reckoning": ".summary:reckoning_markdown"},
    place=20,
)
