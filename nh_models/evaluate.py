"""Judge trained operators against integrators given the same information.

The pieces are plain functions on numpy arrays and "predictors" (callables
``(V (B, 100), t (B, W), ic (B, 2)) -> (q, p)``, float64): a trained network
(`model_predictor`) and an integrator on the sensor interpolant
(`nh_models.oracle`) are judged by the same code.

- `orbit_errors` / `summarize`: MSE of q and p, the loss 0.5 (MSE_q + MSE_p)
  and the relative L2 error per orbit, summarised overall and per energy
  stratum of u (a wall-start dataset has u = 1 or NaN: stratum "wall").
- `work_precision`: error against wall time per trajectory, integrators on
  their native grid at several dt, a model as one point; `equal_cost` finds
  the RK4 step that costs what the model costs, and RK4's error there.
- `energy_error`: |H(q, p) - H(q0, p0)| along predicted trajectories.
- `jacobian_det`: det d(q, p)(t) / d(q0, p0) by central differences.
- `chain`: long-time prediction by chaining windows (end state -> next ic).
- `evaluate_runs`: the whole `nh eval`: metrics.json, report.md and plots.

See docs/evaluation.md for what each number means and why it is fair.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nh_data.errors import NHError
from nh_data.fileio import write_text_atomic

from .oracle import (
    SENSORS,
    Predictor,
    energy,
    integrator_native,
    integrator_predict,
    native_grid,
)
from .runtime import retain_freed_memory

# energy strata of u = (E - V(q0)) / (V0 - V(q0)) (SPEC section 3)
STRATA: tuple[tuple[str, float, float], ...] = (
    ("[0.05,0.35)", 0.05, 0.35),
    ("[0.35,0.65)", 0.35, 0.65),
    ("[0.65,0.95)", 0.65, 0.95),
    ("[0.95,0.99)", 0.95, 0.99),
)
WALL = "wall"  # u = 1 or NaN: the v1 wall start (q0, p0) = (0, 0), E = V0
OTHER = "other"
BASELINES = ("rk4", "leapfrog", "yoshida4")  # the integrators every model is compared with


@dataclass
class EvalSettings:
    """Sizes and knobs of one evaluation (defaults: the `nh eval` command)."""

    max_test: int | None = None  # cap on test orbits for the accuracy table (None: all)
    n_sub: int = 1000  # test orbits for work-precision and energy
    n_detj: int = 200  # test orbits for |det J - 1|
    dts: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
    methods: tuple[str, ...] = BASELINES
    physics_dt: float = 0.02  # step of the baselines on the physics potentials
    eps: float = 1e-6  # finite-difference step for det J (fourth-order stencils, float64 evaluation)
    window: float = 2.0  # length of a chained window
    t_long: float = 20.0  # chain windows up to this time
    batch_size: int = 2048
    repeats: int = 3  # timing: best of this many after a warm-up
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_sub < 2 or self.n_detj < 1:
            raise NHError("n_sub must be >= 2 and n_detj >= 1")
        if not self.dts or min(self.dts) <= 0:
            raise NHError("dts must be positive")
        if not self.window > 0 or self.t_long < self.window:
            raise NHError("need window > 0 and t_long >= window")


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- predictors


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype a model computes in (its first parameter or buffer; float32 if none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def model_predictor(
    model: torch.nn.Module, device: str | torch.device = "cpu", batch_size: int = 2048
) -> Predictor:
    """Wrap an OperatorModel as a float64 numpy predictor (eval mode, no grad, batched)."""
    model.eval()
    dtype = model_dtype(model)

    def predict(V: np.ndarray, t: np.ndarray, ic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        V = np.atleast_2d(V)
        t = np.broadcast_to(np.atleast_2d(t), (V.shape[0], np.shape(t)[-1]))
        ic = np.atleast_2d(ic)
        qs, ps = [], []
        with torch.inference_mode():
            for s in range(0, V.shape[0], batch_size):
                sl = slice(s, s + batch_size)
                Vb, tb, icb = (
                    torch.as_tensor(np.array(a[sl]), dtype=dtype, device=device) for a in (V, t, ic)
                )
                q, p = model(Vb, tb, icb)  # (b, W) each
                qs.append(q.double().cpu().numpy())
                ps.append(p.double().cpu().numpy())
        return np.concatenate(qs), np.concatenate(ps)

    return predict


def integrator_predictor(method: str, dt: float, native: bool = True) -> Predictor:
    """An integrator on the sensor interpolant as a predictor (native grid + Hermite by default)."""

    def predict(V, t, ic):
        if native:
            return integrator_native(V, t, ic, method, dt)
        return integrator_predict(V, t, ic, method, dt)

    return predict


# ---------------------------------------------------------------- accuracy


def orbit_errors(q_hat: np.ndarray, p_hat: np.ndarray, q: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Per-orbit errors; all inputs (B, W). Returns arrays (B,).

    mse_q, mse_p: mean over the window; loss = 0.5 (mse_q + mse_p) (the
    training loss); rel_l2 = ||(q_hat - q, p_hat - p)|| / ||(q, p)||.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged orbit scores inf, silently
        dq2 = (q_hat - q) ** 2
        dp2 = (p_hat - p) ** 2
        mse_q = dq2.mean(axis=1)
        mse_p = dp2.mean(axis=1)
        norm = np.sqrt((q**2 + p**2).sum(axis=1))
        rel = np.sqrt((dq2 + dp2).sum(axis=1)) / np.where(norm > 0, norm, np.nan)
    return {"mse_q": mse_q, "mse_p": mse_p, "loss": 0.5 * (mse_q + mse_p), "rel_l2": rel}


def stratum_labels(u: np.ndarray) -> np.ndarray:
    """Label every orbit with its energy stratum (u = 1 or NaN -> "wall"; so is u = 0, what the
    data engine stores for wall starts, where u = 0/0: no stratum has u below 0.05)."""
    u = np.asarray(u, dtype=np.float64)
    labels = np.full(u.shape, OTHER, dtype=object)
    for name, lo, hi in STRATA:
        labels[(u >= lo) & (u < hi)] = name
    labels[np.isnan(u) | (u >= 0.99) | (u == 0.0)] = WALL
    return labels


def _stats(err: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {"n": int(mask.sum())}
    for key, values in err.items():
        v = values[mask]
        out[key] = float(np.mean(v)) if v.size else float("nan")
    out["loss_median"] = float(np.median(err["loss"][mask])) if mask.any() else float("nan")
    return out


def summarize(err: dict[str, np.ndarray], u: np.ndarray | None = None) -> dict[str, Any]:
    """Mean of each per-orbit error, overall and per energy stratum present."""
    n = len(err["loss"])
    out: dict[str, Any] = {"overall": _stats(err, np.ones(n, dtype=bool)), "strata": {}}
    if u is not None:
        labels = stratum_labels(u)
        for name in [s[0] for s in STRATA] + [WALL, OTHER]:
            mask = labels == name
            if mask.any():
                out["strata"][name] = _stats(err, mask)
    return out


def finite(x: float) -> float | None:
    """JSON-safe float (NaN/inf -> None)."""
    return float(x) if x is not None and math.isfinite(x) else None


# ---------------------------------------------------------------- work-precision


def _best_time(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def integrator_work_precision(
    V: np.ndarray,
    t: np.ndarray,
    ic: np.ndarray,
    q: np.ndarray,
    p: np.ndarray,
    methods=BASELINES,
    dts=EvalSettings.dts,
    repeats: int = 3,
    progress: bool = False,
) -> dict[str, list[dict[str, float]]]:
    """Error (mean loss over the orbits) and wall time per trajectory of each integrator at each dt.

    Each integrator runs batched (`integrate_batch`, Numba, all threads) on its
    native uniform grid and answers the query times by Hermite dense output;
    the time covers the interpolant, the integration and the dense output
    (compilation excluded by a warm-up call).
    """
    from tqdm.auto import tqdm

    B = V.shape[0]
    out: dict[str, list[dict[str, float]]] = {}
    bar = tqdm(
        total=len(methods) * len(dts),
        desc="work-precision",
        unit="point",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )
    for method in methods:
        integrator_native(V[:2], t[:2], ic[:2], method, max(dts))  # warm-up (compile)
        rows = []
        for dt in sorted(dts, reverse=True):
            bar.set_postfix_str(f"{method} dt={dt:g}", refresh=False)
            bar.update()
            result = {}

            def run(dt=dt, method=method, result=result):
                result["qp"] = integrator_native(V, t, ic, method, dt)

            seconds = _best_time(run, repeats)
            q_hat, p_hat = result["qp"]
            err = orbit_errors(q_hat, p_hat, q, p)
            bad = ~np.isfinite(err["loss"])  # orbits that blew up (left the box at too large a step)
            rows.append(
                {
                    "dt": float(dt),
                    "steps": int(len(native_grid(float(t.max()), dt)) - 1),
                    "time_per_traj_s": seconds / B,
                    "loss": float(np.mean(err["loss"])) if not bad.any() else math.inf,
                    "rel_l2": float(np.mean(err["rel_l2"])) if not bad.any() else math.inf,
                    "n_diverged": int(bad.sum()),
                }
            )
        out[method] = rows
    bar.close()
    return out


def time_model(
    model: torch.nn.Module,
    V: np.ndarray,
    t: np.ndarray,
    ic: np.ndarray,
    device: str | torch.device = "cpu",
    batch_size: int = 2048,
    repeats: int = 3,
) -> dict[str, float]:
    """Inference wall time per trajectory on `device` with large batches.

    Inputs are moved to the device once (transfers excluded); one warm-up
    batch is excluded; CUDA is synchronised around each timing.
    """
    model.eval()
    dtype = model_dtype(model)
    B = min(batch_size, V.shape[0])
    dev = torch.device(device)
    Vt = torch.as_tensor(V[:B], dtype=dtype, device=dev)  # (B, 100)
    tt = torch.as_tensor(t[:B], dtype=dtype, device=dev)  # (B, W)
    ict = torch.as_tensor(ic[:B], dtype=dtype, device=dev)  # (B, 2)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def run():
        with torch.inference_mode():
            model(Vt, tt, ict)
        sync()

    run()  # warm-up
    seconds = _best_time(run, repeats)
    return {"time_per_traj_s": seconds / B, "batch": int(B), "device": str(dev)}


def equal_cost(rk4_rows: list[dict[str, float]], model_time: float) -> dict[str, Any]:
    """The RK4 step whose cost per trajectory equals `model_time`, and RK4's error there.

    Log-log interpolation of RK4's (time, dt) and (dt, loss) curves. Outside the
    measured range the cost is taken proportional to 1/dt and the error
    follows the slope of the two nearest points; such values are flagged
    ``extrapolated``.
    """
    rows = sorted(rk4_rows, key=lambda r: r["dt"])  # small dt (expensive) first
    log_dt = np.log([r["dt"] for r in rows])
    log_time = np.log([r["time_per_traj_s"] for r in rows])
    # a diverged point (loss inf, or None once through JSON) makes every value interpolated from it inf
    log_loss = np.log([max(r["loss"], 1e-300) if r["loss"] is not None else math.inf for r in rows])
    lt = math.log(model_time)
    order = np.argsort(log_time)
    extrapolated = not (log_time.min() <= lt <= log_time.max())
    if not extrapolated:
        ldt = float(np.interp(lt, log_time[order], log_dt[order]))
    elif lt < log_time.min():  # cheaper than RK4 at the largest dt
        i = int(np.argmax(log_dt))
        ldt = log_dt[i] + (log_time[i] - lt)
    else:  # dearer than RK4 at the smallest dt
        i = int(np.argmin(log_dt))
        ldt = log_dt[i] - (lt - log_time[i])
    if log_dt.min() <= ldt <= log_dt.max():
        lloss = float(np.interp(ldt, log_dt, log_loss))
    else:
        j = [0, 1] if ldt < log_dt.min() else [-2, -1]
        slope = (log_loss[j[1]] - log_loss[j[0]]) / (log_dt[j[1]] - log_dt[j[0]])
        k = j[0] if ldt < log_dt.min() else j[1]
        if ldt < log_dt.min():
            slope = 0.0  # below the smallest dt the error is at its floor: do not extrapolate downwards
        lloss = float(log_loss[k] + slope * (ldt - log_dt[k]))
    loss = math.exp(lloss) if math.isfinite(lloss) else math.inf
    return {"dt": math.exp(ldt), "loss": loss, "extrapolated": bool(extrapolated)}


def fit_order(dts: np.ndarray, errors: np.ndarray) -> float:
    """Least-squares slope of log(error) against log(dt)."""
    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])


# ---------------------------------------------------------------- physics beyond MSE


def energy_error(V: np.ndarray, q: np.ndarray, p: np.ndarray, ic: np.ndarray) -> np.ndarray:
    """|H(q, p)(t) - H(q0, p0)| along trajectories, H with the sensor interpolant; (B, W)."""
    H = energy(V, q, p)  # (B, W)
    H0 = energy(V, ic[:, :1], ic[:, 1:])  # (B, 1)
    return np.abs(H - H0)


_OFFSETS = np.arange(-4, 5)  # stencil offsets in units of eps
_CENTRAL4 = np.array([0, 0, 1, -8, 0, 8, -1, 0, 0]) / 12.0  # f' = (f(-2) - 8 f(-1) + 8 f(1) - f(2)) / 12
_FORWARD4 = np.array([0, 0, 0, 0, -25, 48, -36, 16, -3]) / 12.0  # one-sided, offsets 0..4
_BACKWARD4 = -_FORWARD4[::-1]  # offsets -4..0


def jacobian_det(predict: Predictor, V: np.ndarray, t: np.ndarray, ic: np.ndarray, eps: float) -> np.ndarray:
    """det J(t), J = d(q, p)(t) / d(q0, p0), by fourth-order finite differences; (B, W).

    Central five-point stencils, except where q0 -+ 2 eps would leave [0, 1]
    (wall starts): there the one-sided five-point stencil of the same order
    looks inwards. Fourth order matters: near a separatrix the flow map bends
    sharply and a second-order estimate needs eps too small for float32.
    """
    B = V.shape[0]
    q0 = ic[:, 0]
    coef = np.tile(_CENTRAL4, (B, 1))  # (B, 9) weights of the q0 direction
    coef[q0 - 2 * eps < 0.0] = _FORWARD4
    coef[q0 + 2 * eps > 1.0] = _BACKWARD4

    def run(dq0: float, dp0: float):
        return predict(V, t, np.stack([q0 + dq0 * eps, ic[:, 1] + dp0 * eps], axis=1))

    def derivative(weights: np.ndarray, direction: str):
        dq = np.zeros(t.shape)
        dp = np.zeros(t.shape)
        for k, off in enumerate(_OFFSETS):
            w = weights[:, k : k + 1]  # (B, 1)
            if not np.any(w):
                continue
            q, p = run(float(off), 0.0) if direction == "q0" else run(0.0, float(off))
            dq += w * q
            dp += w * p
        return dq / eps, dp / eps

    dq_dq0, dp_dq0 = derivative(coef, "q0")
    dq_dp0, dp_dp0 = derivative(np.tile(_CENTRAL4, (B, 1)), "p0")
    return dq_dq0 * dp_dp0 - dq_dp0 * dp_dq0


def chain(
    predict: Predictor, V: np.ndarray, ic: np.ndarray, n_windows: int, window: float = 2.0, W: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chain `n_windows` windows of length `window` (W uniform times each, ends included).

    The predicted state at the end of window k is the initial condition of
    window k + 1. Returns t (n_windows (W - 1) + 1,) and q, p (B, same).
    """
    t_loc = np.linspace(0.0, window, W)
    B = V.shape[0]
    ts, qs, ps = [np.zeros(1)], [ic[:, :1].copy()], [ic[:, 1:].copy()]
    state = ic.copy()
    for k in range(n_windows):
        q, p = predict(V, np.broadcast_to(t_loc, (B, W)), state)  # (B, W)
        ts.append(k * window + t_loc[1:])
        qs.append(q[:, 1:])
        ps.append(p[:, 1:])
        state = np.stack([q[:, -1], p[:, -1]], axis=1)
    return np.concatenate(ts), np.concatenate(qs, axis=1), np.concatenate(ps, axis=1)


# ---------------------------------------------------------------- data access


_VECTORS = ("V", "t", "ic", "q", "p")


@dataclass
class TestData:
    """Test orbits in memory (float64): inputs, truth, energy stratum."""

    __test__ = False  # not a pytest class

    V: np.ndarray  # (N, 100)
    t: np.ndarray  # (N, W)
    ic: np.ndarray  # (N, 2)
    q: np.ndarray  # (N, W)
    p: np.ndarray  # (N, W)
    u: np.ndarray  # (N,)
    source: str = ""

    def take(self, idx: np.ndarray) -> TestData:
        return TestData(
            self.V[idx], self.t[idx], self.ic[idx], self.q[idx], self.p[idx], self.u[idx], self.source
        )

    def batches(self, batch_size: int):
        """Yield TestData slices of at most `batch_size` orbits, in order."""
        for s in range(0, len(self.u), batch_size):
            yield self.take(slice(s, s + batch_size))


class TestSplit:
    """A dataset's test split read batch by batch from the memory-mapped shards (any size).

    Same interface as TestData for the evaluation: `u`, `source`,
    `batches(batch_size)` and `take(idx)` (which loads those orbits into memory).
    """

    __test__ = False  # not a pytest class

    def __init__(self, data_dir: str | os.PathLike, max_orbits: int | None = None, seed: int = 0):
        from .data import ShardDataset

        self.ds = ShardDataset(data_dir, "test", dtype=torch.float64)
        n = len(self.ds)
        if n == 0:
            raise NHError(f"test split of {data_dir} is empty")
        if max_orbits is not None and max_orbits < n:  # a seeded random subset, in shard order
            self.idx = np.sort(np.random.default_rng(seed).choice(n, size=max_orbits, replace=False))
        else:
            self.idx = np.arange(n)
        self.u = np.asarray(self.ds.column("u"), dtype=np.float64)[self.idx]
        self.source = str(data_dir)

    def _load(self, rows: np.ndarray) -> TestData:
        batch = self.ds.get_batch(rows)
        arrays = {k: batch[k].double().numpy() for k in _VECTORS}
        return TestData(
            **arrays, u=np.asarray(self.ds.column("u"), dtype=np.float64)[rows], source=self.source
        )

    def take(self, idx: np.ndarray) -> TestData:
        return self._load(self.idx[idx])

    def batches(self, batch_size: int):
        for s in range(0, len(self.idx), batch_size):
            yield self._load(self.idx[s : s + batch_size])


def load_test(data_dir: str | os.PathLike, max_orbits: int | None = None, seed: int = 0) -> TestData:
    """Read the test split (or a seeded random subset of `max_orbits`) into float64 arrays in memory."""
    split = TestSplit(data_dir, max_orbits, seed)
    return split.take(np.arange(len(split.u)))


@dataclass
class PhysicsCase:
    """One physical test potential: sensors, times, reference orbit, analytic V."""

    name: str
    V: np.ndarray  # (100,)
    t: np.ndarray  # (W,)
    q_ref: np.ndarray  # (W,)
    p_ref: np.ndarray  # (W,)
    formula: str = ""


def physics_names(spec: str) -> list[str]:
    """Parse `all` or `name,name,...` against the registry of nh_data.physics."""
    from nh_data.physics import POTENTIALS

    if spec.strip() in ("", "none"):
        return []
    if spec.strip() == "all":
        return list(POTENTIALS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in POTENTIALS]
    if bad:
        raise NHError(f"unknown physics potential {bad[0]!r}; valid: all, {', '.join(POTENTIALS)}")
    return names


def load_physics_cases(
    physics_dir: str | os.PathLike, names: list[str], progress: bool = True
) -> list[PhysicsCase]:
    """Load each potential's parquet with `nh_data.physics.load_physics` (built first when missing)."""
    from nh_data.physics import load_physics

    cases = []
    for name in names:
        if not (Path(physics_dir) / f"{name}.parquet").exists():
            _log(f"building physics potential {name} in {physics_dir}", progress)
        data = load_physics(physics_dir, name)
        if len(data.V) != len(SENSORS):
            raise NHError(f"physics case {name}: expected {len(SENSORS)} sensor values, got {len(data.V)}")
        cases.append(
            PhysicsCase(
                name,
                np.asarray(data.V, dtype=np.float64),
                np.asarray(data.t, dtype=np.float64),
                np.asarray(data.q_ref, dtype=np.float64),
                np.asarray(data.p_ref, dtype=np.float64),
                str(data.meta.get("formula", "")),
            )
        )
    return cases


def physics_energy(name: str, q: np.ndarray, p: np.ndarray, q0: float, p0: float) -> np.ndarray:
    """|H - H0| with the analytic potential of a physics case; q, p any shape."""
    from nh_data.physics import POTENTIALS

    pot = POTENTIALS[name]
    return np.abs(pot.energy(q, p) - float(pot.energy(q0, p0)))


# ---------------------------------------------------------------- one evaluation


@dataclass
class Candidate:
    """Something to evaluate: a label, a predictor and (for timing) a torch model."""

    label: str
    predict: Predictor
    model: torch.nn.Module | None = None
    run: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_model(cls, label: str, model: torch.nn.Module, device="cpu", batch_size=2048, **kw) -> Candidate:
        return cls(label, model_predictor(model, device, batch_size), model, **kw)


def float64_predictor(candidate: Candidate, device, batch_size: int) -> Predictor:
    """The candidate evaluated in float64 (a float64 copy of a network's weights) for derivatives."""
    if candidate.model is None or model_dtype(candidate.model) == torch.float64:
        return candidate.predict
    import copy

    return model_predictor(copy.deepcopy(candidate.model).double(), device, batch_size)


def _energy_summary(dH: np.ndarray) -> dict[str, float]:
    per_orbit = dH.max(axis=1)
    return {
        "mean_max_abs_dH": float(np.mean(per_orbit)),
        "median_max_abs_dH": float(np.median(per_orbit)),
        "mean_abs_dH": float(np.mean(dH)),
    }


def _detj_summary(det: np.ndarray) -> dict[str, float]:
    dev = np.abs(det - 1.0)  # (B, W)
    return {
        "mean_abs_detJ_minus_1": float(np.nanmean(dev)),
        "median_abs_detJ_minus_1": float(np.nanmedian(dev)),
        "max_abs_detJ_minus_1": float(np.nanmax(dev)),
    }


def _long_time_grid(settings: EvalSettings, W: int = 100) -> np.ndarray:
    """The times of `chain`: n windows of W uniform times each, shared ends counted once."""
    n_windows = int(round(settings.t_long / settings.window))
    t_loc = np.linspace(0.0, settings.window, W)
    return np.concatenate([[0.0], *(k * settings.window + t_loc[1:] for k in range(n_windows))])


def _physics_entry(case: PhysicsCase, q_hat: np.ndarray, p_hat: np.ndarray) -> dict[str, float]:
    """Errors of one predicted orbit (W,) on a physics case, energy with the analytic V."""
    err = orbit_errors(q_hat[None], p_hat[None], case.q_ref[None], case.p_ref[None])
    dH = physics_energy(case.name, q_hat, p_hat, case.q_ref[0], case.p_ref[0])
    return {k: float(v[0]) for k, v in err.items()} | {
        "max_abs_q": float(np.max(np.abs(q_hat - case.q_ref))),
        "max_abs_p": float(np.max(np.abs(p_hat - case.p_ref))),
        "max_abs_dH": float(dH.max()),
    }


def _baselines_test(
    sub: TestData, detj_sub: TestData, settings: EvalSettings, curves: dict, progress: bool
) -> dict[str, Any]:
    """Work-precision curves, and accuracy / energy / det J at physics_dt, of each baseline integrator."""
    _log(f"work-precision of {', '.join(settings.methods)} on {len(sub.u)} test orbits", progress)
    out: dict[str, Any] = {
        "work_precision": integrator_work_precision(
            sub.V, sub.t, sub.ic, sub.q, sub.p, settings.methods, settings.dts, settings.repeats, progress
        ),
        "test": {},
    }
    curves["energy"]["t"] = sub.t
    for m in settings.methods:
        q_hat, p_hat = integrator_native(sub.V, sub.t, sub.ic, m, settings.physics_dt)
        dH = energy_error(sub.V, q_hat, p_hat, sub.ic)
        curves["energy"][f"{m} dt={settings.physics_dt:g}"] = dH
        det = jacobian_det(
            integrator_predictor(m, settings.physics_dt, native=False),
            detj_sub.V,
            detj_sub.t,
            detj_sub.ic,
            settings.eps,
        )
        out["test"][m] = {
            "dt": settings.physics_dt,
            **summarize(orbit_errors(q_hat, p_hat, sub.q, sub.p))["overall"],
            "energy": _energy_summary(dH),
            "detJ": _detj_summary(det),
        }
    return out


def _baselines_physics(cases: list[PhysicsCase], settings: EvalSettings, curves: dict) -> dict[str, Any]:
    """Each baseline integrator on each physics case: the window, and straight through to t_long."""
    from nh_data.physics import reference

    t_long = _long_time_grid(settings)
    out: dict[str, Any] = {}
    for case in cases:
        ic = np.array([[case.q_ref[0], case.p_ref[0]]])
        q_ref, p_ref = reference(case.name, t_long, float(ic[0, 0]), float(ic[0, 1]))
        curves["physics"][case.name] = {"case": case, "pred": {}}
        curves["long_time"][case.name] = {"t": t_long, "ref": (q_ref, p_ref), "err": {}}
        out[case.name] = {}
        for m in settings.methods:
            q_hat, p_hat = integrator_native(case.V[None], case.t[None], ic, m, settings.physics_dt)
            curves["physics"][case.name]["pred"][m] = (q_hat[0], p_hat[0])
            ql, pl = integrator_native(case.V[None], t_long[None], ic, m, settings.physics_dt)
            lt_err = np.sqrt((ql[0] - q_ref) ** 2 + (pl[0] - p_ref) ** 2)  # (T,)
            curves["long_time"][case.name]["err"][m] = lt_err
            out[case.name][m] = _physics_entry(case, q_hat[0], p_hat[0]) | {
                "long_time_err_end": float(lt_err[-1])
            }
    return out


def _evaluate_candidate(
    cand: Candidate,
    test: TestData | TestSplit | None,
    sub: TestData | None,
    detj_sub: TestData | None,
    cases: list[PhysicsCase],
    settings: EvalSettings,
    rk4_rows,
    curves: dict,
    device: str,
    progress: bool,
) -> dict[str, Any]:
    """Every metric of one candidate (test set, work-precision point, energy, det J, physics, long time)."""
    from tqdm.auto import tqdm

    out: dict[str, Any] = {"run": cand.run, **cand.info}
    if test is not None:
        errs: dict[str, list[np.ndarray]] = {k: [] for k in ("mse_q", "mse_p", "loss", "rel_l2")}
        bs = settings.batch_size
        for b in tqdm(
            test.batches(bs),
            total=-(-len(test.u) // bs),
            desc=f"{cand.label}: test set",
            unit="batch",
            disable=not progress,
            file=sys.stderr,
            leave=False,
        ):
            q_hat, p_hat = cand.predict(b.V, b.t, b.ic)
            for k, v in orbit_errors(q_hat, p_hat, b.q, b.p).items():
                errs[k].append(v)
        out["test"] = summarize({k: np.concatenate(v) for k, v in errs.items()}, test.u)

        q_hat, p_hat = cand.predict(sub.V, sub.t, sub.ic)
        dH = energy_error(sub.V, q_hat, p_hat, sub.ic)
        curves["energy"][cand.label] = dH
        out["energy"] = _energy_summary(dH)
        # the learned map is the function the weights define: evaluate it in float64, so that
        # finite differences resolve det J far below float32's round-off
        det = jacobian_det(
            float64_predictor(cand, device, settings.batch_size),
            detj_sub.V,
            detj_sub.t,
            detj_sub.ic,
            settings.eps,
        )
        out["detJ"] = _detj_summary(det) | {"eps": settings.eps}
        if cand.model is not None:
            timing = time_model(
                cand.model, sub.V, sub.t, sub.ic, device, settings.batch_size, settings.repeats
            )
        else:
            seconds = _best_time(lambda: cand.predict(sub.V, sub.t, sub.ic), settings.repeats)
            timing = {"time_per_traj_s": seconds / len(sub.u), "batch": len(sub.u), "device": "cpu"}
        out["work_precision"] = timing | {
            "loss": float(np.mean(orbit_errors(q_hat, p_hat, sub.q, sub.p)["loss"]))
        }
        curves["work_precision"][cand.label] = out["work_precision"]
        if rk4_rows:
            out["rk4_equal_cost"] = equal_cost(rk4_rows, timing["time_per_traj_s"])
    out["physics"] = {}
    for case in cases:
        ic = np.array([[case.q_ref[0], case.p_ref[0]]])
        q_hat, p_hat = cand.predict(case.V[None], case.t[None], ic)
        curves["physics"][case.name]["pred"][cand.label] = (q_hat[0], p_hat[0])
        lt = curves["long_time"][case.name]
        _, ql, pl = chain(
            cand.predict, case.V[None], ic, int(round(settings.t_long / settings.window)), settings.window
        )
        lt_err = np.sqrt((ql[0] - lt["ref"][0]) ** 2 + (pl[0] - lt["ref"][1]) ** 2)  # (T,)
        lt["err"][cand.label] = lt_err
        out["physics"][case.name] = _physics_entry(case, q_hat[0], p_hat[0]) | {
            "long_time_err_end": float(lt_err[-1]),
            "long_time_err_max": float(lt_err.max()),
        }
    if cases:
        out["physics_mean_loss"] = float(np.mean([v["loss"] for v in out["physics"].values()]))
    return out


def evaluate_candidates(
    candidates: list[Candidate],
    test: TestData | TestSplit | None,
    cases: list[PhysicsCase],
    settings: EvalSettings | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate the baseline integrators, then every candidate, on the same orbits.

    Returns (metrics, curves): metrics is JSON-ready; curves holds the arrays
    the plots need. `test` may be None (physics only) and `cases` empty.
    """
    settings = settings or EvalSettings()
    metrics: dict[str, Any] = {"settings": asdict(settings), "integrators": {}, "runs": {}}
    curves: dict[str, Any] = {"physics": {}, "long_time": {}, "energy": {}, "work_precision": {}}
    sub = detj_sub = None
    if test is not None:
        n = len(test.u)
        rng = np.random.default_rng(settings.seed)
        sub = test.take(np.sort(rng.choice(n, size=min(settings.n_sub, n), replace=False)))
        detj_sub = sub.take(np.arange(min(settings.n_detj, len(sub.u))))
        metrics["data"] = {
            "dir": test.source,
            "n_test": int(n),
            "n_sub": len(sub.u),
            "n_detj": len(detj_sub.u),
        }
        metrics["integrators"].update(_baselines_test(sub, detj_sub, settings, curves, progress))
    metrics["integrators"]["physics"] = _baselines_physics(cases, settings, curves)
    rk4_rows = metrics["integrators"].get("work_precision", {}).get("rk4")
    for cand in candidates:
        _log(f"evaluating {cand.label}", progress)
        metrics["runs"][cand.label] = _evaluate_candidate(
            cand, test, sub, detj_sub, cases, settings, rk4_rows, curves, device, progress
        )
    return _json_safe(metrics), curves


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return finite(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# ---------------------------------------------------------------- nh eval


def _labels(runs: list[str]) -> list[str]:
    labels: list[str] = []
    for r in runs:
        base = Path(r).resolve().name or str(r)
        label, k = base, 2
        while label in labels:
            label, k = f"{base}#{k}", k + 1
        labels.append(label)
    return labels


def write_outputs(metrics: dict[str, Any], curves: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """metrics.json, report.md and the PNG plots into `out_dir`; returns the report's path."""
    from . import plots
    from .report import render_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = plots.make_all(curves, metrics, out)
    metrics["plots"] = [p.name for p in images]
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    report = out / "report.md"
    write_text_atomic(report, render_report(metrics, images))
    return report


def resolve_device(device: str) -> str:
    """'auto' -> cuda if available else cpu; a CUDA device without CUDA is an NHError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NHError(f"device {device!r} requested but CUDA is not available")
    elif device != "cpu":
        raise NHError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N, auto")
    return device


def evaluate_runs(
    runs: list[str | os.PathLike],
    data_dir: str | os.PathLike | None = None,
    physics: str = "all",
    physics_dir: str | os.PathLike = "parquet_data/physics",
    device: str = "cpu",
    out_dir: str | os.PathLike = "runs/eval",
    settings: EvalSettings | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], Path]:
    """`nh eval`: load each run's best checkpoint, evaluate, write metrics.json, report.md, plots.

    data_dir None: the data folder the first run was trained on (recorded in its
    checkpoint); if that is gone too, the test-set parts are skipped with a note.
    physics: "all", "none" or "name,name". Returns (metrics, path of report.md).
    """
    from .checkpoint import build_model, checkpoint_path, load_checkpoint

    if not runs:
        raise NHError("give at least one run folder")
    retain_freed_memory()  # steady model timings: no page faults on every batch (runtime.py)
    device = resolve_device(device)
    settings = settings or EvalSettings()
    names = physics_names(physics)
    paths = [checkpoint_path(r, "best") for r in runs]  # NHError for a missing folder or checkpoint
    if data_dir is not None and not Path(data_dir).is_dir():
        raise NHError(f"data directory {str(data_dir)!r} does not exist")
    candidates = []
    for label, r, path in zip(_labels([str(r) for r in runs]), runs, paths, strict=True):
        ckpt = load_checkpoint(path, device)
        model = build_model(ckpt, device)
        if data_dir is None and ckpt.get("data_dir") and Path(ckpt["data_dir"]).is_dir():
            data_dir = ckpt["data_dir"]
            _log(f"test data: {data_dir} (where {label} was trained)", progress)
        n_params = sum(p.numel() for p in model.parameters())
        candidates.append(
            Candidate.from_model(
                label,
                model,
                device,
                settings.batch_size,
                run=str(r),
                info={"model": model.name, "n_params": int(n_params)},
            )
        )
    if data_dir is None:
        if not names:
            raise NHError("nothing to evaluate: no test data (give --data) and --physics none")
        _log(
            "no test data (give --data): test-set metrics, work-precision, energy and det J skipped", progress
        )
    test = TestSplit(data_dir, settings.max_test, settings.seed) if data_dir is not None else None
    cases = load_physics_cases(physics_dir, names, progress)
    metrics, curves = evaluate_candidates(candidates, test, cases, settings, device, progress)
    metrics["device"] = device
    report = write_outputs(metrics, curves, out_dir)
    return metrics, report
