"""Silence one known, harmless warning before gpytorch is imported.

torch 2.13 deprecates `torch.jit.script`, which linear_operator still calls at import time. Only that
message is filtered; every other warning is left as it is.
"""

import warnings

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*is deprecated", category=DeprecationWarning)
