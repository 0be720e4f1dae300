"""The physical test potentials: formulas against SPEC section 7, forces, smff's singularity, input checks."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pytest

from nh_data.errors import NHError
from nh_data.physics import POTENTIALS, check_ic, get_potential, parse_float, parse_ic

NAMES = ["sho", "quartic", "morse", "mff", "smff", "unbounded", "pendulum", "atw"]

# SPEC section 7, written out independently in NumPy (the slow, obviously-correct twins).
_PHI = (1 + np.sqrt(5)) / 2
_A_SMFF = 4 * np.tanh(10.0)
SPEC_V = {
    "sho": lambda q: 8 * (q - 0.5) ** 2,
    "quartic": lambda q: 625 / 8 * (q - 0.2) ** 2 * (q - 0.8) ** 2,
    "morse": lambda q: 8 / (np.sqrt(5) - 1) ** 2 * (1 - np.exp(-3 * np.log(_PHI) * (q - 1 / 3))) ** 2,
    "mff": lambda q: 4 * np.abs(q - 0.5),
    "smff": lambda q: _A_SMFF * (q - 0.5) / np.tanh(20 * (q - 0.5)),
    "unbounded": lambda q: np.where(q <= 0.5, -4 * (q - 0.5), 32 * q**3 - 48 * q**2 + 20 * q - 2),
    "pendulum": lambda q: 2 / (1 - np.cos(np.pi / 3)) * (1 - np.cos(2 * np.pi / 3 * (q - 0.5))),
    "atw": lambda q: np.where(q < 0.25, 2 * (1 - q / 0.25), 2 * (1 - (1 - q) / 0.75)),
}


def test_registry_names():
    assert list(POTENTIALS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_walls_are_at_V0(name):
    pot = POTENTIALS[name]
    assert pot.V(0.0, pot.params) == pytest.approx(2.0, abs=1e-14)
    assert pot.V(1.0, pot.params) == pytest.approx(2.0, abs=1e-14)
    # the walls are the highest points of the box, so E0 <= 2 confines every orbit
    q = np.linspace(0.0, 1.0, 2001)
    assert pot.potential(q).max() <= 2.0 + 1e-14


@pytest.mark.parametrize("name", NAMES)
def test_V_matches_spec_formula(name):
    pot = POTENTIALS[name]
    q = np.linspace(0.0, 1.0, 1001)
    q = q[np.abs(q - 0.5) > 1e-12] if name == "smff" else q  # the NumPy twin is 0/0 there
    np.testing.assert_allclose(pot.potential(q), SPEC_V[name](q), rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(pot.sensors(), pot.potential(np.linspace(0, 1, 100)))


@pytest.mark.parametrize("name", NAMES)
def test_dV_matches_finite_differences_of_spec_V(name):
    pot = POTENTIALS[name]
    rng = np.random.default_rng(1)
    q = rng.uniform(0.0, 1.0, 200)
    q = q[np.min(np.abs(q[:, None] - np.array([0.25, 0.5])[None, :]), axis=1) > 1e-3]  # off the kinks
    h = 1e-6
    fd = (SPEC_V[name](q + h) - SPEC_V[name](q - h)) / (2 * h)
    np.testing.assert_allclose(pot.force(q), fd, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_branch_force_is_the_force_on_its_own_piece(name):
    pot = POTENTIALS[name]
    edges = [-np.inf, *pot.kinks, np.inf]
    for q in np.linspace(-0.2, 1.2, 57):
        j = int(np.searchsorted(pot.kinks, q))  # piece of q (q is never on a kink here)
        assert edges[j] < q < edges[j + 1]
        assert pot.dV_branch(q, pot.params, j) == pot.dV(q, pot.params)


def test_unbounded_is_C2_with_a_jump_in_V3_at_half():
    pot = POTENTIALS["unbounded"]
    left, right = pot.dV_branch(0.5, pot.params, 0), pot.dV_branch(0.5, pot.params, 1)
    assert left == right == -4.0  # V' continuous
    h = 1e-4  # V'' = d(dV)/dq from each branch at the kink: 0 on both sides
    assert abs((pot.dV_branch(0.5 + h, pot.params, 1) - right) / h) < 1e-2
    assert (pot.dV_branch(0.5 + h, pot.params, 0) - left) / h == 0.0


def _smff_exact(x: float) -> tuple[float, float]:
    """V and dV of smff at q = 0.5 + x in 60-digit decimal arithmetic."""
    getcontext().prec = 60
    a = Decimal(4) * ((Decimal(20).exp() - 1) / (Decimal(20).exp() + 1))  # 4 tanh(10)
    y = Decimal(20) * Decimal(x)
    if y == 0:
        return float(a / 20), 0.0
    e2 = (2 * y).exp()
    coth = (e2 + 1) / (e2 - 1)
    sinh = (y.exp() - (-y).exp()) / 2
    return float(a / 20 * y * coth), float(a * (coth - y / (sinh * sinh)))


@pytest.mark.parametrize(
    "x", [0.0, 1e-300, 1e-15, -1e-12, 1e-8, -3e-5, 1e-3, 9.99e-3, 1e-2, -1.001e-2, 0.05, 0.2, -0.5, 0.5]
)
def test_smff_no_nan_and_accurate_near_the_singularity(x):
    pot = POTENTIALS["smff"]
    q = 0.5 + x
    V, dV = pot.V(q, pot.params), pot.dV(q, pot.params)
    V_ex, dV_ex = _smff_exact(q - 0.5)  # q - 0.5 is exact in floating point
    assert math.isfinite(V) and math.isfinite(dV)
    assert V == pytest.approx(V_ex, rel=1e-14)
    assert dV == pytest.approx(dV_ex, rel=2e-14, abs=1e-15)


def test_smff_limit_at_half_is_a_over_alpha():
    pot = POTENTIALS["smff"]
    a, alpha, _ = pot.params
    assert pot.V(0.5, pot.params) == pytest.approx(a / alpha, rel=1e-15)
    assert pot.dV(0.5, pot.params) == 0.0
    # continuous across the series / direct-formula switch at |alpha x| = 0.2
    for x in (0.01, -0.01):
        lo, hi = pot.V(0.5 + x * (1 - 1e-12), pot.params), pot.V(0.5 + x * (1 + 1e-12), pot.params)
        assert abs(hi - lo) < 1e-13


def test_unknown_name_lists_valid_ones():
    with pytest.raises(NHError, match=r"unknown potential 'nope'; valid: sho, quartic, .*, atw, all"):
        get_potential("nope")


@pytest.mark.parametrize(
    "name, q0, p0, message",
    [
        ("sho", -0.01, 0.0, "outside the box"),
        ("sho", 1.5, 0.0, "outside the box"),
        ("sho", 0.5, 2.01, "above the walls"),
        ("atw", 0.25, 2.0 + 1e-9, "above the walls"),
        ("morse", float("nan"), 0.0, "must be finite"),
        ("quartic", 0.5, float("inf"), "must be finite"),
    ],
)
def test_bad_initial_conditions(name, q0, p0, message):
    with pytest.raises(NHError, match=message):
        check_ic(POTENTIALS[name], q0, p0)


@pytest.mark.parametrize("name", NAMES)
def test_turning_point_starts_are_accepted(name):
    pot = POTENTIALS[name]
    assert check_ic(pot, 0.0, 0.0) == pytest.approx(2.0, abs=1e-14)  # the default wall start, E0 = V0
    assert check_ic(pot, 1.0, 0.0) == pytest.approx(2.0, abs=1e-14)


def test_parse_ic_and_numbers():
    assert parse_ic("0.25,-1.5") == (0.25, -1.5)
    assert parse_ic(" 0 , 0 ") == (0.0, 0.0)
    for bad in ("0.1", "a,b", "1,2,3", ""):
        with pytest.raises(NHError, match="--ic must be Q0,P0"):
            parse_ic(bad)
    assert parse_float("1e-3", "--dt") == 1e-3
    with pytest.raises(NHError, match="--t-max must be a number, got 'x'"):
        parse_float("x", "--t-max")


@pytest.mark.parametrize("name", NAMES)
def test_kernel_id_dispatch_matches_the_potentials_own_kernels(name):
    from nh_data.physics.analytic_potentials import _dV_branch_by_id, _V_by_id

    pot = POTENTIALS[name]
    assert pot.kernel_id == NAMES.index(name)
    for q in np.linspace(-0.1, 1.1, 25):
        assert _V_by_id(pot.kernel_id, q, pot.params) == pot.V(q, pot.params)
        for j in range(len(pot.kinks) + 1):
            assert _dV_branch_by_id(pot.kernel_id, q, pot.params, j) == pot.dV_branch(q, pot.params, j)


def test_physics_imports_neither_torch_nor_matplotlib():
    import subprocess
    import sys

    code = "import sys, nh_data.physics; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
