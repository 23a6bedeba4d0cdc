"""Training recipes, registered by name (`base.register_recipe`); every module here is one recipe family.

- "adam", "ngd": `gradient` (Adam on the ELBO; natural-gradient steps on q plus Adam);
- "cvi": `cvi` (E-steps on a dual model's sites, Adam M-steps on the ELBO or the EP-like estimate);
- "cvi-em": `cvi_em` (variational EM for any likelihood: full-data CVI E-steps, L-BFGS M-steps with
  the per-datum sites held; the default of non-Gaussian models while the data fit in one pass);
- "collapsed": `collapsed` (Gaussian likelihood: q exact, L-BFGS on the collapsed bound);
- "vem": `vem` (a model's own variational EM: MagmaClust).

Every module of this package is imported with it, so a new recipe is a new file here.
"""

import importlib
import pkgutil

from gpvi.fit.recipes.base import RECIPES, Recipe, early_stopping_rule, register_recipe

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["RECIPES", "Recipe", "early_stopping_rule", "register_recipe"]
