"""Training: `fit(model)` runs the recipe a model declares (or the one asked for) on the shared step loop.

- `api`: `fit`, and how a recipe is chosen and built from options;
- `recipes`: the recipes, registered by name ("adam", "ngd", "cvi", "collapsed", "vem");
- `batches`: minibatches that carry their row indices;
- the step loop, `FitResult` and the stopping rules are `gpvi.progress` (below every model, so that
  models with their own loops, MagmaClust and the gpytorch baseline, share them).
"""

from gpvi.fit.api import fit
from gpvi.fit.batches import Batch, minibatches
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
    "minibatches",
    "register_recipe",
]
