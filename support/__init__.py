"""Plumbing for the Five Tables notebooks; the code a learner reads stays in the notebooks."""
