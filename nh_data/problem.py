"""The problem (SPEC section 1), stated once: every module that needs these facts imports them.

One particle of unit mass in a 1-D potential V(q), H(q, p) = p^2 / 2 + V(q), on the box
q in [0, L] with L = 1 and walls V(0) = V(1) = V0 = 2, over the time window t in [0, T] with
T = 2. An operator maps (V at the sensors np.linspace(0, 1, 100), initial condition (q0, p0),
W = 100 query times in the window) to (q(t_i), p(t_i)).

No torch and no other project import here: `nh_data` and `nh_models` both build on it.
"""

from __future__ import annotations

import numpy as np

V0 = 2.0  # wall height: V(0) = V(1) = V0
L = 1.0  # the box q in [0, L]
T_END = 2.0  # the time window t in [0, T]
N_SENSORS = 100  # V is sampled at N_SENSORS uniform points of [0, L]
SENSORS = np.linspace(0.0, L, N_SENSORS)  # (100,) the sensors x_i = i / 99
WINDOW = 100  # query times per orbit (t_1 = 0, t_W = T)
# the step of the fixed-step integrators the operators are compared with (`nh physics --dt`,
# `nh eval`'s physics_dt, bench/accuracy.py's RK4 baseline): not SPEC section 1, but one fact
PHYSICS_DT = 0.02

__all__ = ["L", "N_SENSORS", "PHYSICS_DT", "SENSORS", "T_END", "V0", "WINDOW"]
