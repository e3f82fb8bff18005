"""Figures across training and seeds; stage.py is `kcircuits figure NAME`, one per figure file."""
