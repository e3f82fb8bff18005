"""Evaluation: knowledge metrics of checkpoints (metrics, scoring, knowledge) and their summary
(aggregate); the commands in stage.py."""
