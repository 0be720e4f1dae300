"""Split-conformal error bands for a trained operator, per energy stratum (calibration.json).

The band is *simultaneous* over one window: at level 1 - alpha, the whole true orbit (q and
p at every time of the window) lies inside for at least a fraction 1 - alpha of orbits
drawn like the calibration ones (the split-conformal guarantee; Vovk et al., Lei et al.
2018). The per-orbit nonconformity score is

    s = max over the window of max(|q_hat - q| / sigma_q, |p_hat - p| / sigma_p)

and the band at level 1 - alpha is q_hat +- Q sigma_q, p_hat +- Q sigma_p with Q the
ceil((n + 1)(1 - alpha'))-th smallest of the n calibration scores of the orbit's energy
stratum (infinite when that exceeds n), alpha' = (1 - margin) alpha. The margin (MARGIN,
recorded in the file) holds back a tenth of the nominal miscoverage: a 0.9 band aims at 0.91,
so that neither the calibration draw nor a test set of a few thousand orbits shows it under
its level by chance (about 1 point of sampling spread each at 1,000 orbits per stratum); it
widens a 0.9 band by a few per cent. margin 0 is the plain split-conformal band. Score kinds:

- "max":    sigma_q = sigma_p = 1 (one width for q and p);
- "scaled": sigma_q, sigma_p = the RMS errors of q and of p on a sample of the *train*
            split, fixed before calibration (so the validation scores stay exchangeable):
            q and p get widths in proportion to their typical errors.

Calibration uses the run's best checkpoint on the validation split of its data folder or,
with `fresh` = N > 0, on the orbits of N new potentials drawn like the folder's from the
engine's calibration stream (`nh_data.stream`, never a training orbit of any run): 1,000
validation orbits per stratum leave about 1 point of spread in a stratum's coverage, 20,000
about 0.2. The file is plain data (JSON): the sorted scores of every stratum, so any level can be asked,
the quantiles at LEVELS for reading, and the checkpoint's digest (a calibration made for
other weights is refused). Same run, same data -> same file, byte for byte.

Chained windows (`windows` = K > 1, `nh calibrate RUN --windows K`): a chained window starts
from a predicted state, so its errors compound and one window's band does not hold for the
next. Each window k = 1..K gets its own band, calibrated on long certified orbits of `fresh`
new potentials (the calibration stream again, integrated by the engine to t = K T with the
same certificate: `nh_data.stream.fresh_chunk(..., windows=K)`). The model predicts them
exactly as `nh predict` does (`evaluation.structure.chained`: window k answers the times in
((k - 1) T, k T] from the predicted end state of window k - 1), and window k's score is the
same nonconformity score over its times. Orbits, not windows, are the exchangeable unit, so
each window's band is a split-conformal band of its own: at level 1 - alpha, the true orbit
lies inside window k's band over the whole of window k for at least 1 - alpha of orbits,
for every k (not all K windows at once). Such a file is VERSION 2: "strata" holds window 1's
scores as a VERSION 1 file does, "later_windows" windows 2..K; VERSION 1 files still load
(one window).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nh_data.errors import NHError
from nh_data.fileio import write_json_atomic
from nh_data.problem import T_END

FILE = "calibration.json"
FORMAT = "nh-calibration"
VERSION = 2  # the version of a file with chained windows (windows > 1)
VERSION_ONE_WINDOW = 1  # a one-window file keeps version 1, byte for byte as before
VERSIONS = (1, 2)  # what loads
LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)
SCORE_KINDS = ("max", "scaled")
DEFAULT_KIND = "scaled"
POOLED = "all"  # every calibration orbit together: the band of an orbit outside the calibrated strata
MARGIN = 0.1  # the share of the nominal miscoverage a band holds back (0.9 -> 0.91)
FRESH_SEED = 0  # the seed of the calibration stream (`fresh` > 0): orbits depend on the data folder only
FRESH_CHUNK = 1000  # potentials per generated chunk of calibration orbits
N_SIGMA = 2000  # train orbits that fix sigma_q, sigma_p of the "scaled" score
BATCH = 1024
WINDOWS_FRESH = 1000  # new potentials of a calibration with windows > 1 when `fresh` is not given


def conformal_quantile(sorted_scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) level)-th smallest score (1-based); inf when that rank exceeds n."""
    if not 0.0 < level < 1.0:
        raise NHError(f"band level must lie in (0, 1), got {level!r}")
    n = len(sorted_scores)
    k = math.ceil((n + 1) * level - 1e-12)
    return float(sorted_scores[k - 1]) if 1 <= k <= n else math.inf


def target_level(level: float, margin: float) -> float:
    """The level a band of nominal `level` is calibrated at: 1 - (1 - margin)(1 - level)."""
    if not 0.0 < level < 1.0:
        raise NHError(f"band level must lie in (0, 1), got {level!r}")
    return 1.0 - (1.0 - margin) * (1.0 - level)


def nonconformity(q_hat, p_hat, q, p, sigma_q: float = 1.0, sigma_p: float = 1.0) -> np.ndarray:
    """Per-orbit score max_t max(|q_hat - q| / sigma_q, |p_hat - p| / sigma_p); inputs (B, W) -> (B,)."""
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.maximum(np.abs(q_hat - q) / sigma_q, np.abs(p_hat - p) / sigma_p).max(axis=1)
    return np.where(np.isfinite(s), s, np.inf)


@dataclass
class Calibration:
    """A loaded calibration.json: sorted scores per stratum and the score's sigmas."""

    kind: str
    sigma_q: float
    sigma_p: float
    scores: dict[str, np.ndarray]  # stratum -> sorted scores (POOLED included): window 1
    meta: dict[str, Any]
    margin: float = 0.0  # see target_level
    later: list[dict[str, np.ndarray]] = field(default_factory=list)  # windows 2..K, like `scores`

    @property
    def strata(self) -> list[str]:
        return [s for s in self.scores if s != POOLED]

    @property
    def windows(self) -> int:
        """K: the chained windows calibrated (window k covers t in ((k - 1) T, k T])."""
        return 1 + len(self.later)

    def window_scores(self, window: int = 1) -> dict[str, np.ndarray]:
        """The sorted scores per stratum of chained window `window` (1-based, <= `windows`)."""
        if not 1 <= window <= self.windows:
            raise NHError(f"window {window} is not calibrated (windows 1 to {self.windows})")
        return self.scores if window == 1 else self.later[window - 2]

    def quantile(self, stratum: str, level: float, window: int = 1) -> float:
        """Q of the stratum at `level` in chained `window` (the pooled scores for a stratum not calibrated)."""
        scores = self.window_scores(window)
        return conformal_quantile(scores.get(stratum, scores[POOLED]), target_level(level, self.margin))

    def half_widths(self, stratum: str, level: float, window: int = 1) -> tuple[float, float]:
        """Half-widths (of the q band, of the p band) for an orbit of `stratum` at `level` in `window`."""
        Q = self.quantile(stratum, level, window)
        return Q * self.sigma_q, Q * self.sigma_p

    def scores_of(self, q_hat, p_hat, q, p) -> np.ndarray:
        return nonconformity(q_hat, p_hat, q, p, self.sigma_q, self.sigma_p)


def _split_arrays(data_dir, split: str, rows: np.ndarray | None = None):
    """V, t, ic, q, p (float64 numpy) and u of a split (or of `rows` of it)."""
    import torch

    from .data import ShardDataset

    ds = ShardDataset(data_dir, split, dtype=torch.float64)
    idx = np.arange(len(ds)) if rows is None else rows
    u = np.asarray(ds.column("u"), dtype=np.float64)[idx]
    out = {k: [] for k in ("V", "t", "ic", "q", "p")}
    for s in range(0, len(idx), BATCH):
        b = ds.get_batch(idx[s : s + BATCH])
        for k in out:
            out[k].append(b[k].double().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}, u, len(ds)


def _predict_all(predict, a: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return predict(a["V"], a["t"], a["ic"])


def fit_sigmas(predict, data_dir, seed: int = 0) -> tuple[float, float]:
    """RMS errors of q and of p on up to N_SIGMA orbits of the train split (the "scaled" score)."""
    from .data import has_split

    if not has_split(data_dir, "train"):
        raise NHError(f"{data_dir} has no train split to fix the scaled score; use kind 'max'")
    import torch

    from .data import ShardDataset

    n = len(ShardDataset(data_dir, "train", dtype=torch.float64))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(N_SIGMA, n), replace=False))
    a, _, _ = _split_arrays(data_dir, "train", rows)
    q_hat, p_hat = _predict_all(predict, a)
    sq = float(np.sqrt(np.mean((q_hat - a["q"]) ** 2)))
    sp = float(np.sqrt(np.mean((p_hat - a["p"]) ** 2)))
    if not (math.isfinite(sq) and math.isfinite(sp) and sq > 0 and sp > 0):
        raise NHError(
            "the run's errors on the train split are not finite and positive; cannot scale the score"
        )
    return sq, sp


def _check_fresh(potentials) -> None:
    if isinstance(potentials, bool) or not isinstance(potentials, (int, np.integer)) or potentials < 1:
        raise NHError(f"--fresh must be a positive number of potentials, got {potentials!r}")


def _chunk_arrays(config: dict, seed: int, index: int, size: int, stream: str, windows: int) -> dict:
    """The float64 columns V, t, ic, q, p, u of one fresh chunk (a pool task: module level)."""
    from nh_data.stream import fresh_chunk

    c = fresh_chunk(config, seed, index, size, stream=stream, windows=windows)
    c["ic"] = np.stack([c["q0"], c["p0"]], axis=1)
    return {k: np.asarray(c[k], dtype=np.float64) for k in ("V", "t", "ic", "q", "p", "u")}


def fresh_arrays(data_dir, potentials: int, progress: bool = False, *, windows: int = 1,
                 stream: str = "calibration", seed: int = FRESH_SEED):  # fmt: skip
    """V, t, ic, q, p (float64) and u of the orbits of `potentials` new potentials drawn like the
    folder's from the calibration stream (FRESH_SEED), in chunks of FRESH_CHUNK; and their count.
    windows > 1: long orbits to t = windows T (t, q, p: (n, windows (W - 1) + 1)); `stream` and
    `seed` pick another stream (`nh_data.stream`)."""
    from nh_data.progress import iterate
    from nh_data.stream import read_build_config

    _check_fresh(potentials)
    config = read_build_config(data_dir)
    size = min(int(potentials), FRESH_CHUNK)
    chunks = -(-int(potentials) // size)
    out: dict[str, list] = {k: [] for k in ("V", "t", "ic", "q", "p", "u")}
    for index in iterate(range(chunks), desc="calibration orbits", unit="chunk", enabled=progress):
        c = _chunk_arrays(config, seed, index, min(size, potentials - index * size), stream, windows)
        for k in out:
            out[k].append(c[k])
    a = {k: np.concatenate(v) for k, v in out.items()}
    u = a.pop("u")
    return a, u, len(u)


def _strata_scores(s: np.ndarray, labels: np.ndarray, margin: float) -> dict[str, Any]:
    """calibration.json's "strata" of the scores `s` (n,) of orbits with stratum `labels`."""
    from .evaluation.metrics import STRATA, WALL

    strata: dict[str, Any] = {}
    for name in [x[0] for x in STRATA] + [WALL, POOLED]:
        sel = np.sort(s if name == POOLED else s[labels == name])
        if len(sel):
            strata[name] = {
                "n": int(len(sel)),
                "quantiles": {
                    f"{lv:g}": _finite(conformal_quantile(sel, target_level(lv, margin))) for lv in LEVELS
                },
                "scores": [float(x) if math.isfinite(x) else None for x in sel],
            }
    return strata


def window_errors(predict, V, ic, t, q, p, windows: int) -> np.ndarray:
    """(n, windows, 2): max |q_hat - q| and max |p_hat - p| over each chained window k = 1..windows
    (the times in ((k - 1) T, k T], t = 0 in window 1) of orbits V (n, 100), ic (n, 2), t, q, p
    (n, N), the predictor chained exactly as `nh predict` chains it (`evaluation.structure.chained`).
    A non-finite error counts as inf; NaN: the orbit has no time in that window."""
    from .evaluation.structure import chained, window_of

    q_hat, p_hat = chained(predict, V, ic, t)
    k = window_of(t)  # (n, N) 0-based
    out = np.full((len(V), windows, 2), np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        for j, (x_hat, x) in enumerate(((q_hat, q), (p_hat, p))):
            d = np.abs(x_hat - x)
            d = np.where(np.isfinite(d), d, np.inf)
            for w in range(windows):
                sel = k == w
                m = np.where(sel, d, -np.inf).max(axis=1)
                out[:, w, j] = np.where(sel.any(axis=1), m, np.nan)
    return out


def scores_from_errors(errors: np.ndarray, sigma_q: float = 1.0, sigma_p: float = 1.0) -> np.ndarray:
    """(n, windows) nonconformity scores from `window_errors`' maxima: max(max|dq| / sigma_q,
    max|dp| / sigma_p) is `nonconformity` over the window, bit for bit (dividing by a positive
    number keeps the order); inf where an error is; NaN where the orbit has no time in the window."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.maximum(errors[..., 0] / sigma_q, errors[..., 1] / sigma_p)


def long_orbit_errors(predictors: list, data_dir, potentials: int, windows: int, *, stream: str = "calibration",
                      seed: int = FRESH_SEED, workers: int = 1, progress: bool = False):  # fmt: skip
    """`window_errors` of each predictor on the long orbits (to t = windows T) of `potentials` new
    potentials drawn like `data_dir`'s from the fresh `stream` of `seed`, chunk by chunk (the
    orbits themselves are never all held at once); returns ([(n, windows, 2) per predictor], u (n,)).

    `workers` processes draw and certify the chunks while this one predicts; the result does
    not depend on how many (a chunk is a pure function of its index, and chunks are put
    together in index order)."""
    from nh_data.progress import bar
    from nh_data.stream import check_windows, read_build_config

    _check_fresh(potentials)
    windows = check_windows(windows)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise NHError(f"--workers must be a positive integer, got {workers!r}")
    config = read_build_config(data_dir)
    size = min(int(potentials), FRESH_CHUNK)
    chunks = -(-int(potentials) // size)
    tasks = [(config, seed, i, min(size, potentials - i * size), stream, windows) for i in range(chunks)]
    errors: list[list] = [[None] * chunks for _ in predictors]
    us: list = [None] * chunks
    desc = f"{stream} orbits to t = {windows * T_END:g}"
    with bar(chunks, desc=desc, unit="chunk", enabled=progress) as b:

        def done(i: int, a: dict) -> None:
            us[i] = a["u"]
            for j, predict in enumerate(predictors):
                errors[j][i] = window_errors(predict, a["V"], a["ic"], a["t"], a["q"], a["p"], windows)
            b.update(1)

        if workers == 1 or chunks == 1:
            for i, args in enumerate(tasks):
                done(i, _chunk_arrays(*args))
        else:
            from nh_data.pool import run_tasks

            run_tasks(_chunk_arrays, tasks, workers, done)
    return [np.concatenate(e) for e in errors], np.concatenate(us)


def calibrate_predictor(predict, data_dir, kind: str = DEFAULT_KIND, seed: int = 0, fresh: int = 0,
                        margin: float = MARGIN, progress: bool = False, orbits=None, windows: int = 1,
                        workers: int = 1, errors=None) -> dict[str, Any]:  # fmt: skip
    """Calibration data (JSON-ready) of a predictor on the val split of `data_dir`, or on the
    orbits of `fresh` new potentials drawn like it (`fresh_arrays`; `orbits`: what it returned,
    when several predictors are calibrated on the same orbits).

    windows = K > 1: one band per chained window k = 1..K, on the long orbits (to t = K T) of
    `fresh` new potentials (WINDOWS_FRESH when 0), chained as `nh predict` chains them
    (`long_orbit_errors`, `workers` processes drawing the orbits; `errors`: what it returned for
    this predictor, (errors (n, K, 2), u), when several predictors share the orbits)."""
    from nh_data.stream import check_windows

    from .evaluation.metrics import stratum_labels

    if kind not in SCORE_KINDS:
        raise NHError(f"calibration score must be one of {', '.join(SCORE_KINDS)}, got {kind!r}")
    if not 0.0 <= margin < 1.0:
        raise NHError(f"calibration margin must lie in [0, 1), got {margin!r}")
    windows = check_windows(windows)
    if windows > 1 and not fresh:
        fresh = WINDOWS_FRESH  # long orbits exist only fresh: a data folder's orbits end at T
    if fresh:
        _check_fresh(fresh)  # before the sigmas' predictions
    if windows > 1 and errors is None:  # first: the worker processes fork before the network runs
        (err,), u = long_orbit_errors([predict], data_dir, fresh, windows, workers=workers, progress=progress)
        errors = (err, u)
    sigma_q, sigma_p = fit_sigmas(predict, data_dir, seed) if kind == "scaled" else (1.0, 1.0)
    if windows > 1:
        err, u = errors
        n = len(u)
        where = f"{fresh} new potentials drawn like {data_dir}"
    elif fresh:
        a, u, n = fresh_arrays(data_dir, fresh, progress) if orbits is None else orbits
        where = f"{fresh} new potentials drawn like {data_dir}"
    else:
        a, u, n = _split_arrays(data_dir, "val")
        where = f"the val split of {data_dir}"
    if n < 2:
        raise NHError(f"{where} has {n} orbits; calibration needs at least 2")
    labels = stratum_labels(u)
    if windows == 1:
        q_hat, p_hat = _predict_all(predict, a)
        scores = nonconformity(q_hat, p_hat, a["q"], a["p"], sigma_q, sigma_p)[:, None]
    else:
        if err.shape[1:] != (windows, 2):
            raise NHError(f"the calibration errors hold {err.shape[1]} windows, not {windows}")
        scores = scores_from_errors(err, sigma_q, sigma_p)
    out = {
        "format": FORMAT,
        "version": VERSION_ONE_WINDOW if windows == 1 else VERSION,
        "method": "split conformal, simultaneous over the window, per energy stratum of u"
        + ("" if windows == 1 else ", per chained window"),
        "score": {"kind": kind, "sigma_q": sigma_q, "sigma_p": sigma_p},
        "margin": margin,
        "split": "fresh" if fresh else "val",
        **(
            {"fresh": {"potentials": int(fresh), "stream": "calibration", "seed": FRESH_SEED}}
            if fresh
            else {}
        ),
        "n": int(n),
        "strata": _strata_scores(scores[:, 0], labels, margin),
    }
    if windows > 1:
        from nh_data.ground_truth import CERT_TOL, LONG_ADAPTIVE_TOLS
        from nh_data.initial import orbits_per_potential
        from nh_data.stream import read_build_config

        drawn = int(fresh) * orbits_per_potential(read_build_config(data_dir)["ic"])
        out["fresh"]["rejected"] = drawn - int(n)  # orbits drawn but not kept (not certified to K T)
        out["fresh"]["certificate"] = {"cert_tol": CERT_TOL, "adaptive_tols": list(LONG_ADAPTIVE_TOLS)}
        out["windows"] = windows
        out["window_length"] = T_END
        out["later_windows"] = [
            {"window": k, "t": [(k - 1) * T_END, k * T_END],
             "strata": _strata_scores(scores[:, k - 1], labels, margin)}  # fmt: skip
            for k in range(2, windows + 1)
        ]
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def calibrate(
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    kind: str = DEFAULT_KIND,
    device: str = "cpu",
    fresh: int = 0,
    progress: bool = False,
    windows: int = 1,
    workers: int = 1,
) -> tuple[dict[str, Any], Path]:
    """`nh calibrate`: calibrate the run's best checkpoint on the val split (or on `fresh` new
    potentials drawn like it); write RUN/calibration.json.

    windows = K > 1: a band for each chained window k = 1..K, on long orbits of `fresh` new
    potentials (WINDOWS_FRESH when 0) integrated to t = K T; `workers` processes draw them.
    data_dir None: the folder the run was trained on (recorded in its checkpoint).
    Returns (the calibration data, its path).
    """
    from nh_data.stream import check_windows

    from .evaluation.predictors import model_predictor
    from .training.checkpoint import build_model, checkpoint_path, load_checkpoint

    run = Path(run_dir)
    ckpt = load_checkpoint(checkpoint_path(run, "best"), device)
    if data_dir is None:
        data_dir = ckpt.get("data_dir")
        if not data_dir or not Path(data_dir).is_dir():
            raise NHError(f"the data folder of {run} ({data_dir}) is gone; give --data DIR")
    if not Path(data_dir).is_dir():
        raise NHError(f"data directory {str(data_dir)!r} does not exist")
    windows = check_windows(windows)
    predict = model_predictor(build_model(ckpt, device), device)
    cal = calibrate_predictor(predict, data_dir, kind=kind, fresh=fresh, progress=progress, windows=windows,
                              workers=workers)  # fmt: skip
    return cal, write_calibration(run, ckpt, data_dir, cal)


def write_calibration(run_dir, ckpt: dict, data_dir, cal: dict[str, Any]) -> Path:
    """RUN/calibration.json of `calibrate_predictor`'s data for the checkpoint `ckpt` (its model,
    epoch and digest added, and the data folder), written atomically; its path."""
    cal["run"] = {"model": ckpt["model_name"], "epoch": int(ckpt["epoch"]), "digest": ckpt["digest"]}
    cal["data_dir"] = str(Path(data_dir).resolve())
    path = Path(run_dir) / FILE
    write_json_atomic(path, cal)
    return path


def from_dict(obj: dict[str, Any], where: str = FILE) -> Calibration:
    """A Calibration from calibration.json's data (NHError when it is not one)."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or obj.get("version") not in VERSIONS:
        raise NHError(f"{where} is not a Neural Hamilton calibration (format {FORMAT} v{VERSION} or older)")

    def sorted_scores(strata: dict) -> dict[str, np.ndarray]:
        return {
            k: np.sort(np.array([math.inf if x is None else float(x) for x in v["scores"]]))
            for k, v in strata.items()
        }

    try:
        score = obj["score"]
        scores = sorted_scores(obj["strata"])
        later = [sorted_scores(w["strata"]) for w in obj.get("later_windows", [])]  # version 1: none
        windows = int(obj.get("windows", 1))
        margin = float(obj.get("margin", 0.0))  # a file of before the margin: the plain band
        cal = Calibration(
            score["kind"], float(score["sigma_q"]), float(score["sigma_p"]), scores, obj, margin, later
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NHError(f"{where} is malformed ({exc!r})") from None
    if not 0.0 <= cal.margin < 1.0:
        raise NHError(f"{where} is malformed (margin {cal.margin!r} outside [0, 1))")
    if windows != cal.windows:
        raise NHError(f"{where} is malformed ({windows} windows announced, {cal.windows} held)")
    if any(POOLED not in w or not len(w[POOLED]) for w in [cal.scores, *cal.later]):
        raise NHError(f"{where} holds no scores")
    return cal


def load_calibration(run_dir: str | os.PathLike, digest: str | None = None) -> Calibration | None:
    """The run's calibration, or None when it has none. A calibration of other weights
    (`digest` given and different) is an NHError: run `nh calibrate RUN` again."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NHError(f"{path} is not valid JSON ({exc})") from None
    cal = from_dict(obj, str(path))
    if digest is not None and obj.get("run", {}).get("digest") not in (None, digest):
        raise NHError(
            f"{path} was made for other weights than the run's best checkpoint; run `nh calibrate {run_dir}`"
        )
    return cal


def calibrate_finished_run(run_dir: Path, data_dir: Path, device: str, progress: bool) -> None:
    """What `nh train` runs at its end: the scaled score, or the raw one when the data folder
    has no train split to scale it; a line on stderr."""
    try:
        cal, path = calibrate(run_dir, data_dir, kind=DEFAULT_KIND, device=device)
    except NHError:
        cal, path = calibrate(run_dir, data_dir, kind="max", device=device)
    if progress:
        q = cal["strata"][POOLED]["quantiles"]["0.9"]
        print(f"calibrated on {cal['n']} val orbits ({cal['score']['kind']} score, Q0.9 = {q}): {path}",
              file=sys.stderr)  # fmt: skip
