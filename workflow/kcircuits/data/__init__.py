"""Synthetic-knowledge data stages: entities -> biographies -> probes / QA -> circuit pairs."""
