"""Sequential and site-based inference: the EP-like M-step from sites (the memory of past data comes next).

The dual (site-parameterised) strategy itself is `gpvi.variational.dual`; its CVI E-step is the
natural-gradient step of any strategy (`gpvi.variational.elbo.natural_gradient_step`); per-datum
sites are stored in `gpvi.core.PointSites`.
"""

from gpvi.sequential.ep import ep_current_sites, ep_fixed_sites

__all__ = ["ep_current_sites", "ep_fixed_sites"]
