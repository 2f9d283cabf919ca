"""Evaluation apart from training: metrics, scoring and validation-only selection, the results
table, and the papers' published numbers (reference rows only)."""
