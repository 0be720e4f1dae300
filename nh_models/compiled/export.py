"""What the compiled forward map (`compiled.processed`) needs of a SympONet: `export(model)`.

Only what `compiled.processed` implements is exported; anything else is refused with one NHError
line naming the reason (the torch model stays the reference and the fallback):
`grid: processed`, `readout: step`, `scaled` or `corrected`, the linear dictionary alone when the correction is applied
(`local_layers: 0`; a CNN would need its convolutions compiled too). With `learned: false` only
the prior runs, whatever the correction is.
"""

from __future__ import annotations

import numpy as np

from nh_data.errors import NHError

from ..models.correction import FEATURES, LINEAR_GAIN, OUTPUTS


def why_not(model) -> str | None:
    """The reason `export` refuses `model`, or None if it compiles."""
    c = getattr(model, "config", None)
    if getattr(model, "name", None) != "symponet" or c is None:
        return f"only SympONet compiles, got {type(model).__name__}"
    if c.grid != "processed":
        return f"only grid processed compiles, got grid {c.grid}"
    if c.readout not in ("step", "scaled", "corrected"):
        return f"only readouts step, scaled and corrected compile, got readout {c.readout}"
    if c.learned and c.readout == "scaled" and c.tables == "own":
        return "readout scaled with tables own does not compile"
    if c.learned and model.local.cnn is not None:
        return f"only the linear dictionary compiles (local_layers: 0), got local_layers {c.local_layers}"
    return None


def export(model) -> dict:
    """The compiled model's parameters: `weights` (3, 9) float64, the linear map from the raw
    dictionary features (V - V0, V', V'', V''', V'^2, V'^2 V'', V''^2, V' V''', V'^4) at each
    sensor to (dV, a, b) there, h^2 LINEAR_GAIN w / (typical size) folded in; `subs` the prior's
    substep weights; `steps`; `learned` (0 or 1); `local` (the tables: 0 `spline`, 1 `local`,
    whose first row maps the features' slopes to dF, 2 `own`, `compiled.processed.own_setup`, 3
    `inline`, `compiled.stepping.inline_force`);
    `scaled` (1: `readout: scaled`); `corrected` (1: `readout: corrected`) and `generator` (2,),
    the read-out generator's weights in the textbook's units (zero without one). Raises NHError
    if the model does not compile."""
    reason = why_not(model)
    if reason is not None:
        raise NHError(f"cannot compile {getattr(model, 'name', type(model).__name__)}: {reason}")
    from ..models.symponet import PRIORS

    c = model.config
    scale = np.array(list(FEATURES.values()), dtype=np.float64)
    w = model.local.linear.weight.detach().double().cpu().numpy()[:, :, 0]  # (3, 9)
    assert w.shape == (len(OUTPUTS), len(FEATURES))
    weights = np.ascontiguousarray(model.local.h2 * LINEAR_GAIN * w / scale[None, :])
    g = model.local.generator_weights() if hasattr(model, "local") else None
    gen = np.zeros(2) if g is None else g.detach().double().cpu().numpy().copy()
    return {
        "weights": weights,
        "subs": np.array(PRIORS[c.prior], dtype=np.float64),
        "steps": int(c.steps),
        "learned": int(bool(c.learned)),
        "local": {"spline": 0, "local": 1, "own": 2, "inline": 3}[c.tables],
        "scaled": int(c.readout == "scaled"),
        "corrected": int(c.readout == "corrected"),
        "generator": gen,
    }
