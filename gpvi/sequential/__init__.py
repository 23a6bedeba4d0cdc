"""Sequential and site-based inference: the memory of a streaming GP and the EP-like M-step from sites.

- `memory`: Bayesian leverage scores and the selection of a bounded memory (Chang et al. 2023);
- `ep`: the EP-like marginal-likelihood estimate from sites (Li, John & Solin 2023).

The update that uses the memory is `gpvi.DualSVGP.update` (`gpvi.models.streaming`); the dual
(site-parameterised) strategy, with the frozen factor of summarised data, is
`gpvi.variational.dual`; per-datum sites are stored in `gpvi.core.PointSites`.
"""

from gpvi.sequential.ep import ep_current_sites, ep_fixed_sites
from gpvi.sequential.memory import MEMORY_SELECTIONS, bayesian_leverage, select_memory

__all__ = ["MEMORY_SELECTIONS", "bayesian_leverage", "ep_current_sites", "ep_fixed_sites", "select_memory"]
