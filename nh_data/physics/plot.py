"""Figure of one physics case: potential, q(t) and p(t), phase portrait, errors over time.

matplotlib is imported lazily with the Agg backend, so `nh_data` never needs a display.
"""

from __future__ import annotations

import numpy as np

from ..problem import SENSORS

_COLOURS = {"rk4": "tab:red", "leapfrog": "tab:orange", "yoshida4": "tab:green", "yoshida8": "tab:blue"}


def plot_physics(pot, res: dict, path: str, dense: tuple | None = None) -> None:
    """Save a 2 x 2 PNG of `res` (from `physics.compare`) for potential `pot` to `path`.

    dense: optional (t, q, p) of the reference on a fine grid, drawn as the curves.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, q_ref, p_ref = res["t"], res["q_ref"], res["p_ref"]  # (W,)
    td, qd, pd = dense if dense is not None else (t, q_ref, p_ref)  # (W_dense,)
    fig, ax = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    fig.suptitle(f"{pot.name}: {pot.formula}", fontsize=9)

    # (a) potential, energy level, kinks
    qs = np.linspace(0.0, 1.0, 501)
    a = ax[0, 0]
    a.plot(qs, pot.potential(qs), "k-", lw=1.5, label="V(q)")
    a.plot(SENSORS, pot.sensors(), "k.", ms=3, label="100 sensors")
    a.axhline(res["E0"], color="tab:purple", ls="--", lw=1, label=f"E0 = {res['E0']:.4g}")
    for k in pot.kinks:
        a.axvline(k, color="grey", ls=":", lw=1)
    a.set(xlabel="q", ylabel="V(q)", title="potential")
    a.legend(fontsize=8)

    # (b) q(t) and p(t): reference lines, one method as markers
    b = ax[0, 1]
    b.plot(td, qd, "tab:blue", lw=1.5, label="q reference")
    b.plot(td, pd, "tab:red", lw=1.5, label="p reference")
    if "yoshida8" in res["methods"]:
        r = res["methods"]["yoshida8"]
        b.plot(t, r["q"], "o", color="tab:blue", ms=2.5, mfc="none", label="q yoshida8")
        b.plot(t, r["p"], "o", color="tab:red", ms=2.5, mfc="none", label="p yoshida8")
    b.set(xlabel="t", ylabel="q, p", title="trajectory")
    b.legend(fontsize=8)

    # (c) phase portrait
    c = ax[1, 0]
    c.plot(qd, pd, "k-", lw=1.2)
    c.plot(q_ref[:1], p_ref[:1], "go", ms=6, label="start")
    c.set(xlabel="q", ylabel="p", title="phase portrait (reference)")
    c.legend(fontsize=8)

    # (d) error over time, log scale (exact zeros shown at the floor)
    d = ax[1, 1]
    floor = 1e-17
    for m, r in res["methods"].items():
        # on the method's native grid t = k dt: no interpolation in the error
        err = np.maximum(np.abs(r["q_grid"] - res["q_ref_grid"]), np.abs(r["p_grid"] - res["p_ref_grid"]))
        d.semilogy(res["t_grid"], np.maximum(err, floor), "-", color=_COLOURS.get(m), lw=1.2, label=m)
    d.set(
        xlabel="t",
        ylabel="max(|q - q_ref|, |p - p_ref|)",
        title="integrator error on the native grid t = k dt",
        ylim=(floor, None),
    )
    d.grid(True, which="major", alpha=0.3)
    d.legend(fontsize=8)

    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
