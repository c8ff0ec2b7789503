"""Sampling structures from trained models: loading run directories, templates -> Structures."""

from .generate import STEP_LR, load_run, sample_structures

__all__ = ["STEP_LR", "load_run", "sample_structures"]
