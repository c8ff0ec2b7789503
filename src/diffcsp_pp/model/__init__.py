"""The denoising network (CSPNet as configured for DiffCSP++, METHOD §5): the paper's layer in
``cspnet`` (the reference), its fast equivalent paths in ``fast``, the fixed feature maps in ``features``."""

from .cspnet import CSPNet, DenoiserOutput, ModelConfig

__all__ = ["CSPNet", "DenoiserOutput", "ModelConfig"]
