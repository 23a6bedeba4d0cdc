"""Study kinds, registered by name: each owns its spec fields, run function, tables, plots and status.

- "bo": `gpvi.studies.kinds.bo` (with `bo_problems` and `bo_report`);
- "regression": `gpvi.studies.kinds.regression`;
- "active": `gpvi.studies.kinds.active` (with `active_report`): pool-based active learning;
- "continual": `gpvi.studies.kinds.continual` (with `continual_report`): tasks in sequence.

A new kind is a `StudyKind` subclass in a new module here that calls `register_kind`; every module
of this package is imported with it, and the spec parser, the runner and the report read only the
registry.
"""

import importlib
import pkgutil

from gpvi.studies.kinds.base import KINDS, Emit, StudyKind, get_kind, kind_names, register_kind

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["KINDS", "Emit", "StudyKind", "get_kind", "kind_names", "register_kind"]
