"""Training: `fit(model)` runs the recipe a model declares (or the one asked for) on the shared step loop.

- `api`: `fit`, and how a recipe is chosen and built from options;
- `recipes`: the recipes, registered by name ("adam", "ngd", "cvi", "collapsed", "vem");
- `batches`: minibatches that carry their row indices;
- `mll`: `fit_mll`, what BoTorch's `fit_gpytorch_mll` runs on a gpvi model (the mll names the objective);
- the step loop, `FitResult` and the stopping rules are `gpvi.progress` (below every model, so that
  models with their own loops, MagmaClust and the gpytorch baseline, share them).
"""

from gpvi.fit.api import fit
from gpvi.fit.batches import Batch, minibatches
from gpvi.fit.mll import fit_mll
from gpvi.fit.recipes import RECIPES, Recipe, register_recipe
from gpvi.progress import EarlyStopping, FitResult, RelativeChange

__all__ = [
    "RECIPES",
    "Batch",
    "EarlyStopping",
    "FitResult",
    "Recipe",
    "RelativeChange",
    "fit",
    "fit_mll",
    "minibatches",
    "register_recipe",
]
