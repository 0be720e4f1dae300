"""Issue 24 (5): the warnings the pytest configuration silences come from a dependency, and that
filter silences exactly them. `torch.jit.script` is deprecated: torch's forward-mode AD (the
first `torch.func.jvp` of a process, in `nh eval`'s det J) imports its jvp decompositions, which
it compiles with torch.jit.script. The project never calls it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# a fresh process: the decompositions are imported (and the warnings given) once per process
PROBE = r"""
import json, sys, warnings
import numpy as np
from _pytest.config import parse_warning_filter
from nh_models import get_model
from nh_models.evaluation.structure import autograd_jacobian_det

model = get_model("deeponet", {"nodes": 8, "layers": 1, "branches": 2})
V, t, ic = np.zeros((1, 100)), np.linspace(0.0, 2.0, 100)[None], np.array([[0.5, 0.1]])
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    det = autograd_jacobian_det(model, V, t, ic)
assert det.shape == (1, 100)
loose = []
for w in seen:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in json.loads(sys.argv[1]):
            warnings.filterwarnings(*parse_warning_filter(f, escape=False))
        try:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        except Warning as exc:
            loose.append(str(exc))
print(json.dumps({"seen": [str(w.message) for w in seen], "loose": loose,
                  "jvp": "torch._decomp.decompositions_for_jvp" in sys.modules}))
"""


def test_the_jit_script_warning_comes_from_torchs_forward_mode_ad_and_only_it_is_filtered(request):
    filters = request.config.getini("filterwarnings")
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(filters)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["jvp"]  # forward mode loaded torch's jvp decompositions...
    assert any(m.startswith("`torch.jit.script` is deprecated") for m in out["seen"])  # ...which warn
    assert out["loose"] == []  # and the configuration silences every warning of that path
