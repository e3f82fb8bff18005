"""Evaluation: knowledge metrics of checkpoints (metrics, scoring, knowledge) and their summary."""
