"""The PNG of `nh predict --plot`: the potential and its sensors, q(t) and p(t) with their
bands (and the check's references), and the phase portrait."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nh_data.fileio import atomic_write
from nh_data.problem import SENSORS


def plot_prediction(path: str | os.PathLike, pot, t, q, p, bands=None, refs=None, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    a = ax[0, 0]
    x = np.linspace(0.0, 1.0, 400)
    exact = pot.exact_V(x)
    if exact is not None:
        a.plot(x, exact, "k-", lw=1, label="V (exact)")
    a.plot(SENSORS, pot.V, "o", ms=2.5, color="tab:blue", label="100 sensors")
    a.set(xlabel="q", ylabel="V(q)", title=f"potential: {pot.label}"[:70])
    a.legend(fontsize=8)
    order = np.argsort(t, kind="stable")
    ts = t[order]
    for a, y, name in ((ax[0, 1], q, "q"), (ax[1, 0], p, "p")):
        a.plot(ts, y[order], color="tab:red", lw=1.2, label="network")
        if bands is not None:
            lo = getattr(bands, f"{name}_lo")[order]
            hi = getattr(bands, f"{name}_hi")[order]
            a.fill_between(ts, lo, hi, color="tab:red", alpha=0.2, label=f"band {bands.level:g}")
        for rname, r in (refs or {}).items():
            a.plot(ts, r[name][order], "--", lw=1, label=f"{rname} (check)")
        a.set(xlabel="t", ylabel=f"{name}(t)")
        a.legend(fontsize=8)
    a = ax[1, 1]
    a.plot(q[order], p[order], color="tab:red", lw=1.2, label="network")
    for rname, r in (refs or {}).items():
        a.plot(r["q"][order], r["p"][order], "--", lw=1, label=f"{rname} (check)")
    a.set(xlabel="q", ylabel="p", title="phase portrait")
    a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
