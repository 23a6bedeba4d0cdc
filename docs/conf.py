"""Sphinx configuration of gpvi's documentation site (`make docs` -> docs/_build/html).

Markdown pages (MyST) and the notebooks (MyST-NB, stored outputs only: they are executed by
`tests/test_notebooks.py`, never by the build); the API reference is generated from each package's
``__all__`` by the local extension `_ext/gpvi_api.py`. Built with ``-W --keep-going -n``: every
warning, and every unresolved cross-reference except to other libraries, is an error.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the gpvi package of this checkout
sys.path.insert(0, str(DOCS / "_ext"))

from sphinx.ext.napoleon.docstring import GoogleDocstring  # noqa: E402

import gpvi  # noqa: E402

project = "gpvi"
author = "the gpvi authors"
copyright = "the gpvi authors"
release = version = gpvi.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "myst_nb",
    "gpvi_api",
]

# -- sources -------------------------------------------------------------------------------------
exclude_patterns = ["_build", "_ext", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # render the outputs stored in the notebooks; tests/test_notebooks.py runs them

# -- API reference -------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autoclass_content = "class"
autodoc_inherit_docstrings = True
autodoc_default_options = {"members": True, "show-inheritance": True}  # never inherited-members
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields of the class, not duplicate attribute entries
napoleon_use_rtype = False
napoleon_attr_annotations = False  # the annotations are in the signatures already


def _attribute_docstring_without_inline_type(self):
    """Napoleon reads a property's first line "type: text" as an inline type; gpvi's first lines are
    sentences that may hold a colon ("σ² (shared: scalar; ...)"), and the types are annotations."""
    lines = [self._lines.next(), *self._dedent(self._consume_to_end())]
    return "", self.__class__(lines, self._config).lines()


GoogleDocstring._consume_inline_attribute = _attribute_docstring_without_inline_type

# Nitpicky (-n), without intersphinx (the build is offline): names of other libraries and of the
# standard library cannot be resolved, so they are exempt; gpvi's own names must resolve.
_FOREIGN = (
    r"(torch|gpytorch|botorch|linear_operator|numpy|np|scipy|matplotlib|sklearn|dask|distributed|tqdm"
    r"|sqlite3|pathlib|collections|typing|typing_extensions|dataclasses|contextlib|os|io|abc|enum|types"
    r"|argparse|multiprocessing|concurrent|tomllib|json|builtins)(\..*)?"
)
# Python's builtins, and `Tensor` where an annotation names torch's class by its short name.
_BUILTINS = r"(int|float|str|bool|bytes|dict|list|tuple|set|frozenset|type|object|None|Tensor)"
# gpvi names that signatures mention but no package exports: a type variable, the study store's row types.
_GPVI_UNEXPORTED = r"gpvi\.(progress\.(bars\.)?T|studies\.store\.(Run|RunKey))"
nitpick_ignore_regex = [
    (r"py:.*", _FOREIGN),
    (r"py:.*", _BUILTINS),
    (r"py:.*", _GPVI_UNEXPORTED),
]

# -- HTML ----------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"gpvi {version}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_depth": 3,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_sidebars = {"index": [], "getting-started": []}
html_show_sourcelink = False
html_copy_source = False
