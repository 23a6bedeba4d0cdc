"""Variational strategies (gpytorch `_VariationalStrategy` subclasses) written against features."""

from gpvi.variational.svgp import Marginals, WhitenedSVGPStrategy, WhitenedTerms

__all__ = ["Marginals", "WhitenedSVGPStrategy", "WhitenedTerms"]
