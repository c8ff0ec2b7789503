"""Sampling structures from trained models: loading run directories, templates -> Structures."""

from .generate import STEP_LR, default_step_lr, load_run, sample_structures

__all__ = ["STEP_LR", "default_step_lr", "load_run", "sample_structures"]
