"""Analyses of trained BNTT networks: gamma statistics and early exit, spike rates and energy."""

from .early_exit import accuracy_per_step, exit_step, gamma_curves, mean_gamma_curve
from .energy import ENERGY_45NM, LayerOps, count_operations, energy_table

__all__ = [
    "accuracy_per_step",
    "exit_step",
    "gamma_curves",
    "mean_gamma_curve",
    "ENERGY_45NM",
    "LayerOps",
    "count_operations",
    "energy_table",
]
