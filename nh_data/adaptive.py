"""Adaptive Dormand-Prince 8(5,3) (DOP853) for H = p^2/2 + V(q), compiled with Numba.

One coefficient table (`EmbeddedRK`) and one stepper. The Butcher tableau and
the two embedded error estimators (orders 5 and 3) are those of Hairer,
Norsett & Wanner, "Solving Ordinary Differential Equations I", section II.10
(the DOP853 code); the step-size controller follows SciPy's ``DOP853`` (safety
0.9, factors in [0.2, 10], exponent -1/8, mixed 5/3 error norm,
scale = atol + rtol max(|y|, |y_new|)).

Knots: a cubic-spline force is only C1, and a step that straddles a knot
loses the method's order without its error estimate noticing. Given the
knots (`kinks`), a step whose path crosses one is shortened to end on it:
crossing time from the step's cubic Hermite path, then Newton on the step
length until the step lands within 1e-12 of the knot.

Output times, two modes: ``dense=False`` ends a step on every output time
(exact landing; after such a step the controller resumes with the step it had
proposed); ``dense=True`` steps freely to the end of the window and takes the
outputs inside a step from DOP853's 7th-order dense output (3 extra force
evaluations per step that holds outputs; the default of `ground_truth`).

Force interface as in `integrators`: ``dV(q: float, params: float64[:]) -> float``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .integrators import ExplicitRK
from .jit_options import JIT

OK, TOO_MANY_STEPS, NON_FINITE = 0, 1, 2
#: kinks closer than this to a step's start or end are treated as already reached
KINK_EPS = 1e-9
#: a step forced to end on a kink is refined (Newton on its length) until it lands this close
KINK_LAND = 1e-12
MAX_NEWTON = 4


@dataclass(frozen=True)
class EmbeddedRK:
    """Explicit RK pair: main weights b (order `order`), error weights e5/e3 over s + 1 stages
    (the last stage is f at the new point), error-estimator order `error_order`."""

    name: str
    order: int
    error_order: int
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    e5: np.ndarray
    e3: np.ndarray
    #: dense output: extra stages (rows s+1.., over all previous stages) and interpolant weights
    a_extra: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    d_dense: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def __post_init__(self) -> None:
        s = self.b.shape[0]
        if self.a.shape != (s, s) or self.c.shape != (s,) or self.e5.shape != (s + 1,):
            raise ValueError(f"{self.name}: inconsistent tableau shapes")
        if np.any(np.triu(self.a) != 0):
            raise ValueError(f"{self.name}: tableau is not explicit")
        if abs(self.b.sum() - 1.0) > 1e-14 or not np.allclose(self.a.sum(axis=1), self.c, atol=1e-14):
            raise ValueError(f"{self.name}: tableau violates sum(b) = 1 or c = row sums of a")

    def fixed_step(self) -> ExplicitRK:
        """The main formula as a fixed-step explicit RK method (for order tests)."""
        return ExplicitRK(self.name + "-fixed", self.order, self.a, self.b, self.c)


_A = np.zeros((12, 12))
_A[1, 0] = 5.26001519587677318785587544488e-2
_A[2, 0] = 1.97250569845378994544595329183e-2
_A[2, 1] = 5.91751709536136983633785987549e-2
_A[3, 0] = 2.95875854768068491816892993775e-2
_A[3, 2] = 8.87627564304205475450678981324e-2
_A[4, 0] = 2.41365134159266685502369798665e-1
_A[4, 2] = -8.84549479328286085344864962717e-1
_A[4, 3] = 9.24834003261792003115737966543e-1
_A[5, 0] = 3.7037037037037037037037037037e-2
_A[5, 3] = 1.70828608729473871279604482173e-1
_A[5, 4] = 1.25467687566822425016691814123e-1
_A[6, 0] = 3.7109375e-2
_A[6, 3] = 1.70252211019544039314978060272e-1
_A[6, 4] = 6.02165389804559606850219397283e-2
_A[6, 5] = -1.7578125e-2
_A[7, 0] = 3.70920001185047927108779319836e-2
_A[7, 3] = 1.70383925712239993810214054705e-1
_A[7, 4] = 1.07262030446373284651809199168e-1
_A[7, 5] = -1.53194377486244017527936158236e-2
_A[7, 6] = 8.27378916381402288758473766002e-3
_A[8, 0] = 6.24110958716075717114429577812e-1
_A[8, 3] = -3.36089262944694129406857109825
_A[8, 4] = -8.68219346841726006818189891453e-1
_A[8, 5] = 2.75920996994467083049415600797e1
_A[8, 6] = 2.01540675504778934086186788979e1
_A[8, 7] = -4.34898841810699588477366255144e1
_A[9, 0] = 4.77662536438264365890433908527e-1
_A[9, 3] = -2.48811461997166764192642586468
_A[9, 4] = -5.90290826836842996371446475743e-1
_A[9, 5] = 2.12300514481811942347288949897e1
_A[9, 6] = 1.52792336328824235832596922938e1
_A[9, 7] = -3.32882109689848629194453265587e1
_A[9, 8] = -2.03312017085086261358222928593e-2
_A[10, 0] = -9.3714243008598732571704021658e-1
_A[10, 3] = 5.18637242884406370830023853209
_A[10, 4] = 1.09143734899672957818500254654
_A[10, 5] = -8.14978701074692612513997267357
_A[10, 6] = -1.85200656599969598641566180701e1
_A[10, 7] = 2.27394870993505042818970056734e1
_A[10, 8] = 2.49360555267965238987089396762
_A[10, 9] = -3.0467644718982195003823669022
_A[11, 0] = 2.27331014751653820792359768449
_A[11, 3] = -1.05344954667372501984066689879e1
_A[11, 4] = -2.00087205822486249909675718444
_A[11, 5] = -1.79589318631187989172765950534e1
_A[11, 6] = 2.79488845294199600508499808837e1
_A[11, 7] = -2.85899827713502369474065508674
_A[11, 8] = -8.87285693353062954433549289258
_A[11, 9] = 1.23605671757943030647266201528e1
_A[11, 10] = 6.43392746015763530355970484046e-1
_B = np.zeros(12)
_C = np.array(
    [
        0.0,
        0.526001519587677318785587544488e-01,
        0.789002279381515978178381316732e-01,
        0.118350341907227396726757197510,
        0.281649658092772603273242802490,
        0.333333333333333333333333333333,
        0.25,
        0.307692307692307692307692307692,
        0.651282051282051282051282051282,
        0.6,
        0.857142857142857142857142857142,
        1.0,
    ]
)
_E3 = np.zeros(13)
_E5 = np.zeros(13)
_B[0] = 5.42937341165687622380535766363e-2
_B[5] = 4.45031289275240888144113950566
_B[6] = 1.89151789931450038304281599044
_B[7] = -5.8012039600105847814672114227
_B[8] = 3.1116436695781989440891606237e-1
_B[9] = -1.52160949662516078556178806805e-1
_B[10] = 2.01365400804030348374776537501e-1
_B[11] = 4.47106157277725905176885569043e-2
_E3[:12] = _B
_E3[0] -= 0.244094488188976377952755905512
_E3[8] -= 0.733846688281611857341361741547
_E3[11] -= 0.220588235294117647058823529412e-1
# E5 = (b - b_5th order); E3 = (b - b_3rd order), in the DOP853 code's form
_E5[0] = 0.1312004499419488073250102996e-1
_E5[5] = -0.1225156446376204440720569753e1
_E5[6] = -0.4957589496572501915214079952
_E5[7] = 0.1664377182454986536961530415e1
_E5[8] = -0.3503288487499736816886487290
_E5[9] = 0.3341791187130174790297318841
_E5[10] = 0.8192320648511571246570742613e-1
_E5[11] = -0.2235530786388629525884427845e-1

# dense output (7th-order interpolant): 3 extra stages and the weights of its last 4 coefficients
_A_EXTRA = np.zeros((3, 16))
_D = np.zeros((4, 16))
_A_EXTRA[0, 0] = 5.61675022830479523392909219681e-2
_A_EXTRA[0, 6] = 2.53500210216624811088794765333e-1
_A_EXTRA[0, 7] = -2.46239037470802489917441475441e-1
_A_EXTRA[0, 8] = -1.24191423263816360469010140626e-1
_A_EXTRA[0, 9] = 1.5329179827876569731206322685e-1
_A_EXTRA[0, 10] = 8.20105229563468988491666602057e-3
_A_EXTRA[0, 11] = 7.56789766054569976138603589584e-3
_A_EXTRA[0, 12] = -8.298e-3
_A_EXTRA[1, 0] = 3.18346481635021405060768473261e-2
_A_EXTRA[1, 5] = 2.83009096723667755288322961402e-2
_A_EXTRA[1, 6] = 5.35419883074385676223797384372e-2
_A_EXTRA[1, 7] = -5.49237485713909884646569340306e-2
_A_EXTRA[1, 10] = -1.08347328697249322858509316994e-4
_A_EXTRA[1, 11] = 3.82571090835658412954920192323e-4
_A_EXTRA[1, 12] = -3.40465008687404560802977114492e-4
_A_EXTRA[1, 13] = 1.41312443674632500278074618366e-1
_A_EXTRA[2, 0] = -4.28896301583791923408573538692e-1
_A_EXTRA[2, 5] = -4.69762141536116384314449447206
_A_EXTRA[2, 6] = 7.68342119606259904184240953878
_A_EXTRA[2, 7] = 4.06898981839711007970213554331
_A_EXTRA[2, 8] = 3.56727187455281109270669543021e-1
_A_EXTRA[2, 12] = -1.39902416515901462129418009734e-3
_A_EXTRA[2, 13] = 2.9475147891527723389556272149
_A_EXTRA[2, 14] = -9.15095847217987001081870187138
_D[0, 0] = -0.84289382761090128651353491142e1
_D[0, 5] = 0.56671495351937776962531783590
_D[0, 6] = -0.30689499459498916912797304727e1
_D[0, 7] = 0.23846676565120698287728149680e1
_D[0, 8] = 0.21170345824450282767155149946e1
_D[0, 9] = -0.87139158377797299206789907490
_D[0, 10] = 0.22404374302607882758541771650e1
_D[0, 11] = 0.63157877876946881815570249290
_D[0, 12] = -0.88990336451333310820698117400e-1
_D[0, 13] = 0.18148505520854727256656404962e2
_D[0, 14] = -0.91946323924783554000451984436e1
_D[0, 15] = -0.44360363875948939664310572000e1
_D[1, 0] = 0.10427508642579134603413151009e2
_D[1, 5] = 0.24228349177525818288430175319e3
_D[1, 6] = 0.16520045171727028198505394887e3
_D[1, 7] = -0.37454675472269020279518312152e3
_D[1, 8] = -0.22113666853125306036270938578e2
_D[1, 9] = 0.77334326684722638389603898808e1
_D[1, 10] = -0.30674084731089398182061213626e2
_D[1, 11] = -0.93321305264302278729567221706e1
_D[1, 12] = 0.15697238121770843886131091075e2
_D[1, 13] = -0.31139403219565177677282850411e2
_D[1, 14] = -0.93529243588444783865713862664e1
_D[1, 15] = 0.35816841486394083752465898540e2
_D[2, 0] = 0.19985053242002433820987653617e2
_D[2, 5] = -0.38703730874935176555105901742e3
_D[2, 6] = -0.18917813819516756882830838328e3
_D[2, 7] = 0.52780815920542364900561016686e3
_D[2, 8] = -0.11573902539959630126141871134e2
_D[2, 9] = 0.68812326946963000169666922661e1
_D[2, 10] = -0.10006050966910838403183860980e1
_D[2, 11] = 0.77771377980534432092869265740
_D[2, 12] = -0.27782057523535084065932004339e1
_D[2, 13] = -0.60196695231264120758267380846e2
_D[2, 14] = 0.84320405506677161018159903784e2
_D[2, 15] = 0.11992291136182789328035130030e2
_D[3, 0] = -0.25693933462703749003312586129e2
_D[3, 5] = -0.15418974869023643374053993627e3
_D[3, 6] = -0.23152937917604549567536039109e3
_D[3, 7] = 0.35763911791061412378285349910e3
_D[3, 8] = 0.93405324183624310003907691704e2
_D[3, 9] = -0.37458323136451633156875139351e2
_D[3, 10] = 0.10409964950896230045147246184e3
_D[3, 11] = 0.29840293426660503123344363579e2
_D[3, 12] = -0.43533456590011143754432175058e2
_D[3, 13] = 0.96324553959188282948394950600e2
_D[3, 14] = -0.39177261675615439165231486172e2
_D[3, 15] = -0.14972683625798562581422125276e3

DOP853 = EmbeddedRK("dop853", 8, 7, _A, _B, _C, _E5, _E3, _A_EXTRA, _D)


# ---------------------------------------------------------------- kernels


@njit(**JIT)
def _initial_h0(q, p, fq, fp, rtol, atol, span):
    """First half of the Hairer-Norsett-Wanner starting step (SciPy's select_initial_step)."""
    sq = atol + abs(q) * rtol
    sp = atol + abs(p) * rtol
    d0 = np.sqrt(((q / sq) ** 2 + (p / sp) ** 2) / 2.0)
    d1 = np.sqrt(((fq / sq) ** 2 + (fp / sp) ** 2) / 2.0)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, span)
    return h0, q + h0 * fq, p + h0 * fp


@njit(**JIT)
def _initial_h1(q, p, fq, fp, fq1, fp1, h0, rtol, atol, span, order):
    """Second half: the starting step from the force at the Euler point (fq1, fp1)."""
    sq = atol + abs(q) * rtol
    sp = atol + abs(p) * rtol
    d1 = np.sqrt(((fq / sq) ** 2 + (fp / sp) ** 2) / 2.0)
    d2 = np.sqrt((((fq1 - fq) / sq) ** 2 + ((fp1 - fp) / sp) ** 2) / 2.0) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100.0 * h0, h1, span)


@njit(**JIT)
def _hermite(q, dq, qn, dqn, x):
    """Cubic Hermite interpolant at s in [0, 1] from end values q, qn and scaled slopes dq, dqn."""
    s2 = x * x
    s3 = s2 * x
    return (2 * s3 - 3 * s2 + 1) * q + (s3 - 2 * s2 + x) * dq + (3 * s2 - 2 * s3) * qn + (s3 - s2) * dqn


@njit(**JIT)
def first_kink_crossing(q, p, qn, pn, hh, kinks, eps):
    """Earliest s in (0, 1) at which the step's cubic Hermite path q(t + s hh) crosses a kink.

    The path is sampled at s = j / 8 and a sign change of q(s) - x is refined
    by bisection. A kink within `eps` of the step's start (the orbit is on it)
    only counts if the path comes back across it after the first sample (an
    orbit that turns just beyond a knot crosses it twice); likewise a kink
    within `eps` of the end only counts before the last sample. Returns 2.0
    when no kink is crossed. Returns (s, kink position).
    """
    best = 2.0
    x_best = 0.0
    dq = hh * p
    dqn = hh * pn
    n_sub = 8
    # the Hermite path stays within [min(q, qn), max(q, qn)] widened by (4/27) (|dq| + |dqn|)
    margin = 0.15 * (abs(dq) + abs(dqn))
    q_lo = min(q, qn) - margin
    q_hi = max(q, qn) + margin
    for k in range(kinks.shape[0]):
        x = kinks[k]
        if x < q_lo or x > q_hi:
            continue
        j_first = 1 if abs(x - q) <= eps else 0  # first sample interval to inspect
        j_last = n_sub - 1 if abs(x - qn) <= eps else n_sub
        g0 = _hermite(q, dq, qn, dqn, j_first / n_sub) - x
        for j in range(j_first + 1, j_last + 1):
            sj = j / n_sub
            if sj - 1.0 / n_sub >= best:
                break
            g1 = _hermite(q, dq, qn, dqn, sj) - x
            if (g0 < 0.0) != (g1 < 0.0):
                lo = sj - 1.0 / n_sub
                hi = sj
                glo = g0
                for _ in range(40):
                    mid = 0.5 * (lo + hi)
                    gm = _hermite(q, dq, qn, dqn, mid) - x
                    if (gm < 0.0) == (glo < 0.0):
                        lo = mid
                        glo = gm
                    else:
                        hi = mid
                if 0.5 * (lo + hi) < best:
                    best = 0.5 * (lo + hi)
                    x_best = x
                break
            g0 = g1
    return best, x_best


def make_adaptive_orbit(dV):
    """Compile the adaptive single-orbit kernel for the force `dV` (an @njit ``dV(q, params)``).

    The force is bound by closure, not passed as a value, so kernels built at
    module level (e.g. for the spline force) are cached on disk by Numba.
    The kernel is ``orbit(params, q0, p0, t_out, rtol, atol, a, b, c, e5, e3,
    err_order, max_steps, kinks, dense, a_extra, d_dense, q_out, p_out) -> (status, nfev)``.
    With ``dense`` false every output time ends a step (exact landing); with
    ``dense`` true steps run to the end of the window and the outputs inside a
    step come from DOP853's 7th-order dense output (3 extra force evaluations
    per step that holds outputs). Its stages, each built here on the force:
    `_force_stages` (the start, a trial step, the dense output's extra stages) and
    `_make_orbit` (the set-up, and the loop over the steps and output times: trial step, knot
    landing, certificate, step size, outputs).
    """
    start, trial_step, dense_stages = _force_stages(dV)
    return _make_orbit(start, _make_steps(trial_step, dense_stages))


def _force_stages(dV):
    """The kernels that evaluate the force `dV`: (start, trial_step, dense_stages)."""

    @njit(**JIT)
    def _dense_stages(params, q_old, p_old, hh, s, ax, kq, kp):
        """The extra stages of the dense output (rows s + 1 ... of kq, kp)."""
        for m in range(ax.shape[0]):
            st = s + 1 + m
            dq = 0.0
            dp = 0.0
            for j in range(st):
                dq += ax[m, j] * kq[j]
                dp += ax[m, j] * kp[j]
            kq[st] = p_old + hh * dp
            kp[st] = -dV(q_old + hh * dq, params)
        return ax.shape[0]

    @njit(inline="always", **JIT)
    def _trial_step(params, q, p, fq, fp, hh, a, b, s, kq, kp):
        """Step: the stages of one trial step of length hh from (q, p) (f = (fq, fp) there), into
        kq, kp (rows 0 .. s, the last one f at the new point); returns (qn, pn)."""
        kq[0] = fq
        kp[0] = fp
        for st in range(1, s):
            dq = 0.0
            dp = 0.0
            for j in range(st):
                dq += a[st, j] * kq[j]
                dp += a[st, j] * kp[j]
            ps = p + hh * dp
            kq[st] = ps
            kp[st] = -dV(q + hh * dq, params)
        dq = 0.0
        dp = 0.0
        for j in range(s):
            dq += b[j] * kq[j]
            dp += b[j] * kp[j]
        qn = q + hh * dq
        pn = p + hh * dp
        kq[s] = pn
        kp[s] = -dV(qn, params)
        return qn, pn

    @njit(inline="always", **JIT)
    def _start(params, q, p, t_out, rtol, atol, err_order):
        """The force at the start and the first step size (Hairer-Norsett-Wanner's guess)."""
        span = t_out[t_out.shape[0] - 1] - t_out[0]
        fq = p
        fp = -dV(q, params)
        h0, q1, p1 = _initial_h0(q, p, fq, fp, rtol, atol, span)
        h = _initial_h1(q, p, fq, fp, p1, -dV(q1, params), h0, rtol, atol, span, err_order)
        # the Hairer-Norsett-Wanner guess collapses for a start at rest next to q = 0
        # (d0 ~ |q| / atol tiny, d1 large); the controller grows or shrinks h from here
        return fq, fp, max(h, 1e-10 * span)

    return _start, _trial_step, _dense_stages


def _make_orbit(start, steps_through):
    """The single-orbit kernel (`make_adaptive_orbit`): set-up, `start`, then `steps_through`."""

    @njit(**JIT)
    def orbit(params, q0, p0, t_out, rtol, atol, a, b, c, e5, e3, err_order, max_steps, kinks, dense, ax, dd,
              q_out, p_out):  # fmt: skip
        """Integrate one orbit through the sorted times t_out with the embedded pair (a, b, c, e5, e3).

        Writes q_out, p_out (W,). Returns (status, force evaluations): status OK,
        TOO_MANY_STEPS (step budget or step underflow) or NON_FINITE.
        """
        s = b.shape[0]
        kq = np.empty(s + 1 + (ax.shape[0] if dense else 0))
        kp = np.empty(kq.shape[0])
        W = t_out.shape[0]
        q_out[0] = q0
        p_out[0] = p0
        if t_out[W - 1] - t_out[0] <= 0.0:
            q_out[1:] = q0
            p_out[1:] = p0
            return OK, 1
        fq, fp, h = start(params, q0, p0, t_out, rtol, atol, err_order)
        return steps_through(params, q0, p0, fq, fp, h, t_out, rtol, atol, a, b, e5, e3, err_order, max_steps,
                             kinks, dense, ax, dd, kq, kp, q_out, p_out)  # fmt: skip

    return orbit


def _make_steps(trial_step, dense_stages):
    """The steps of one orbit and its outputs, on the force's `trial_step` and `dense_stages`."""

    @njit(**JIT)
    def steps_through(params, q, p, fq, fp, h, t_out, rtol, atol, a, b, e5, e3, err_order, max_steps, kinks,
                      dense, ax, dd, kq, kp, q_out, p_out):  # fmt: skip
        """The steps from t_out[0] (after `start`: force and first step size h) to the last output
        time; each: `trial_step`, `_land_on_kink` (steps end on the `kinks`, module docstring), the
        certificate `_step_error` < 1 and `_step_size` (one loop: Numba compiles it 6 % slower
        behind an inlined function); then the outputs, exact or dense (`_dense_outputs`)."""
        s = b.shape[0]
        Fq = np.empty(3 + dd.shape[0])
        Fp = np.empty(3 + dd.shape[0])
        expo = -1.0 / (err_order + 1.0)
        W = t_out.shape[0]
        t = t_out[0]
        nfev = 2
        steps = 0
        i = 1
        while i < W:
            t_target = t_out[W - 1] if dense else t_out[i]
            if t_out[i] <= t:
                q_out[i] = q
                p_out[i] = p
                i += 1
                continue
            rejected = False
            forced = -1.0
            x_kink = 0.0
            n_newton = 0
            while True:
                steps += 1
                if steps > max_steps or h < 1e-14:
                    return TOO_MANY_STEPS, nfev
                if forced > 0.0:
                    clipped = False
                    hh = forced
                else:
                    clipped = t + 1.01 * h >= t_target
                    hh = t_target - t if clipped else h
                qn, pn = trial_step(params, q, p, fq, fp, hh, a, b, s, kq, kp)
                nfev += s
                if kinks.shape[0] > 0 and forced < 0.0:  # knot landing: cut a step that crosses a kink
                    sx, x_kink = first_kink_crossing(q, p, qn, pn, hh, kinks, KINK_EPS)
                    if sx < 1.0:
                        forced = sx * hh
                        continue
                elif forced > 0.0 and n_newton < MAX_NEWTON:
                    new = _land_on_kink(qn, pn, hh, x_kink, t_target - t)
                    if new > 0.0:
                        forced = new
                        n_newton += 1
                        continue
                err = _step_error(q, p, qn, pn, hh, kq, kp, e5, e3, s, rtol, atol)
                if not np.isfinite(err):
                    if not (np.isfinite(qn) and np.isfinite(pn)):
                        return NON_FINITE, nfev
                accepted, h = _step_size(err, expo, hh, h, rejected, clipped, forced)
                if accepted:
                    t_old, q_old, p_old = t, q, p
                    t = t_target if clipped else t + hh
                    q, p, fq, fp = qn, pn, kq[s], kp[s]
                    break
                rejected = True
                forced = -1.0
                n_newton = 0
            if dense:
                # dense output: the output times this step holds, from DOP853's 7th-order interpolant
                if i < W - 1 and t_out[i] < t:
                    nfev += dense_stages(params, q_old, p_old, hh, s, ax, kq, kp)
                    _dense_coeffs(q_old, q, hh, kq, s, dd, Fq)
                    _dense_coeffs(p_old, p, hh, kp, s, dd, Fp)
                i = _dense_outputs(t_out, i, t, t_old, hh, q, p, q_old, p_old, Fq, Fp, q_out, p_out)
            elif clipped:
                q_out[i] = q
                p_out[i] = p
                i += 1
        return OK, nfev

    return steps_through


@njit(inline="always", **JIT)
def _land_on_kink(qn, pn, hh, x_kink, room):
    """Knot landing: a step cut at a kink crossing (from its Hermite path) is refined by Newton
    on its length (d qn / d hh = pn); returns the next length to try, or -1 once qn lands
    within KINK_LAND of the kink. A miss of delta leaves a sliver tau = delta / |p| of the
    step beyond the kink, which costs ~ h tau^2 jump(d3V/dq3) p^2 in q: the Hermite estimate
    alone (miss up to ~1e-5 on long steps) is not enough. `room`: time left to the target."""
    miss = qn - x_kink
    if abs(miss) > KINK_LAND and abs(pn) > 1e-12:
        new = hh - miss / pn
        if 0.0 < new < room:
            return new
    return -1.0


@njit(inline="always", **JIT)
def _step_error(q, p, qn, pn, hh, kq, kp, e5, e3, s, rtol, atol):
    """The step's error norm from the two embedded estimators (orders 5 and 3), mixed as in
    SciPy's DOP853, at scale atol + rtol max(|y|, |y_new|); the step passes when it is < 1."""
    sq = atol + rtol * max(abs(q), abs(qn))
    sp = atol + rtol * max(abs(p), abs(pn))
    e5q = 0.0
    e5p = 0.0
    e3q = 0.0
    e3p = 0.0
    for j in range(s + 1):
        e5q += e5[j] * kq[j]
        e5p += e5[j] * kp[j]
        e3q += e3[j] * kq[j]
        e3p += e3[j] * kp[j]
    err5 = (e5q / sq) ** 2 + (e5p / sp) ** 2
    err3 = (e3q / sq) ** 2 + (e3p / sp) ** 2
    if err5 == 0.0 and err3 == 0.0:
        return 0.0
    return abs(hh) * err5 / np.sqrt((err5 + 0.01 * err3) * 2.0)


@njit(inline="always", **JIT)
def _step_size(err, expo, hh, h, rejected, clipped, forced):
    """(accepted, next step size): the controller's factor in [0.2, 10] (safety 0.9, no growth
    right after a rejection); a step cut short (to an output time or a kink) keeps the
    controller's own h when that is larger."""
    if err < 1.0:
        factor = 10.0 if err == 0.0 else min(10.0, 0.9 * err**expo)
        if rejected:
            factor = min(1.0, factor)
        h_new = hh * factor
        return True, max(h_new, h) if (clipped or forced > 0.0) else h_new
    return False, hh * max(0.2, 0.9 * err**expo)


@njit(**JIT)
def _dense_coeffs(y_old, y_new, hh, k, s, dd, F):
    """Coefficients F (7,) of DOP853's 7th-order dense output over one step, one component.

    F0 = dy, F1 = hh f_old - dy, F2 = 2 dy - hh (f_new + f_old), F(3 + r) = hh sum_j dd[r, j] k[j].
    """
    dy = y_new - y_old
    F[0] = dy
    F[1] = hh * k[0] - dy
    F[2] = 2.0 * dy - hh * (k[s] + k[0])
    for r in range(dd.shape[0]):
        acc = 0.0
        for j in range(dd.shape[1]):
            acc += dd[r, j] * k[j]
        F[3 + r] = hh * acc


@njit(**JIT)
def _dense_at(x, y_old, F):
    """Dense output at x = (t - t_old) / hh: nested in F6..F0 with factors x, 1 - x alternating."""
    y = 0.0
    for r in range(F.shape[0] - 1, -1, -1):
        y += F[r]
        y *= x if r % 2 == 0 else 1.0 - x
    return y_old + y


@njit(inline="always", **JIT)
def _dense_outputs(t_out, i, t, t_old, hh, q, p, q_old, p_old, Fq, Fp, q_out, p_out):
    """Dense output: write the output times from i on that the step (t_old, t] holds (the step's
    end exactly, the others from the interpolant F); returns the next output index."""
    W = t_out.shape[0]
    while i < W and t_out[i] <= t:
        if t_out[i] == t:
            q_out[i] = q
            p_out[i] = p
        else:
            x = (t_out[i] - t_old) / hh
            q_out[i] = _dense_at(x, q_old, Fq)
            p_out[i] = _dense_at(x, p_old, Fp)
        i += 1
    return i


_KERNELS: dict = {}


def _kernel_for(dV):
    """The adaptive kernel for `dV`, compiled once per force function and process."""
    if dV not in _KERNELS:
        _KERNELS[dV] = make_adaptive_orbit(dV)
    return _KERNELS[dV]


def integrate_adaptive(
    dV,
    params,
    q0: float,
    p0: float,
    t_out,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    max_steps: int = 100_000,
    method: EmbeddedRK = DOP853,
    kinks=None,
    dense: bool = False,
):
    """Integrate one orbit adaptively; return (q, p, status, nfev). q, p: (W,) at the sorted t_out.

    `kinks`: sorted positions q where the force is not smooth (steps end on them).
    `dense`: interpolate the output times inside steps (DOP853 dense output)
    instead of ending a step on each of them.
    """
    if dense and method.d_dense.size == 0:
        raise ValueError(f"{method.name} has no dense output")
    kinks = np.zeros(0) if kinks is None else np.ascontiguousarray(kinks, dtype=np.float64)
    t_out = np.ascontiguousarray(t_out, dtype=np.float64)
    params = np.ascontiguousarray(params, dtype=np.float64)
    q_out = np.empty_like(t_out)
    p_out = np.empty_like(t_out)
    m = method
    status, nfev = _kernel_for(dV)(
        params,
        float(q0),
        float(p0),
        t_out,
        float(rtol),
        float(atol),
        m.a,
        m.b,
        m.c,
        m.e5,
        m.e3,
        float(m.error_order),
        int(max_steps),
        kinks,
        bool(dense),
        m.a_extra if dense else np.zeros((0, 0)),
        m.d_dense if dense else np.zeros((0, 0)),
        q_out,
        p_out,
    )
    return q_out, p_out, int(status), int(nfev)
