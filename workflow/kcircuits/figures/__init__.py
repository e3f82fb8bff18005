"""Figures drawn from the evaluation tables."""
