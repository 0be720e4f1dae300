"""bench/extra_generators.py (issue 21): its processor with a cubic momentum term is exactly
symplectic and inverted by chi_inverse, the textbook row is fourth order at the grid points, and
the bench runs end to end with a one-line error for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from benches import load_bench
from synthetic import write_synthetic_dataset

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _smooth(B: int) -> torch.Tensor:
    x = np.linspace(0.0, 1.0, 100)
    return torch.from_numpy(1.5 * np.cos(2 * np.pi * x) + 0.3 * np.sin(5 * x))[None].repeat(B, 1)


def test_cubic_processor_is_symplectic_and_inverted():
    bench = load_bench("extra_generators")
    spec = bench.ROWS["+ V'V'' in a, + C P^3"]
    gen = torch.Generator().manual_seed(1)
    theta = {k: 30.0 * torch.randn(len(v), generator=gen, dtype=torch.float64) for k, v in spec.items()}
    _, proc = bench.tables(_smooth(3), 2.0 / 40, spec, theta)
    q = torch.tensor([[0.3], [0.55], [0.7]], dtype=torch.float64)
    p = torch.tensor([[1.2], [-0.4], [2.0]], dtype=torch.float64)
    Q, P = bench.chi(q, p, proc)
    assert (Q - q).abs().max() > 1e-4 and (P - p).abs().max() > 1e-3  # the cubic term acts
    q2, p2 = bench.chi_inverse(Q, P, proc)
    assert torch.allclose(q2, q, rtol=0, atol=1e-14) and torch.allclose(p2, p, rtol=0, atol=1e-13)

    def one(x):
        Q, P = bench.chi(x[0].reshape(1, 1).expand(3, 1), x[1].reshape(1, 1).expand(3, 1), proc)
        return torch.stack([Q[1, 0], P[1, 0]])

    J = torch.autograd.functional.jacobian(one, torch.tensor([0.55, -0.4], dtype=torch.float64))
    assert abs(torch.det(J).item() - 1.0) < 1e-13


def test_textbook_row_is_fourth_order_at_the_grid_points():
    bench = load_bench("extra_generators")
    V = _smooth(4)
    ic = torch.tensor([[0.45, 0.8], [0.5, -0.6], [0.55, 0.3], [0.4, 0.0]], dtype=torch.float64)
    ref = bench.grid_states(V, ic, 640, {}, {})
    errs = []
    for steps in (40, 80):
        q, p = bench.grid_states(V, ic, steps, {}, {})
        stride = 640 // steps
        errs.append(
            float(
                (
                    (q[:, -1] - ref[0][:, ::stride][:, -1]) ** 2
                    + (p[:, -1] - ref[1][:, ::stride][:, -1]) ** 2
                ).max()
            )
        )
    assert errs[0] / errs[1] > 2**8 / 2  # the squared error falls like h^8 (fourth order)


def test_extra_generators_bench_runs_and_refuses_bad_input(tmp_path, capsys):
    write_synthetic_dataset(tmp_path / "data", n_train=16, n_val=12, n_test=8, seed=5)
    out = tmp_path / "rows.json"
    argv = [
        "--data",
        str(tmp_path / "data"),
        "--steps",
        "32",
        "--ref-steps",
        "400",
        "--fit-orbits",
        "8",
        "--test-orbits",
        "0",
    ]
    bench = load_bench("extra_generators")
    assert bench.main([*argv, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert res["test_orbits"] == 8 and set(rows) == set(bench.ROWS)
    assert all(0.0 < r["median"] and np.isfinite(r["mean"]) for r in rows.values())
    assert "c" in rows["+ V'V'' in a, + C P^3"]["coefficients"]
    # the synthetic wells are harmonic (third derivative zero): the h^4 error is p^2 V''^2 and
    # V'^2 V'' alone, which V'^2 V'' in dV and V' V'' in a reach, so the coefficients fitted on
    # the validation orbits leave the test orbits far below the textbook
    assert rows["dictionary"]["mean"] < rows["textbook"]["mean"] / 10
    assert rows["+ V'V'' in a"]["mean"] < rows["dictionary"]["mean"] / 10
    assert all(0.01 <= r["worst 1 % share"] <= 1.0 for r in rows.values())  # of 8 orbits: the worst one
    # fitted on the mean loss instead, the harmonic wells' h^4 terms are found as well
    assert bench.main([*argv, "--objective", "mean", "--json", str(out)]) == 0
    by_mean = json.loads(out.read_text())
    assert by_mean["objective"] == "mean" and by_mean["rows"]["+ V'V'' in a"]["mean"] < rows["dictionary"]["mean"] / 10
    fitted = [r["fit mean"] for r in by_mean["rows"].values() if r["coefficients"]]  # the fit lowers what it fits
    assert len(fitted) == 3 and max(fitted) < by_mean["rows"]["textbook"]["fit mean"]
    assert bench.main([*argv[:2], "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error:") and "--steps" in err and "\n" not in err
