"""Evaluation: validity checks and the CSP metrics of the paper (METHOD §7)."""
