"""The denoising network (CSPNet as configured for DiffCSP++, METHOD §5)."""

from .cspnet import CSPNet, DenoiserOutput, ModelConfig

__all__ = ["CSPNet", "DenoiserOutput", "ModelConfig"]
