"""Synthetic-knowledge data stages: entities -> biographies -> probes / QA -> circuit pairs (their
commands, and the tokenizer's: stage.py)."""
