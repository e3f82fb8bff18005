"""Knowledge neurons (Dai et al. 2022) at every checkpoint: facts and bags (facts.py), integrated-gradient
attribution over MLP hidden neurons through the one forward (attribute.py; CircuitModel.run / run_last),
stored top scores (store.py), the original's selection and the overlap with circuits (select.py),
suppress / amplify, edit and erase (experiments.py), evolution across checkpoints (evolution.py), and
the stage's commands (stage.py: the contract of every table)."""
