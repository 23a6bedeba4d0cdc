"""Data sets: UCI regression benchmarks, synthetic GP draws, and small classification sets.

``uci.load(name, split)`` reads the offline UCI copy (see `gpvi.data.uci` for where it is
looked for); ``synthetic.gp_draw`` gives exact GP prior draws with known hyperparameters;
``classification`` wraps scikit-learn's bundled breast-cancer and digits sets (and splits the
digits into class-incremental tasks, ``split_digits``); ``multitask`` holds
many-curve (multi-task) data: the MagmaClust-style ``simulate_multitask`` mixture and the World Bank
``fertility`` curves; ``tasks`` pads many tasks into one batch on their union grid.
"""

from __future__ import annotations

from gpvi.data import classification, multitask, synthetic, tasks, uci
from gpvi.data.classification import ContinualTask, breast_cancer, digits, split_digits, train_test_split
from gpvi.data.multitask import MultiTaskData, fertility
from gpvi.data.synthetic import GPDraw, banana, gp_draw
from gpvi.data.tasks import TaskBatch, pad_tasks, task_lists
from gpvi.data.uci import UCIData

load_uci = uci.load
available_uci = uci.available
simulate_multitask = multitask.simulate

__all__ = [
    "ContinualTask",
    "GPDraw",
    "MultiTaskData",
    "TaskBatch",
    "UCIData",
    "available_uci",
    "banana",
    "breast_cancer",
    "classification",
    "digits",
    "fertility",
    "gp_draw",
    "load_uci",
    "multitask",
    "simulate_multitask",
    "pad_tasks",
    "split_digits",
    "synthetic",
    "task_lists",
    "tasks",
    "train_test_split",
    "uci",
]
