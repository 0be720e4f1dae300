"""Training of the operator networks: `train` = `_plan_run`, `_set_up`, `fit`, `_finish`;
`fit -> train_epoch -> train_step` and `validate -> evaluate -> eval_step` each epoch.

    metrics = train("deeponet", load_config("deeponet"), "data/normal", "runs/deeponet-1")

Loss: 0.5 (MSE_q + MSE_p) + model.regularizer() (VaRONet's kl_weight x KL; zero otherwise);
`loss: logcosh` trains on 0.5 (mean log cosh(dq) + mean log cosh(dp)) instead, `loss: logmse` on
the mean over orbits of log MSE (validation and test stay MSE). AdamW, the ExpHyperbolicLR schedule (SPEC section 8, stepped per epoch) or
`schedule: cosine` (stepped per optimizer step, a linear warm-up over the first `warmup`
fraction, then a cosine down to infimum_lr), gradient clipping by global norm, optional bf16 autocast and torch.compile (on CUDA, and on CPU too: bf16 pays off
there only with AVX512-BF16 or AMX, compile needs a C++ compiler). Under torchrun the same code
runs DistributedDataParallel; only rank 0 writes. The run folder holds

    config.yaml          the resolved config
    checkpoint_last.pt   after every epoch: model, optimizer, scheduler, epoch, RNG states, config
    checkpoint_best.pt   the checkpoint of the lowest validation loss
    history.csv          epoch, train_loss, val_loss, lr, samples_per_s, seconds
    metrics.json         final/best validation loss, test loss, parameter count, samples/s
    loss.png             loss curves
    calibration.json     split-conformal error bands on the val split (nh_models.calibration)
    tensorboard/, wandb/ training logs with `log: tensorboard | wandb` (tracking.py)

`resume=run_dir` continues a stopped run from checkpoint_last.pt; on CPU it ends with
the same weights, bit for bit, as a run that was never stopped.

A time budget (`time_limit`, minutes; `nh train --time-limit`) is planned, not guessed: the
trainer times a few steps and a part of the validation pass on throw-away copies (RNG states
restored), then sets `epochs` and `max_steps` so that training and validation fill the
budget, and writes the planned values into config.yaml. After REPLAN_AFTER seconds of epochs
it re-plans once on the measured time per epoch (fresh-data workers, checkpoints and a busy
machine included) and stretches the schedule to the new end. A run that ends before the
re-plan can be replayed exactly with `time_limit: 0` and the recorded values; a re-planned one
depends on the machine's speed, as any time budget does. Should the machine turn slower still,
a wall-clock guard ends the run at the limit after the current step, as a normal end
(validation, checkpoints, test loss; status "time_limit"). Under torchrun the plan is rank
0's and the guard is off.

A batch loss that is not finite, or a median of the last 5 batch losses 100 times that of
the run's first 5, stops the run with one line (NHError) naming the epoch and what to change;
the run folder is kept: history.csv of the finished epochs, metrics.json (status diverged and
the reason) and the checkpoints of the last good epoch, and the line says so. (Medians, not single batches: where a few orbits
carry most of the loss, as with a prior that is already accurate, one batch holding such an
orbit is hundreds of times another and is not a divergence.)

`fresh: N` trains every epoch on N potentials drawn afresh like the data folder's (same
build configuration, the run seed's own stream, nothing written to disk; `fresh_reuse`
passes over each set), validating and testing on the folder's val and test splits.
"""

from __future__ import annotations

import collections
import copy
import itertools
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nh_data.errors import NHError
from nh_data.fileio import write_text_atomic
from nh_data.progress import bar as progress_bar
from nh_data.progress import format_seconds, write

from ..calibration import calibrate_finished_run
from ..data import ShardDataset, eval_batches, iterate_batches
from ..runtime import retain_freed_memory
from . import distributed as D
from .budget import BUDGET_MARGIN, cap_epochs, fill, plan_budget
from .checkpoint import (
    CHECKPOINT_NAMES,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_history,
)
from .config import dump_config, resolve_config
from .guard import GUARD_WINDOW, Diverged, check_loss
from .runfolder import check_resume, diverged_run, write_metrics
from .schedules import make_scheduler, reschedule
from .source import TrainSource, open_datasets
from .steps import _check_compiler, _to_device, eval_step, evaluate, train_step
from .tracking import NullTracker, check_available, open_tracker

DTYPES = {"float32": torch.float32, "float64": torch.float64}
REPLAN_AFTER = 20.0  # seconds of epochs after which a time-limited run re-plans on measured epochs


# ----------------------------------------------------------------- epoch and fit


@dataclass
class TrainState:
    """Everything `fit` advances; `epoch` counts completed epochs, `step` optimizer steps."""

    model: nn.Module  # the bare model
    net: nn.Module  # what is called: model, DDP(model) or torch.compile of it
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0
    step: int = 0
    first_loss: float | None = None  # the median of the first GUARD_WINDOW batch losses
    recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=GUARD_WINDOW))
    best_val_loss: float = math.inf
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    tracker: Any = field(default_factory=NullTracker)  # TensorBoard / W&B logs (tracking.py)


def train_epoch(
    state: TrainState,
    batches: Any,
    n_samples: int,
    train_cfg: dict[str, Any],
    *,
    device: torch.device,
    env: D.DistEnv,
    progress: bool,
    max_steps: int | None = None,
    deadline: float | None = None,
) -> tuple[float, float, float, bool]:
    """One pass over this rank's `batches` of the epoch (`n_samples` of them, for the bar).

    Stops early after `max_steps` steps, or after the step that passes the wall-clock
    `deadline` (time.perf_counter()). Returns (mean data loss over all ranks' samples,
    samples per second, seconds, whether the deadline ended it).
    """
    state.net.train()
    E = train_cfg["epochs"]
    bar = progress_bar(  # off a terminal: no bar, fit's line per epoch (and one a minute in a long epoch)
        n_samples * env.world_size,
        desc=f"epoch {state.epoch + 1}/{E}",
        unit="sample",
        enabled=progress and env.is_main,
        final=False,
        every=60.0,
        unit_scale=True,
        leave=False,
    )
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_seen = 0
    check_every = 1 if device.type == "cpu" else 16  # .item() syncs a GPU
    timed_out = False
    start = time.perf_counter()
    with bar:
        for k, batch in enumerate(batches):
            if max_steps is not None and k >= max_steps:
                break
            batch = _to_device(batch, device)
            B = batch["V"].shape[0]
            lr = state.optimizer.param_groups[0]["lr"]
            loss = train_step(
                state.net,
                state.model,
                batch,
                state.optimizer,
                grad_clip=train_cfg["grad_clip"],
                bf16=train_cfg["bf16"],
                loss_kind=train_cfg["loss"],
            )
            if train_cfg["schedule"] == "cosine":
                state.scheduler.step()
            state.step += 1
            if k % check_every == 0 or state.first_loss is None:
                value = loss.item()
                check_loss(value, state, state.epoch + 1, lr)
                state.tracker.log_step(state.step, value)
            loss_sum += loss.double() * B
            n_seen += B
            bar.update(B * env.world_size)
            if k % 10 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{loss.item():.3e}", refresh=False)
            if deadline is not None and time.perf_counter() >= deadline:
                timed_out = True
                break
    seconds = time.perf_counter() - start
    s, n = D.all_reduce_sum([float(loss_sum), float(n_seen)], env, device)
    mean = s / max(n, 1)
    if n:
        check_loss(mean, state, state.epoch + 1, state.optimizer.param_groups[0]["lr"])
    return mean, n / max(seconds, 1e-12), seconds, timed_out


def _gather_rng(env: D.DistEnv) -> list[dict[str, Any]] | None:
    if not env.distributed:
        return None
    import torch.distributed as dist

    states: list[Any] = [None] * env.world_size
    dist.all_gather_object(states, rng_state())
    return states


def _save(state: TrainState, run_dir: Path, meta: dict[str, Any], env: D.DistEnv, is_best: bool) -> None:
    """checkpoint_last.pt (and checkpoint_best.pt) and history.csv; rank 0 writes, all ranks gather RNG."""
    rng_ranks = _gather_rng(env)
    if not env.is_main:
        return
    payload = {
        **meta,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "first_loss": state.first_loss,
        "rng": rng_state(),
        "best_val_loss": state.best_val_loss,
        "best_epoch": state.best_epoch,
        "history": [dict(row) for row in state.history],
    }
    if rng_ranks is not None:
        payload["rng_ranks"] = rng_ranks
    save_checkpoint(run_dir / CHECKPOINT_NAMES["last"], payload)
    if is_best:
        save_checkpoint(run_dir / CHECKPOINT_NAMES["best"], payload)
    write_history(state.history, run_dir / "history.csv")


def total_steps(tc: dict[str, Any], steps_per_epoch: int) -> int:
    """Optimizer steps of the whole run: max_steps, or epochs x steps per epoch."""
    full = tc["epochs"] * steps_per_epoch
    return min(full, tc["max_steps"]) if tc["max_steps"] > 0 else full


def fit(
    state: TrainState,
    source: TrainSource,
    val_ds: ShardDataset,
    train_cfg: dict[str, Any],
    run_dir: Path,
    meta: dict[str, Any],
    *,
    device: torch.device,
    env: D.DistEnv,
    progress: bool = True,
    epoch_callback: Callable[[int, float], None] | None = None,
    deadline: float | None = None,
    replan: Callable[[float], int] | None = None,
) -> str:
    """Train from `state.epoch` to `train_cfg["epochs"]` (or `max_steps`), saving after every epoch.

    `epoch_callback(epoch, val_loss)` (epoch counted from 1) runs after the epoch's
    checkpoint is written; an exception from it propagates. Returns "completed", or
    "time_limit" when the wall-clock `deadline` ended the run early. `replan(seconds per
    epoch)`, called once after REPLAN_AFTER seconds of epochs, may change the plan (it
    returns the new total of steps).
    """
    tc = train_cfg
    total = total_steps(tc, source.steps_per_epoch())
    status = "completed"
    pin = device.type == "cuda"
    fit_start, first_epoch = time.perf_counter(), state.epoch
    while state.epoch < tc["epochs"]:
        if state.step >= total:
            break
        lr = state.optimizer.param_groups[0]["lr"]
        train_loss, sps, seconds, timed_out = train_epoch(
            state,
            source.batches(state.epoch, pin),
            min(source.samples_per_epoch(), (total - state.step) * tc["batch_size"] // env.world_size),
            tc,
            device=device,
            env=env,
            progress=progress,
            max_steps=total - state.step,
            deadline=deadline,
        )
        val_loss = validate(state, val_ds, tc, device, env)
        if tc["schedule"] != "cosine":
            state.scheduler.step()
        state.epoch += 1
        is_best = val_loss < state.best_val_loss
        if is_best:
            state.best_val_loss, state.best_epoch = val_loss, state.epoch
        state.history.append(
            {
                "epoch": state.epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": lr,
                "samples_per_s": sps,
                "seconds": seconds,
            }
        )
        if progress and env.is_main:
            write(
                f"epoch {state.epoch}/{tc['epochs']}  train {train_loss:.4e}  val {val_loss:.4e}"
                f"{' *' if is_best else '  '}  lr {lr:.2e}  {sps:,.0f} samples/s  "
                f"ETA {format_seconds(_eta(state, tc, fit_start, first_epoch, deadline))}"
            )
        _save(state, run_dir, meta, env, is_best)
        state.tracker.log_epoch(state.step, state.history[-1])
        if epoch_callback is not None:
            epoch_callback(state.epoch, val_loss)
        if timed_out and state.step < total:
            status = "time_limit"
            break
        spent = time.perf_counter() - fit_start
        if replan is not None and spent >= REPLAN_AFTER:
            total = replan(spent / (state.epoch - first_epoch))
            replan = None
    return status


def validate(state: TrainState, ds: ShardDataset, tc: dict[str, Any], device: torch.device, env: D.DistEnv) -> float:
    """The loss (MSE) of the model on `ds` (the val split after each epoch, the test split at the end)."""
    return evaluate(state.model, ds, batch_size=tc["batch_size"], device=device, env=env, bf16=tc["bf16"],
                    num_workers=0 if tc["fresh"] > 0 else tc["num_workers"])  # fmt: skip


def _eta(state: TrainState, tc: dict[str, Any], fit_start: float, first_epoch: int,
         deadline: float | None) -> float:  # fmt: skip
    """Seconds until the run ends: the epochs left at this call's mean time per epoch, at most
    what is left of a time limit."""
    now = time.perf_counter()
    left = (tc["epochs"] - state.epoch) * (now - fit_start) / max(state.epoch - first_epoch, 1)
    return min(left, deadline - now) if deadline is not None else left


# ----------------------------------------------------------------- planning a time budget


def _plan_time_limit(state: TrainState, source: TrainSource, tc: dict[str, Any], device: torch.device,
                     val_ds: ShardDataset, env: D.DistEnv, clock_start: float, max_epochs: int | None,
                     progress: bool) -> float | None:  # fmt: skip
    """Set tc's epochs and max_steps to fill its time limit, at most `max_epochs` epochs, on
    timed steps (`_time_steps`, rank 0's plan), and say which bounds the run. Returns the
    wall-clock deadline (None under torchrun: the guard is off)."""
    spe = source.steps_per_epoch()
    per_step, per_val, per_gen = _time_steps(state, source, tc, device, val_ds)
    left = tc["time_limit"] * 60.0 - (time.perf_counter() - clock_start)
    fits = plan_budget(left, per_step, per_val, per_gen, spe, tc["num_workers"] > 0)
    epochs, steps, capped = cap_epochs(fits, max_epochs, spe)
    plan = D.all_reduce_sum([float(x) if env.is_main else 0.0 for x in (epochs, steps)], env, device)
    tc["epochs"], tc["max_steps"] = int(plan[0]), int(plan[1])
    if progress and env.is_main:
        if capped:
            bound = f"bound by the epochs asked for ({max_epochs}; the time limit would allow {fits[0]})"
        else:
            bound = "bound by the time limit" + (f" (before the {max_epochs} epochs asked for)" if max_epochs else "")
        write(f"time limit {tc['time_limit']:g} min: {per_step * 1e3:.1f} ms/step, validation {per_val:.2f} s "
              f"-> {tc['epochs']} epochs, {tc['max_steps']} steps; {bound}")  # fmt: skip
    return None if env.distributed else clock_start + tc["time_limit"] * 60.0


def _time_steps(state: TrainState, source: TrainSource, tc: dict[str, Any], device: torch.device,
                val_ds: ShardDataset) -> tuple[float, float, float]:  # fmt: skip
    """(seconds per optimizer step, seconds per validation pass and checkpoint, seconds per
    fresh set) measured on copies of the model and optimizer; the RNG states are restored after."""
    rng = rng_state()
    model = copy.deepcopy(state.model)
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    gen = 0.0
    if source.fresh is not None:
        t0 = time.perf_counter()
        chunk = source.peek_chunk(0)
        gen = time.perf_counter() - t0
        batches: Any = source._fresh_batches(chunk, 0)
    else:
        source.sampler.set_epoch(0)
        batches = iterate_batches(source.ds, source.sampler, num_workers=0)
    times: list[float] = []
    t_begin = time.perf_counter()
    for k, batch in enumerate(itertools.islice(batches, 400)):
        t0 = time.perf_counter()
        train_step(model, model, _to_device(batch, device), opt, grad_clip=tc["grad_clip"], bf16=tc["bf16"],
                   loss_kind=tc["loss"])  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k >= 3:  # warm-up steps (allocations, lazy init) are not counted
            times.append(time.perf_counter() - t0)
        if len(times) >= 5 and time.perf_counter() - t_begin > 3.0:
            break
    per_step = float(np.median(times)) if times else 0.0  # the median: robust to a busy moment
    # validation: up to 2,000 orbits, or as many batches as 3 s allow (a slow network, e.g. the
    # paper's VaRONet at a few orbits per second, is not timed on 2,000), scaled to the split
    n_val, done = min(len(val_ds), 2000), 0
    t0 = time.perf_counter()
    model.eval()
    for idx in eval_batches(n_val, tc["batch_size"]):
        eval_step(model, _to_device(val_ds.get_batch(idx), device), bf16=tc["bf16"])
        done += len(idx)
        if time.perf_counter() - t0 > 3.0:
            break
    per_val = (time.perf_counter() - t0) * len(val_ds) / max(done, 1)
    t0 = time.perf_counter()  # a checkpoint: last and (often) best, written and fsynced
    with tempfile.TemporaryFile() as f:
        for _ in range(2):
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, f)
            f.flush()
            os.fsync(f.fileno())
    per_val += time.perf_counter() - t0
    set_rng_state(rng)
    return per_step, per_val, gen


# ----------------------------------------------------------------- the entry point


def train(
    model_name: str,
    config: dict[str, Any] | None,
    data_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike | None,
    *,
    device: str = "cpu",
    resume: str | os.PathLike | None = None,
    epoch_callback: Callable[[int, float], None] | None = None,
    progress: bool = True,
    test: bool = True,
    calibrate: bool = True,
    started: Callable[[Path], None] | None = None,
    max_epochs: int | None = None,
) -> dict[str, Any]:
    """Train `model_name` on the shards of `data_dir`, writing the run folder `out_dir`; returns the metrics.

    config: a resolved config (`nh_models.training.config.load_config`); missing keys take the
    defaults. device: "cpu", "cuda", "cuda:N" or "auto". resume: a run folder to continue
    from its checkpoint_last.pt (its saved config and data folder are used; `config`
    may be None, otherwise it must equal the saved one; `out_dir` is ignored).
    test: score the best checkpoint on the test split at the end (metrics `test_loss`;
    None without it: a caller that scores the run itself, like bench/accuracy.py, skips it).
    calibrate: write the split-conformal bands (calibration.json) at the end.
    The run folder is created only once the data and the config have been checked;
    `started(run_dir)` is called (on rank 0) once it exists.
    max_epochs: with a time limit, train at most this many epochs (the schedule is planned for
    them when they end before the limit): what `nh train --epochs` asks for beside a recipe's
    time limit. (The config's own `epochs` is ignored under a time limit: recipes set 1000.)
    Under torchrun every process calls this; rank 0 writes the files.

    The phases: `_plan_run` (the run folder, config and data to use, all checked), `_set_up`
    (datasets, model, time plan, run folder, `_resume_state`), `fit` (the epochs, each validated
    and saved), `_finish` (test loss, metrics.json, calibration).
    """
    clock_start = time.perf_counter()
    retain_freed_memory()  # no page faults on every step's fresh activations (runtime.py)
    env = D.detect()
    dev = D.local_device(device, env)
    run_dir, config, data_dir, ckpt = _plan_run(model_name, config, data_dir, out_dir, resume, dev, env)
    created = D.init(env, dev)
    run = _Run(model_name, config, Path(data_dir), run_dir, ckpt, dev, env, progress)
    try:
        _set_up(run, clock_start, max_epochs, started)
        status = _fit_or_clean_up(run, epoch_callback)
        return _finish(run, status, test, calibrate)
    finally:
        run.tracker.close()
        if run.source is not None:
            run.source.close()
        D.cleanup(created)


@dataclass
class _Run:
    """What the phases of `train` share: the checked inputs, then what `_set_up` opens."""

    model_name: str
    config: dict[str, Any]
    data_dir: Path
    run_dir: Path
    ckpt: dict[str, Any] | None  # the checkpoint resumed from
    dev: torch.device
    env: D.DistEnv
    progress: bool
    source: TrainSource | None = None
    datasets: dict[str, ShardDataset | None] = field(default_factory=dict)
    state: TrainState | None = None
    tracker: Any = field(default_factory=NullTracker)
    deadline: float | None = None
    replan: Callable[[float], int] | None = None

    @property
    def tc(self) -> dict[str, Any]:
        return self.config["train"]


def _plan_run(model_name: str, config: dict[str, Any] | None, data_dir: str | os.PathLike | None,
              out_dir: str | os.PathLike | None, resume: str | os.PathLike | None, dev: torch.device,
              env: D.DistEnv) -> tuple[Path, dict[str, Any], str | os.PathLike, dict[str, Any] | None]:  # fmt: skip
    """(run folder, a copy of the resolved config, data folder, checkpoint to resume or None),
    every input checked before anything is written."""
    ckpt = None
    if resume is not None:
        run_dir = Path(resume)
        ckpt = check_resume(model_name, config, run_dir)
        config = ckpt["config"]
        data_dir = data_dir if data_dir is not None else ckpt.get("data_dir")
    else:
        if out_dir is None:
            raise NHError("train needs an output run folder (out_dir)")
        run_dir = Path(out_dir)
        config = resolve_config(model_name, config)
        if (run_dir / CHECKPOINT_NAMES["last"]).exists():
            raise NHError(
                f"run folder {str(run_dir)!r} already holds a run; resume it or choose another folder"
            )
    if data_dir is None:
        raise NHError("train needs a data directory (--data)")
    config = copy.deepcopy(config)
    tc = config["train"]
    if tc["compile"]:
        _check_compiler(dev)  # before anything is written
    if env.is_main:
        check_available(tc.get("log", "none"))  # a run saved before `log` existed: none
    if tc["batch_size"] % env.world_size:
        raise NHError(f"batch_size {tc['batch_size']} must be a multiple of the {env.world_size} processes")
    return run_dir, config, data_dir, ckpt


def _set_up(run: _Run, clock_start: float, max_epochs: int | None, started: Callable[[Path], None] | None) -> None:
    """Datasets, model and optimizer (seeded), the time plan and schedule, the run folder,
    the resumed state and the wrapped network, in the order that keeps runs reproducible."""
    from nh_models.models import get_model

    tc, env, dev = run.tc, run.env, run.dev
    dtype = DTYPES[tc["dtype"]]
    run.datasets = open_datasets(run.data_dir, dtype, env, with_train=tc["fresh"] == 0)
    run.source = TrainSource(run.data_dir, run.datasets["train"], tc, env, dtype)
    torch.manual_seed(tc["seed"])
    model = get_model(run.model_name, run.config["model"]).to(device=dev, dtype=dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
    state = run.state = TrainState(model=model, net=model, optimizer=optimizer, scheduler=None)  # type: ignore[arg-type]
    if run.ckpt is None and tc["time_limit"] > 0:
        run.deadline = _plan_time_limit(state, run.source, tc, dev, run.datasets["val"], env, clock_start,
                                        max_epochs, run.progress)  # fmt: skip
    state.scheduler = make_scheduler(optimizer, tc, total_steps(tc, run.source.steps_per_epoch()))
    if run.deadline is not None and tc["epochs"] > 1:
        run.replan = _replanner(run, max_epochs)
    if env.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        if run.ckpt is None:
            _write_config(run)
        run.tracker = state.tracker = open_tracker(tc.get("log", "none"), run.run_dir, run.config, run.model_name)
        if started is not None:
            started(run.run_dir)
    if env.rank > 0:  # different dropout / sampling noise on every rank; rank 0 keeps the seed's stream
        torch.manual_seed(tc["seed"] + 1_000_003 * env.rank)
    if run.ckpt is not None:
        _resume_state(state, run.ckpt, run.source, env)
    state.net = _wrap(model, tc, dev, env)


def _write_config(run: _Run) -> None:
    write_text_atomic(run.run_dir / "config.yaml", f"# nh train {run.model_name}\n" + dump_config(run.config))


def _replanner(run: _Run, max_epochs: int | None) -> Callable[[float], int]:
    """`fit`'s `replan`: re-plan the epochs left on the measured seconds per epoch (data, steps,
    validation, checkpoints together); the schedule stretches to the new end."""
    tc, state, source, deadline = run.tc, run.state, run.source, run.deadline

    def replan(per_epoch: float) -> int:
        spe = source.steps_per_epoch()
        per_step = sum(h["seconds"] for h in state.history[-2:]) / (min(2, len(state.history)) * spe)
        more, steps = fill(BUDGET_MARGIN * (deadline - time.perf_counter()), per_step,
                           max(per_epoch - spe * per_step, 0.0), spe)  # fmt: skip
        if more == 0:  # the deadline guard ends this one
            more, steps = 1, spe
        if max_epochs is not None and state.epoch + more > max_epochs:  # still at most max_epochs
            more = max_epochs - state.epoch
            steps = more * spe
        tc["epochs"], tc["max_steps"] = state.epoch + more, state.step + steps
        total = total_steps(tc, spe)
        reschedule(state.scheduler, tc, total)
        if run.env.is_main:
            _write_config(run)
            if run.progress:
                write(f"re-planned on {per_epoch:.2f} s/epoch: {tc['epochs']} epochs")
        return total

    return replan


def _resume_state(state: TrainState, ckpt: dict[str, Any], source: TrainSource, env: D.DistEnv) -> None:
    """Model, optimizer, scheduler, counters, history and this rank's RNG states from `ckpt`."""
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    state.epoch, state.history = ckpt["epoch"], [dict(r) for r in ckpt.get("history", [])]
    state.step = ckpt.get("step", state.epoch * source.steps_per_epoch())
    state.first_loss = ckpt.get("first_loss")
    state.best_val_loss, state.best_epoch = ckpt["best_val_loss"], ckpt["best_epoch"]
    ranks = ckpt.get("rng_ranks")
    set_rng_state(ranks[env.rank] if ranks and len(ranks) == env.world_size else ckpt["rng"])


def _wrap(model: nn.Module, tc: dict[str, Any], dev: torch.device, env: D.DistEnv) -> nn.Module:
    """What is called: the model, in DistributedDataParallel under torchrun, compiled with `compile`."""
    net: nn.Module = model
    if env.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if tc["compile"]:
        net = torch.compile(net)
    return net


def _fit_or_clean_up(run: _Run, epoch_callback: Callable[[int, float], None] | None) -> str:
    """`fit`; a diverged run becomes one NHError, a stopped one keeps its metrics (or, before its
    first epoch, leaves no run folder behind)."""
    state, tc, run_dir = run.state, run.tc, run.run_dir
    meta = {
        "model_name": run.model_name,
        "config": run.config,
        "data_dir": str(run.data_dir.resolve()),
        "world_size": run.env.world_size,
    }
    try:
        return fit(state, run.source, run.datasets["val"], tc, run_dir, meta, device=run.dev, env=run.env,
                   progress=run.progress, epoch_callback=epoch_callback, deadline=run.deadline,
                   replan=run.replan)  # fmt: skip
    except Diverged as exc:
        raise diverged_run(exc, run_dir, state, run.model_name, tc, run.dev, run.env) from None
    except BaseException:
        if state.history:
            write_metrics(run_dir, state, run.model_name, tc, None, run.dev, run.env, status="stopped")
        elif run.ckpt is None and run.env.is_main:  # stopped before its first epoch: nothing to keep
            (run_dir / "config.yaml").unlink(missing_ok=True)
            try:
                run_dir.rmdir()
            except OSError:  # training logs (--log) or files of someone else's: leave them
                pass
        raise


def _finish(run: _Run, status: str, test: bool, calibrate: bool) -> dict[str, Any]:
    """The best checkpoint's test loss, metrics.json and the calibration; returns the metrics."""
    tc, env, dev = run.tc, run.env, run.dev
    test_loss = None
    if test and run.datasets["test"] is not None:
        D.barrier(env)  # checkpoint_best.pt is on disk
        best = load_checkpoint(run.run_dir / CHECKPOINT_NAMES["best"], dev)
        run.state.model.load_state_dict(best["model"])
        test_loss = validate(run.state, run.datasets["test"], tc, dev, env)
    metrics = write_metrics(run.run_dir, run.state, run.model_name, tc, test_loss, dev, env, status=status)
    if calibrate and env.is_main:
        calibrate_finished_run(run.run_dir, run.data_dir, str(dev), run.progress)
    D.barrier(env)
    return metrics
