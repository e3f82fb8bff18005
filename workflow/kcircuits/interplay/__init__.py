"""Knowledge interplay: how training on one kind of knowledge changes another.

- order: the same per-fact sentences in different orders (every ordered pair of knowledge types A, B:
  all A before all B; and a random order), one continual run each from the same start model; does
  learning A first help (synergy) or hurt (interference) B? (Ou et al. 2025, RQ4)
- forgetting: after the main study's last checkpoint, training on other knowledge with a share of
  replay of the original corpus; how fast do the learned facts and their circuits fade?

Modules: streams (order corpus and streams), forgetting (forgetting corpora and the replay mix),
schedule (checkpoint steps), measure (accuracy and circuits of every checkpoint of a run),
stage (the CLI). Summaries, figures and findings live with the other analyses.
"""
