"""Certified ground truth: integrate orbits, estimate each orbit's error, keep or reject.

Default method, ``dop853`` (chosen by measurement, see docs/benchmarks.md): the
knot-aware adaptive Dormand-Prince 8(5,3) of `adaptive` (dense output) run
twice, at rtol = atol = 1e-10 (A) and 1e-12 (B). The stored orbit is B and its error estimate
is err_est = max over stored times of max(|q_A - q_B|, |p_A - p_B|), an
estimate of A's error and so a generous bound on B's (floored at 1e-10, see
`ERR_FLOOR`; measured on 1,200 orbits: true error / err_est <= 0.90). If
err_est > 1e-8 the orbit is refined once more (C at 1e-14, err_est = |B - C|, store C) before it
is rejected as "not certified".

Fixed-step methods (``--integrator yoshida8 --dt 1e-3``, the paper's way):
the orbit integrated at dt is stored, and certified against the default
engine's certified orbit: err_est = max |x_dt - x_ref| + err_ref; the same
1e-8 certificate applies. (Step doubling was tried first and measured
unreliable here: at the knots the error is not a smooth function of dt, and
dt vs dt/2 underestimated the true error by up to 67x.)

Every kept orbit also passes: finite values, stays in [0, 1] (to 1e-9), and
energy drift max |H - E0| < 1e-4 (V0 - min V) (SPEC section 4).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .adaptive import DOP853, NON_FINITE, OK, make_adaptive_orbit
from .errors import NHError
from .integrators import METHODS, _integrate_one, _method_arrays, get_method
from .jit_options import JIT
from .spline import V_pp, dV_pp

#: every stored orbit must be within this of the exact solution (q and p, every stored time)
CERT_TOL = 1e-8
#: adaptive tolerance ladder: A, B and the refinement C
ADAPTIVE_TOLS = (1e-10, 1e-12, 1e-14)
#: the ladder of long orbits (chained windows to t = K T, `build.sample_rows(windows=K)`): the
#: same certificate (err_est = |A - B|, or |B - C| after the refinement, <= CERT_TOL), one decade
#: tighter at the bottom. Over t = 20 the default ladder's B (1e-12) itself errs by up to 4e-7,
#: so |B - C| rejected 2.2 % of strata orbits (43 of 2,000), and not at random: near-separatrix
#: orbits, the ones a network also gets wrong (leaving them out raised a band's coverage by a
#: point). This ladder rejects 0.15 % (3 of 2,000) and costs 20 % fewer force evaluations.
LONG_ADAPTIVE_TOLS = (1e-12, 1e-13, 1e-14)
#: output times from DOP853's dense output (True) or by ending a step on each of them (False)
DENSE = True
#: err_est never goes below this: when the output times, not the tolerance, limit every step,
#: runs A and B take identical steps and agree to the last bit although B still has an error
#: (measured up to ~1e-12 against Kahan-Li 8 at dt = 2e-5; B's per-step tolerance is 1e-12)
ERR_FLOOR = 1e-10
BOX_SLACK = 1e-9
ENERGY_DRIFT = 1e-4
MAX_STEPS = 200_000
ADAPTIVE = "dop853"
DEFAULT_INTEGRATOR = ADAPTIVE
INTEGRATORS = (ADAPTIVE, *METHODS)

#: rejection reason codes (0 = kept)
REASONS = ("kept", "non_finite", "step_failure", "left_box", "energy_drift", "not_certified")
KEPT, R_NON_FINITE, R_STEP_FAILURE, R_LEFT_BOX, R_ENERGY, R_NOT_CERTIFIED = range(6)


def check_integrator(name: str | None, dt: float | None) -> tuple[str, float | None]:
    """Resolve (integrator, dt): NHError on unknown names or a missing/invalid dt."""
    name = DEFAULT_INTEGRATOR if name is None else name
    if name not in INTEGRATORS:
        raise NHError(f"unknown integrator {name!r}; valid: {', '.join(INTEGRATORS)}")
    if name == ADAPTIVE:
        if dt is not None:
            raise NHError("--dt applies to fixed-step integrators only; dop853 is adaptive")
        return name, None
    get_method(name)
    if dt is None:
        raise NHError(f"integrator {name!r} needs --dt (the paper used yoshida8 with --dt 1e-3)")
    if not (np.isfinite(dt) and 0 < dt <= 0.1):
        raise NHError(f"--dt must be in (0, 0.1], got {dt}")
    return name, float(dt)


@njit(**JIT)
def _max_diff(qa, pa, qb, pb):
    d = 0.0
    for i in range(qa.shape[0]):
        d = max(d, abs(qa[i] - qb[i]), abs(pa[i] - pb[i]))
    return d


#: DOP853 kernel specialised on the spline force (closure: cached by Numba)
_spline_orbit = make_adaptive_orbit(dV_pp)


@njit(**JIT)
def _adaptive(params, q0, p0, t, tol, kinks, tab, q_out, p_out):
    """DOP853 on the spline force; tab = (a, b, c, e5, e3, a_extra, d_dense, dense) of the pair."""
    a, b, c, e5, e3, ax, dd, dense = tab
    return _spline_orbit(
        params, q0, p0, t, tol, tol, a, b, c, e5, e3, 7.0, MAX_STEPS, kinks, dense, ax, dd, q_out, p_out
    )


@njit(**JIT)
def _judge(params, q, p, E0, escale, err):
    """Reason code for an integrated orbit q, p: (W,) with error estimate err."""
    W = q.shape[0]
    for i in range(W):
        if not (np.isfinite(q[i]) and np.isfinite(p[i])):
            return R_NON_FINITE
    for i in range(W):
        if q[i] < -BOX_SLACK or q[i] > 1.0 + BOX_SLACK:
            return R_LEFT_BOX
    drift = 0.0
    for i in range(W):
        H = 0.5 * p[i] * p[i] + V_pp(q[i], params)
        drift = max(drift, abs(H - E0))
    if not drift < ENERGY_DRIFT * escale:
        return R_ENERGY
    if not err <= CERT_TOL:
        return R_NOT_CERTIFIED
    return KEPT


@njit(**JIT)
def _certify_adaptive(params, q0, p0, t, E0, escale, tols, tab, q_out, p_out):
    """One orbit by the DOP853 ladder: returns (reason code, err_est, nfev); writes q_out, p_out."""
    W = t.shape[0]
    qa = np.empty(W)
    pa = np.empty(W)
    n = int(params[0])
    kinks = params[2 : 1 + n].copy()
    st, nfev = _adaptive(params, q0, p0, t, tols[0], kinks, tab, qa, pa)
    err = np.inf
    if st == OK:
        st, nf = _adaptive(params, q0, p0, t, tols[1], kinks, tab, q_out, p_out)
        nfev += nf
    if st == OK:
        err = max(_max_diff(qa, pa, q_out, p_out), ERR_FLOOR)
        if err > CERT_TOL:
            st, nf = _adaptive(params, q0, p0, t, tols[2], kinks, tab, qa, pa)
            nfev += nf
            err = max(_max_diff(qa, pa, q_out, p_out), ERR_FLOOR)
            q_out[:] = qa
            p_out[:] = pa
    if st == NON_FINITE:
        return R_NON_FINITE, np.inf, nfev
    if st != OK:
        return R_STEP_FAILURE, np.inf, nfev
    return _judge(params, q_out, p_out, E0, escale, err), err, nfev


@njit(**JIT)
def _certify_adaptive_batch(params, pot, q0, p0, t, E0, escale, tols, tab, q, p, err, code, nfev):
    for r in range(q0.shape[0]):
        i = pot[r]
        code[r], err[r], nfev[r] = _certify_adaptive(
            params[i], q0[r], p0[r], t[r], E0[r], escale[i], tols, tab, q[r], p[r]
        )


@njit(**JIT)
def _certify_fixed_batch(
    dV, params, pot, q0, p0, t, E0, escale, tols, tab, dt, kind, w, a, b, q, p, err, code, nfev
):
    """Fixed-step orbits (stored) certified against the engine's certified DOP853 reference.

    err_est = max |x_dt - x_ref| + err_ref, where err_ref is the reference's own estimate.
    (dV is passed as a value: this kernel compiles once per process.)
    """
    W = t.shape[1]
    qr = np.empty(W)
    pr = np.empty(W)
    for r in range(q0.shape[0]):
        i = pot[r]
        c_ref, e_ref, nf = _certify_adaptive(
            params[i], q0[r], p0[r], t[r], E0[r], escale[i], tols, tab, qr, pr
        )
        _integrate_one(dV, params[i], q0[r], p0[r], t[r], dt, kind, w, a, b, q[r], p[r])
        steps = 0  # as _integrate_one takes them: ceil(span / dt) per output interval
        for j in range(1, W):
            steps += int(np.ceil((t[r, j] - t[r, j - 1]) / dt - 1e-9))
        nfev[r] = nf + steps * max(w.shape[0], b.shape[0])
        if c_ref == R_NON_FINITE or c_ref == R_STEP_FAILURE:
            code[r] = c_ref
            err[r] = np.inf
            continue
        err[r] = _max_diff(q[r], p[r], qr, pr) + e_ref
        code[r] = _judge(params[i], q[r], p[r], E0[r], escale[i], err[r])


def certified_orbits(
    params: np.ndarray,
    pot: np.ndarray,
    q0: np.ndarray,
    p0: np.ndarray,
    t: np.ndarray,
    E0: np.ndarray,
    escale: np.ndarray,
    integrator: str | None = None,
    dt: float | None = None,
    dense: bool | None = None,
    tols: tuple[float, float, float] | None = None,
) -> dict[str, np.ndarray]:
    """Integrate and certify R orbits on M spline potentials.

    params: (M, P) packed splines; pot: (R,) potential row of each orbit;
    q0, p0, E0: (R,); t: (R, W) sorted output times from t[:, 0];
    escale: (M,) energy scale V0 - min V. Returns q, p (R, W), err_est (R,),
    code (R,) (index into `REASONS`, 0 = kept) and nfev (R,). `dense` overrides
    `DENSE` (dense output vs a step ending on every output time) for dop853; `tols` the
    tolerance ladder (default ADAPTIVE_TOLS; long orbits: LONG_ADAPTIVE_TOLS).
    """
    name, dt = check_integrator(integrator, dt)
    R, W = t.shape
    out = {
        "q": np.empty((R, W)),
        "p": np.empty((R, W)),
        "err_est": np.empty(R),
        "code": np.empty(R, dtype=np.int64),
        "nfev": np.empty(R, dtype=np.int64),
    }
    f64 = np.float64
    args = (
        np.ascontiguousarray(params, dtype=f64),
        np.ascontiguousarray(pot, dtype=np.int64),
        np.ascontiguousarray(q0, dtype=f64),
        np.ascontiguousarray(p0, dtype=f64),
        np.ascontiguousarray(t, dtype=f64),
        np.ascontiguousarray(E0, dtype=f64),
        np.ascontiguousarray(escale, dtype=f64),
    )
    res = (out["q"], out["p"], out["err_est"], out["code"], out["nfev"])
    m = DOP853
    tab = (m.a, m.b, m.c, m.e5, m.e3, m.a_extra, m.d_dense, bool(DENSE if dense is None else dense))
    ladder = np.array(ADAPTIVE_TOLS if tols is None else tols, dtype=np.float64)
    if name == ADAPTIVE:
        _certify_adaptive_batch(*args, ladder, tab, *res)
    else:
        kind, w, a, b, _ = _method_arrays(get_method(name))
        _certify_fixed_batch(dV_pp, *args, ladder, tab, float(dt), kind, w, a, b, *res)
    return out
