"""The result of a continual-learning run (`gpvi.loops.ContinualLearner`): the matrix R of test metrics
after each task, the transfer metrics computed from it, and how one test set is scored.

Lopez-Paz & Ranzato (2017), "Gradient Episodic Memory for Continual Learning", NeurIPS (R and the
backward transfer); Chaudhry, Dokania, Ajanthan & Torr (2018), "Riemannian Walk for Incremental
Learning", ECCV (forgetting). With k tasks learned (last row k − 1) and s = +1 for accuracy, −1 for
NLPD and RMSE (lower is better):

    average_i  = mean_{j ≤ i} R[i, j]
    BWT        = mean_{j < k−1} s (R[k−1, j] − R[j, j])                    > 0: later tasks helped
    forgetting = mean_{j < k−1} max_{j ≤ i < k−1} s (R[i, j] − R[k−1, j])  > 0: worse than at best

so BWT is positive for an improvement and forgetting positive for a loss in every metric; both are
NaN after one task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gpvi.metrics import predict, rmse_nlpd

METRICS = ("accuracy", "nlpd", "rmse")


@dataclass
class ContinualResult:
    """The test metrics of a continual-learning run after each task learned (see the module docstring).

    Attributes:
        strategy: The learner's strategy.
        metric_name: "accuracy", "nlpd" or "rmse".
        matrix: `k x T` R[i, j] = the metric on task j's test set after learning task i (NaN for j > i);
            k tasks learned of T (k = T after `ContinualLearner.run`).
        all_seen: `k`: the metric on the union of the test sets of tasks 0..i.
        times: `k` seconds spent learning each task (building, fitting, updating).
        eval_times: `k` seconds spent testing after each task.
        num_seen: `k` training points seen after each task.
        task_ids: The ids of the T tasks.
    """

    strategy: str
    metric_name: str
    matrix: Tensor
    all_seen: Tensor
    times: Tensor
    eval_times: Tensor
    num_seen: list[int]
    task_ids: list[Any]

    @property
    def higher_is_better(self) -> bool:
        """True for accuracy, False for NLPD and RMSE."""
        return self.metric_name == "accuracy"

    @property
    def average(self) -> Tensor:
        """`k`: mean_{j ≤ i} R[i, j], the average over the tasks seen after each task."""
        return torch.stack([self.matrix[i, : i + 1].mean() for i in range(self.matrix.shape[0])])

    @property
    def final_average(self) -> float:
        """The average over all tasks after the last task learned."""
        return float(self.average[-1])

    @property
    def backward_transfer(self) -> float:
        """mean_{j < k−1} s (R[k−1, j] − R[j, j]) (Lopez-Paz & Ranzato 2017; NaN after one task)."""
        return backward_transfer(self.matrix, self.higher_is_better)

    @property
    def forgetting(self) -> float:
        """mean_{j < k−1} max_{j ≤ i < k−1} s (R[i, j] − R[k−1, j]) (Chaudhry et al. 2018; NaN after one task)."""
        return forgetting(self.matrix, self.higher_is_better)

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per task learned: task, task_id, metric, row (R[i, :i+1] as a list), average,
        all_seen, time, eval_time, num_seen; for tables (e.g. ``pandas.DataFrame(result.to_rows())``)."""
        average = self.average
        return [
            {
                "task": i,
                "task_id": self.task_ids[i],
                "metric": self.metric_name,
                "row": self.matrix[i, : i + 1].tolist(),
                "average": float(average[i]),
                "all_seen": float(self.all_seen[i]),
                "time": float(self.times[i]),
                "eval_time": float(self.eval_times[i]),
                "num_seen": self.num_seen[i],
            }
            for i in range(self.matrix.shape[0])
        ]


def backward_transfer(matrix: Tensor, higher_is_better: bool = True) -> float:
    """BWT of a `k x T` matrix R (see the module docstring); NaN for k < 2."""
    k = matrix.shape[0]
    if k < 2:
        return math.nan
    sign = 1.0 if higher_is_better else -1.0
    j = torch.arange(k - 1)
    return float((sign * (matrix[k - 1, j] - matrix[j, j])).mean())


def forgetting(matrix: Tensor, higher_is_better: bool = True) -> float:
    """Forgetting of a `k x T` matrix R (see the module docstring); NaN for k < 2."""
    k = matrix.shape[0]
    if k < 2:
        return math.nan
    sign = 1.0 if higher_is_better else -1.0
    drops = [(sign * (matrix[j : k - 1, j] - matrix[k - 1, j])).max() for j in range(k - 1)]
    return float(torch.stack(drops).mean())


def metric_sum(model: Any, X: Tensor, y: Tensor, metric: str, chunk: int = 1024) -> tuple[float, int]:
    """The metric's sum over a test set's points (correct predictions, −log p(y), squared errors) and n."""
    y = y.reshape(-1)
    if metric == "rmse" or (metric == "nlpd" and getattr(model, "is_gaussian", True)):
        mean, var = predict(model, X, chunk=chunk)
        rmse, nlpd = rmse_nlpd(mean, var, y)
        return (rmse**2 if metric == "rmse" else nlpd) * y.numel(), y.numel()
    probs = torch.cat([model.predict_proba(X[i : i + chunk]) for i in range(0, X.shape[0], chunk)])
    labels = y.long()
    if probs.shape[-1] == 1:  # Bernoulli: p(y = 1)
        p1 = probs[:, 0]
        predicted, p_y = (p1 > 0.5).long(), torch.where(labels == 1, p1, 1 - p1)
    else:
        predicted, p_y = probs.argmax(-1), probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    if metric == "accuracy":
        return float((predicted == labels).sum()), y.numel()
    return float(-p_y.clamp_min(1e-300).log().sum()), y.numel()


def pooled(metric: str, sums: Sequence[float], counts: Sequence[int]) -> float:
    """The metric over the union of test sets from their sums (`metric_sum`; RMSE: the root of the pooled mean)."""
    mean = sum(sums) / sum(counts)
    return math.sqrt(mean) if metric == "rmse" else mean


__all__ = ["METRICS", "ContinualResult", "backward_transfer", "forgetting", "metric_sum", "pooled"]
