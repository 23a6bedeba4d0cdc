"""select_batch: greedy kriging-believer batches against dense algebra, exclusions, and classifier fantasies."""

import itertools
import math

import pytest
import torch
from gpytorch.likelihoods import SoftmaxLikelihood

import gpvi
from gpvi.acquisition import predictive_variance, select_batch


def _dense_greedy_variance(model, candidates, k):
    """Greedy variance picks by rank-one updates of the dense posterior covariance (output units)."""
    with torch.no_grad():
        cov = model.posterior(candidates).distribution.covariance_matrix.clone()
        noise = model.posterior(candidates, observation_noise=True).variance[:, 0] - cov.diagonal()
    picks = []
    for _ in range(k):
        var = cov.diagonal().clone()
        var[picks] = -math.inf
        j = int(var.argmax())
        picks.append(j)
        cov = cov - torch.outer(cov[:, j], cov[j, :]) / (cov[j, j] + noise[j])
    return picks, cov, noise


@pytest.mark.parametrize("name", ["single_task_gp", "gaussian_svgp"])
def test_greedy_variance_batch_matches_dense_rank_one_updates(name, request, pool):
    model = request.getfixturevalue(name)
    picks = select_batch(model, pool, "variance", 5)
    expected, _, _ = _dense_greedy_variance(model, pool, 5)
    assert picks.tolist() == expected
    assert picks.dtype == torch.long and len(set(picks.tolist())) == 5


def test_greedy_batch_is_within_the_submodular_bound_of_the_best_batch(single_task_gp, pool):
    """Greedy variance = greedy log det(I + Σ_S / σ²): at least (1 − 1/e) of the brute-force best batch."""
    candidates = pool[:12]
    with torch.no_grad():
        cov = single_task_gp.posterior(candidates).distribution.covariance_matrix
        noise = single_task_gp.posterior(candidates[:1], observation_noise=True).variance[0, 0] - cov[0, 0]

    def gain(subset):
        idx = list(subset)
        return torch.logdet(torch.eye(len(idx)) + cov[idx][:, idx] / noise).item()

    best = max(gain(s) for s in itertools.combinations(range(12), 3))
    greedy = gain(select_batch(single_task_gp, candidates, "variance", 3).tolist())
    assert (1 - 1 / math.e) * best <= greedy <= best + 1e-9


def test_duplicates_of_the_top_point_lose_their_score_once_it_is_picked(single_task_gp, pool):
    top = int(predictive_variance(single_task_gp, pool).argmax())
    candidates = torch.cat([pool, pool[top].expand(4, -1)])  # indices top, 25, 26, 27, 28: one input
    seen = []

    def variance(model, X):
        seen.append(predictive_variance(model, X))
        return seen[-1]

    picks = select_batch(single_task_gp, candidates, variance, 3).tolist()
    copies = {top, 25, 26, 27, 28}
    assert picks[0] in copies and len(copies.intersection(picks)) == 1  # spread out, not the same input thrice
    before, after = seen[0][sorted(copies)], seen[1][sorted(copies)]
    assert (after < 0.1 * before).all()  # conditioning on one copy explains them all


def test_exclude_takes_indices_or_a_mask(single_task_gp, pool):
    first = select_batch(single_task_gp, pool, "variance", 1).item()
    picks = select_batch(single_task_gp, pool, "variance", 3, exclude=torch.tensor([first]))
    assert first not in picks.tolist()
    mask = torch.ones(pool.shape[0], dtype=torch.bool)
    mask[[3, 7, 11]] = False
    assert sorted(select_batch(single_task_gp, pool, "variance", 3, exclude=mask).tolist()) == [3, 7, 11]


def test_bad_k_and_exclude_are_refused(single_task_gp, pool):
    mask = torch.ones(pool.shape[0], dtype=torch.bool)
    mask[:2] = False
    for k in (0, 3, 2.0, True):
        with pytest.raises(ValueError, match="`k`"):
            select_batch(single_task_gp, pool, "variance", k, exclude=mask)
    with pytest.raises(ValueError, match="`exclude`"):
        select_batch(single_task_gp, pool, "variance", 1, exclude=torch.tensor([25]))
    with pytest.raises(ValueError, match="`exclude`"):
        select_batch(single_task_gp, pool, "variance", 1, exclude=mask[:-1])
    with pytest.raises(ValueError, match="`candidates`"):
        select_batch(single_task_gp, pool[:, :1], "variance", 1)
    with pytest.raises(ValueError, match="'variance', 'entropy', 'bald', 'nipv'"):
        select_batch(single_task_gp, pool, "random", 1)


def test_nipv_batches_need_a_reference(single_task_gp, pool):
    with pytest.raises(ValueError, match="`reference`"):
        select_batch(single_task_gp, pool, "nipv", 2)
    picks = select_batch(single_task_gp, pool, "nipv", 3, reference=pool)
    assert len(set(picks.tolist())) == 3


def _recording(acquisition):
    models = []

    def score(model, X):
        models.append(model)
        return gpvi.acquisition.acquisition_scores(acquisition, model, X)

    return score, models


def test_a_label_conditioning_classifier_is_conditioned_on_its_most_probable_label(softmax_dual, pool):
    score, models = _recording("bald")
    picks = select_batch(softmax_dual, pool, score, 3)
    assert len(set(picks.tolist())) == 3
    x = pool[picks[0]].unsqueeze(0)
    label = gpvi.acquisition.class_probabilities(softmax_dual, x).argmax().item()
    assert models[1].num_data == softmax_dual.num_data + 1
    assert models[1].train_targets[-1].item() == label  # the label, not a Gaussian pseudo-target
    assert (predictive_variance(models[1], x) < predictive_variance(softmax_dual, x)).all()


def test_a_bernoulli_svgp_is_conditioned_on_the_laplace_site_of_its_label(bernoulli_svgp, pool):
    """q(f(x)) after the site: variance v/(1 + v h), mean μ + v g/(1 + v h), with the probit's
    g = s r, h = r (z + r), z = s μ, r = φ(z)/Φ(z), s = 2y − 1 and y the most probable label."""
    score, models = _recording("bald")
    picks = select_batch(bernoulli_svgp, pool, score, 2)
    assert picks[0] != picks[1]
    x = pool[picks[0]].unsqueeze(0)
    with torch.no_grad():
        before, after = bernoulli_svgp.posterior(x), models[1].posterior(x)
    mu, v = before.mean.item(), before.variance.item()
    s = 1.0 if mu > 0 else -1.0  # Φ(μ / √(1 + v)) > 1/2 iff μ > 0
    z = s * mu
    r = math.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi)) / (0.5 * math.erfc(-z / math.sqrt(2)))
    g, h = s * r, r * (z + r)
    assert after.variance.item() == pytest.approx(v / (1 + v * h), rel=1e-6)
    assert after.mean.item() == pytest.approx(mu + v * g / (1 + v * h), rel=1e-6, abs=1e-9)


def test_models_that_cannot_be_conditioned_get_single_picks_only(softmax_data, pool):
    X, y = softmax_data
    model = gpvi.SVGP(X, y, likelihood=SoftmaxLikelihood(num_classes=3, mixing_weights=False), num_inducing=8)
    assert select_batch(model, pool, "entropy", 1).shape == (1,)
    with pytest.raises(NotImplementedError, match="DualSVGP"):
        select_batch(model, pool, "entropy", 2)
