"""Knowledge interplay: how training on one kind of knowledge changes another.

- order: the same per-fact sentences in different orders (every ordered pair of knowledge types A, B:
  all A before all B; and a random order), one continual run each from the same start model; does
  learning A first help (synergy) or hurt (interference) B? (Ou et al. 2025, RQ4)
- forgetting: after the main study's last checkpoint, training on other knowledge with a share of
  replay of the original corpus; how fast do the learned facts and their circuits fade?

Modules: streams (order corpus and streams), forgetting (forgetting corpora and the replay mix),
measure (accuracy and circuits of every checkpoint of a run), stage (the CLI), summary (tables and
findings), plots and figures (the figures and their table), checks (config checks). Stream runs train
with the core's `kcircuits train-stream`; rules.smk and common.smk hold the study's rules.
"""
from .. import Study

STUDY = Study(
    name="interplay",
    title="Knowledge interplay",
    package=__name__,
    sections={
        # a stream run's training (kcircuits.train.schedule.stream_settings)
        "stream": ["model", "train", "order", "forgetting"],
        # corpora, streams, measures, summaries (rules narrow it to what each reads)
        "interplay": ["order", "forgetting", "circuits", "circuit_pairs", "evaluate", "entities", "train", "analysis"],
        # figures: the types' order, replay tolerance, edge budgets, Hit@k
        "order": ["order", "circuits", "circuit_pairs", "evaluate"],
        "forgetting": ["forgetting", "circuits", "circuit_pairs", "evaluate"],
    },
    check=".checks:check",
    stages=(".stage",),
    figures=".figures",
    findings={"order": ".summary:order_markdown", "forgetting": ".summary:forgetting_markdown"},
    place=10,
)
