"""Every posterior family gpvi has passes the shared contract test case (`tests/variational/contract.py`)."""

from __future__ import annotations

from gpvi import SVGP, DualSVGP
from gpvi.features import InducingPoints
from gpvi.variational import WhitenedSVGPStrategy
from tests.variational.contract import PosteriorContract


class TestWhitenedSVGP(PosteriorContract):
    def build(self, X, Y, Z):
        return SVGP(X, Y, outcome_transform=None, features=InducingPoints(Z, learn_locations=False), jitter=self.jitter)


class TestUnwhitenedSVGP(PosteriorContract):
    def build(self, X, Y, Z):
        return SVGP(
            X,
            Y,
            outcome_transform=None,
            features=InducingPoints(Z, learn_locations=False),
            whiten=False,
            jitter=self.jitter,
        )


class TestSVGPWithAStrategyInstance(PosteriorContract):
    def build(self, X, Y, Z):
        strategy = WhitenedSVGPStrategy(InducingPoints(Z, learn_locations=False), jitter=self.jitter)
        return SVGP(X, Y, outcome_transform=None, strategy=strategy)


class TestDualSVGP(PosteriorContract):
    def build(self, X, Y, Z):
        return DualSVGP(
            X, Y, outcome_transform=None, features=InducingPoints(Z, learn_locations=False), jitter=self.jitter
        )
