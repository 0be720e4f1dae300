"""Using a trained operator (`nh predict`): a potential from a name, a file or a formula
(`potential_input`, `formula`), the prediction with chained windows and calibrated bands
(`predict`), the check against the certified integrator (`check`), the PNG (`plot`) and the
whole command (`predict_command`)."""

from __future__ import annotations

from .formula import Formula, formula_potential, parse_formula
from .potential_input import Potential, check_inputs, read_potential_file, resolve_potential
from .predict import Bands, chained, predict

__all__ = [
    "Bands",
    "Formula",
    "Potential",
    "chained",
    "check_inputs",
    "formula_potential",
    "parse_formula",
    "predict",
    "read_potential_file",
    "resolve_potential",
]
