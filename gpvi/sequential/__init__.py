"""Sequential and dual-parameterised inference: sites per datum, CVI E-steps (memory comes next)."""

from gpvi.sequential.dual import DualSites, DualSVGPStrategy, batch_sites, dual_step

__all__ = ["DualSVGPStrategy", "DualSites", "batch_sites", "dual_step"]
