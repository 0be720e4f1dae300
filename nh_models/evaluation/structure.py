"""Structure beyond MSE: energy error |H(q, p) - H(q0, p0)| along predicted trajectories,
det d(q, p)(t) / d(q0, p0) (a symplectic flow keeps it 1) by finite differences for any
predictor and by automatic differentiation for a network, and long-time prediction by
chaining windows (end state -> next ic: `chain` on a uniform grid, `chained` at any times, as
`nh predict` and the per-window calibration chain them)."""

from __future__ import annotations

import warnings

import numpy as np

from nh_data.problem import T_END, WINDOW

from .oracle import Predictor, energy
from .settings import EvalSettings


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

    # an orbit whose prediction blew up (an integrator past its stability limit) gives a
    # non-finite det J, which the nan-aware summaries skip: no warning per array operation
    with np.errstate(invalid="ignore", over="ignore"):
        dq_dq0, dp_dq0 = derivative(coef, "q0")
        dq_dp0, dp_dp0 = derivative(np.tile(_CENTRAL4, (B, 1)), "p0")
        return dq_dq0 * dp_dp0 - dq_dp0 * dp_dq0


def autograd_jacobian_det(model, V: np.ndarray, t: np.ndarray, ic: np.ndarray, device="cpu",
                          batch_size: int = 256) -> np.ndarray | None:  # fmt: skip
    """det J(t), J = d(q, p)(t) / d(q0, p0), of a network by automatic differentiation of a
    float64 copy of its weights; (B, W). None when the module's outputs carry no gradient (a
    module that computes outside torch, such as the integrator oracle).

    Exact to round-off, where finite differences keep a truncation floor wherever the flow
    map bends sharply (near a separatrix a fourth-order stencil still errs by 1e-2 and more).
    Forward mode (two Jacobian-vector products, one per direction of (q0, p0)) where every
    operation of the network supports it; otherwise reverse mode, one backward pass per query
    time, batched over the times (vmap) or, for operations without a batching rule, in turn.
    """
    import copy

    import torch

    net = copy.deepcopy(model).double().eval()
    if hasattr(net, "for_derivatives"):  # an OperatorModel: its form every AD mode supports
        net = net.for_derivatives()
    dev = torch.device(device)
    t = np.broadcast_to(np.atleast_2d(t), (V.shape[0], np.shape(t)[-1]))
    batches = [[torch.as_tensor(np.array(a[s : s + batch_size]), dtype=torch.float64, device=dev)
                for a in (V, t, ic)] for s in range(0, V.shape[0], batch_size)]  # fmt: skip
    if batches:  # one orbit with a graph: does the output depend on ic through torch at all?
        with torch.enable_grad():
            q, p = net(*(x[:1] for x in batches[0][:2]), batches[0][2][:1].clone().requires_grad_(True))
        if not (q.requires_grad and p.requires_grad):
            return None
    out = []
    for Vb, tb, icb in batches:
        cols = _forward_mode(net, Vb, tb, icb)
        if cols is None:  # the graph of a reverse pass, built only where forward mode failed
            icb = icb.clone().requires_grad_(True)
            with torch.enable_grad():
                q, p = net(Vb, tb, icb)
            cols = _reverse_mode(q, p, icb)
        (dq_dq0, dp_dq0), (dq_dp0, dp_dp0) = cols  # each (b, W)
        out.append((dq_dq0 * dp_dp0 - dq_dp0 * dp_dq0).detach().cpu().numpy())
    return np.concatenate(out)


def candidate_jacobian_det(model, predict: Predictor, V: np.ndarray, t: np.ndarray, ic: np.ndarray, eps: float,
                           device="cpu") -> tuple[np.ndarray, dict]:  # fmt: skip
    """det J(t) of what `nh eval` scores, and how it was computed: a network (`model`) by
    automatic differentiation; any other predictor, and the orbits where a network is not
    differentiable (a non-finite derivative, e.g. the square root of a kinetic energy that is
    zero at a wall start), by finite differences of the float64 `predict`; (B, W), info."""
    det = None if model is None else autograd_jacobian_det(model, V, t, ic, device)
    if det is None:
        return jacobian_det(predict, V, t, ic, eps), {"method": "finite differences", "eps": eps}
    info: dict = {"method": "autograd"}
    bad = ~np.isfinite(det).all(axis=1)
    if bad.any():
        t = np.broadcast_to(np.atleast_2d(t), det.shape)
        det[bad] = jacobian_det(predict, V[bad], t[bad], ic[bad], eps)
        info |= {"finite_difference_orbits": int(bad.sum()), "eps": eps}
    return det, info


def _forward_mode(net, V, t, ic):
    """((dq/dq0, dp/dq0), (dq/dp0, dp/dp0)) by two Jacobian-vector products, or None when an
    operation of the network has no forward-mode rule."""
    import torch

    try:
        cols = []
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for k in range(2):
                e = torch.zeros_like(ic)
                e[:, k] = 1.0
                cols.append(torch.func.jvp(lambda x: net(V, t, x), (ic,), (e,))[1])
        return cols
    except (RuntimeError, NotImplementedError):
        return None


def _reverse_mode(q, p, ic):
    """The same by backward passes, one per query time: rows do not interact, so
    d sum_b q[b, w] / d ic[b] = d q[b, w] / d ic[b]."""
    import torch

    W = q.shape[1]
    eye = torch.eye(W, dtype=q.dtype, device=q.device)[:, None, :].expand(W, q.shape[0], W)
    try:
        with warnings.catch_warnings():  # a slow fallback of vmap is still right
            warnings.simplefilter("ignore", UserWarning)
            dq, dp = (torch.autograd.grad(y, ic, eye, retain_graph=True, is_grads_batched=True)[0]
                      for y in (q, p))  # fmt: skip  # (W, b, 2)
    except RuntimeError:  # an operation without a batching rule: one backward per time
        dq, dp = (torch.stack([torch.autograd.grad(y[:, w].sum(), ic, retain_graph=True)[0] for w in range(W)])
                  for y in (q, p))  # fmt: skip
    return (dq[..., 0].T, dp[..., 0].T), (dq[..., 1].T, dp[..., 1].T)


def chain(
    predict: Predictor, V: np.ndarray, ic: np.ndarray, n_windows: int, window: float = T_END, W: int = WINDOW
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


def window_of(t: np.ndarray, window: float = T_END) -> np.ndarray:
    """The chained window (0-based) that answers each time: t in (k T, (k + 1) T] -> k; t = 0 -> 0."""
    return np.maximum(np.ceil(t / window - 1e-12).astype(np.int64) - 1, 0)


def chained(predictor, V: np.ndarray, ic: np.ndarray, t: np.ndarray, window: float = T_END):
    """q, p at times t (any order), windows chained as `nh eval` chains them: one orbit (V (100,),
    ic (2,), t (N,) -> (N,)) or a batch (V (B, 100), ic (B, 2), t (B, N) -> (B, N)).

    A batch is predicted window by window, all its orbits at once (those with the same number of
    times in the window in one call); one orbit is the batch of one."""
    single = np.ndim(V) == 1
    V = np.atleast_2d(V)
    ic = np.asarray(ic, dtype=np.float64).reshape(-1, 2)
    t = np.atleast_2d(np.asarray(t, dtype=np.float64))
    k = window_of(t, window)  # (B, N) window of each time
    n_windows = int(k.max()) + 1
    if n_windows > 1:
        _, qc, pc = chain(predictor, V, ic, n_windows - 1, window, WINDOW)  # starts of windows 1..n-1
        starts = np.stack([qc[:, :: WINDOW - 1], pc[:, :: WINDOW - 1]], axis=2)  # (B, n_windows, 2)
    else:
        starts = ic[:, None, :]
    q = np.empty_like(t)
    p = np.empty_like(t)
    for w in np.unique(k):
        sel = k == w
        counts = sel.sum(axis=1)
        for c in np.unique(counts[counts > 0]):
            rows = np.flatnonzero(counts == c)
            mask = np.zeros_like(sel)
            mask[rows] = sel[rows]
            qw, pw = predictor(V[rows], (t[mask] - w * window).reshape(len(rows), c), starts[rows, w])
            q[mask], p[mask] = qw.reshape(-1), pw.reshape(-1)
    at0 = t == 0.0
    rows0 = np.nonzero(at0)[0]
    q[at0], p[at0] = ic[rows0, 0], ic[rows0, 1]
    return (q[0], p[0]) if single else (q, p)


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


def _long_time_grid(settings: EvalSettings, W: int = WINDOW) -> np.ndarray:
    """The times of `chain`: n windows of W uniform times each, shared ends counted once."""
    n_windows = int(round(settings.t_long / settings.window))
    t_loc = np.linspace(0.0, settings.window, W)
    return np.concatenate([[0.0], *(k * settings.window + t_loc[1:] for k in range(n_windows))])
