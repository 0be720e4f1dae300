"""Training of the operator networks: `train -> fit -> train_epoch -> train_step`, `evaluate -> eval_step`.

    metrics = train("deeponet", load_config("deeponet"), "data/normal", "runs/deeponet-1")

Loss: 0.5 (MSE_q + MSE_p) + model.regularizer() (VaRONet's kl_weight x KL; zero otherwise).
AdamW, the ExpHyperbolicLR schedule (SPEC section 8), gradient clipping by global
norm, optional bf16 autocast and torch.compile (on CUDA, and on CPU too: bf16 pays off
there only with AVX512-BF16 or AMX, compile needs a C++ compiler). Under torchrun the same code
runs DistributedDataParallel; only rank 0 writes. The run folder holds

    config.yaml          the resolved config
    checkpoint_last.pt   after every epoch: model, optimizer, scheduler, epoch, RNG states, config
    checkpoint_best.pt   the checkpoint of the lowest validation loss
    history.csv          epoch, train_loss, val_loss, lr, samples_per_s, seconds
    metrics.json         final/best validation loss, test loss, parameter count, samples/s
    loss.png             loss curves

`resume=run_dir` continues a stopped run from checkpoint_last.pt; on CPU it ends with
the same weights, bit for bit, as a run that was never stopped.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from nh_data.errors import NHError
from nh_data.fileio import write_text_atomic

from . import distributed as D
from .checkpoint import (
    CHECKPOINT_NAMES,
    checkpoint_path,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import dump_config, resolve_config
from .data import EpochBatchSampler, ShardDataset, eval_batches, has_split, iterate_batches
from .runtime import retain_freed_memory

UPPER_BOUND = 300  # ExpHyperbolicLR upper bound U (SPEC section 8)
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "lr", "samples_per_s", "seconds")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ----------------------------------------------------------------- learning-rate schedule


def exp_hyperbolic_lr(
    x: float, init_lr: float, infimum_lr: float, max_iter: int, upper_bound: float
) -> float:
    """ExpHyperbolicLR (Kim, arXiv:2407.15200) at step x of N = max_iter, with U = upper_bound:

        lr(x) = init_lr * (init_lr / infimum_lr) ** (h(x) - h(0)),
        h(x)  = sqrt((N - x) / U * (2 - (N + x) / U)).

    lr(0) = init_lr; the decay in log space follows a hyperbola whose early slope
    depends on U, not on N; lr(N) = init_lr * (infimum_lr / init_lr) ** h(0) >= infimum_lr.
    """
    N, U = max_iter, upper_bound
    x = min(max(x, 0), N)

    def h(s: float) -> float:
        return math.sqrt((N - s) / U * (2.0 - (N + s) / U))

    return init_lr * (init_lr / infimum_lr) ** (h(x) - h(0))


class ExpHyperbolicLR(torch.optim.lr_scheduler.LRScheduler):
    """ExpHyperbolicLR on every parameter group, stepped once per epoch (closed form in the epoch)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iter: int,
        infimum_lr: float,
        upper_bound: float = UPPER_BOUND,
        last_epoch: int = -1,
    ) -> None:
        if upper_bound < max_iter:
            raise NHError(f"ExpHyperbolicLR needs upper_bound >= max_iter, got {upper_bound} < {max_iter}")
        self.max_iter, self.infimum_lr, self.upper_bound = (
            int(max_iter),
            float(infimum_lr),
            float(upper_bound),
        )
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            exp_hyperbolic_lr(self.last_epoch, base, self.infimum_lr, self.max_iter, self.upper_bound)
            for base in self.base_lrs
        ]


# ----------------------------------------------------------------- steps


def per_sample_loss(q_hat: Tensor, p_hat: Tensor, q: Tensor, p: Tensor) -> Tensor:
    """0.5 (MSE_q + MSE_p) of every sample, the mean taken over the W time points: (B, W) x 4 -> (B,)."""
    return 0.5 * ((q_hat - q).square().mean(dim=1) + (p_hat - p).square().mean(dim=1))


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _check_compiler(device: torch.device) -> None:
    """torch.compile on CPU generates C++: fail early, in one line, when there is no compiler."""
    if device.type != "cpu":
        return
    names = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    if not any(n and shutil.which(n) for n in names):
        raise NHError("compile: true on CPU needs a C++ compiler (g++ or clang++) on PATH; install one or set compile: false")


def train_step(
    net: nn.Module,
    model: nn.Module,
    batch: dict[str, Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    grad_clip: float = 0.0,
    bf16: bool = False,
) -> Tensor:
    """One optimisation step on `batch`; returns the batch's data loss 0.5 (MSE_q + MSE_p), detached.

    net: the module to call (the model, or its DDP / compiled wrapper); model: the bare
    model (for `regularizer()` and the parameters to clip).
    """
    optimizer.zero_grad(set_to_none=True)
    with _autocast(batch["V"].device, bf16):
        q_hat, p_hat = net(batch["V"], batch["t"], batch["ic"])  # (B, W), (B, W)
        data_loss = per_sample_loss(q_hat.float(), p_hat.float(), batch["q"], batch["p"]).mean()
        loss = data_loss + model.regularizer()
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return data_loss.detach()


@torch.no_grad()
def eval_step(model: nn.Module, batch: dict[str, Tensor], *, bf16: bool = False) -> Tensor:
    """Sum over the batch of the per-sample loss 0.5 (MSE_q + MSE_p) (a 0-dim tensor)."""
    with _autocast(batch["V"].device, bf16):
        q_hat, p_hat = model(batch["V"], batch["t"], batch["ic"])  # (B, W), (B, W)
    return per_sample_loss(
        q_hat.to(batch["q"].dtype), p_hat.to(batch["p"].dtype), batch["q"], batch["p"]
    ).sum()


def _to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def evaluate(
    model: nn.Module,
    ds: ShardDataset,
    *,
    batch_size: int,
    device: torch.device,
    env: D.DistEnv | None = None,
    bf16: bool = False,
    num_workers: int = 0,
) -> float:
    """Mean per-sample loss 0.5 (MSE_q + MSE_p) over the whole split (every rank takes a part)."""
    env = env if env is not None else D.DistEnv()
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    batches = eval_batches(len(ds), batch_size, env.rank, env.world_size)
    for batch in iterate_batches(ds, batches, num_workers=num_workers, pin_memory=device.type == "cuda"):
        total += eval_step(model, _to_device(batch, device), bf16=bf16).double()
    count = sum(len(b) for b in batches)
    s, n = D.all_reduce_sum([float(total), float(count)], env, device)
    model.train(was_training)
    return s / n


# ----------------------------------------------------------------- epoch and fit


@dataclass
class TrainState:
    """Everything `fit` advances; `epoch` counts completed epochs."""

    model: nn.Module  # the bare model
    net: nn.Module  # what is called: model, DDP(model) or torch.compile of it
    optimizer: torch.optim.Optimizer
    scheduler: ExpHyperbolicLR
    epoch: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def train_epoch(
    state: TrainState,
    ds: ShardDataset,
    sampler: EpochBatchSampler,
    train_cfg: dict[str, Any],
    *,
    device: torch.device,
    env: D.DistEnv,
    progress: bool,
) -> tuple[float, float, float]:
    """One pass over this rank's part of the shuffled training split.

    Returns (mean data loss over all ranks' samples, samples per second, seconds).
    """
    sampler.set_epoch(state.epoch)
    state.net.train()
    E = train_cfg["epochs"]
    global_samples = sampler.samples_per_epoch() * env.world_size
    bar = tqdm(
        total=global_samples,
        desc=f"epoch {state.epoch + 1}/{E}",
        unit="sample",
        unit_scale=True,
        file=sys.stderr,
        disable=not (progress and env.is_main),
        leave=False,
        dynamic_ncols=True,
    )
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_seen = 0
    start = time.perf_counter()
    batches = iterate_batches(
        ds, sampler, num_workers=train_cfg["num_workers"], pin_memory=device.type == "cuda"
    )
    with bar:
        for k, batch in enumerate(batches):
            batch = _to_device(batch, device)
            B = batch["V"].shape[0]
            loss = train_step(
                state.net,
                state.model,
                batch,
                state.optimizer,
                grad_clip=train_cfg["grad_clip"],
                bf16=train_cfg["bf16"],
            )
            loss_sum += loss.double() * B
            n_seen += B
            bar.update(B * env.world_size)
            if k % 10 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{loss.item():.3e}", refresh=False)
    seconds = time.perf_counter() - start
    s, n = D.all_reduce_sum([float(loss_sum), float(n_seen)], env, device)
    return s / n, n / max(seconds, 1e-12), seconds


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    write_text_atomic(path, buf.getvalue())


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
    _write_history(state.history, run_dir / "history.csv")


def fit(
    state: TrainState,
    train_ds: ShardDataset,
    val_ds: ShardDataset,
    train_cfg: dict[str, Any],
    run_dir: Path,
    meta: dict[str, Any],
    *,
    device: torch.device,
    env: D.DistEnv,
    progress: bool = True,
    epoch_callback: Callable[[int, float], None] | None = None,
) -> None:
    """Train from `state.epoch` to `train_cfg["epochs"]`, saving after every epoch.

    `epoch_callback(epoch, val_loss)` (epoch counted from 1) runs after the epoch's
    checkpoint is written; an exception from it propagates.
    """
    sampler = EpochBatchSampler(
        len(train_ds),
        train_cfg["batch_size"],
        seed=train_cfg["seed"],
        rank=env.rank,
        world_size=env.world_size,
    )
    for _ in range(state.epoch, train_cfg["epochs"]):
        lr = state.optimizer.param_groups[0]["lr"]
        train_loss, sps, seconds = train_epoch(
            state, train_ds, sampler, train_cfg, device=device, env=env, progress=progress
        )
        val_loss = evaluate(
            state.model,
            val_ds,
            batch_size=train_cfg["batch_size"],
            device=device,
            env=env,
            bf16=train_cfg["bf16"],
            num_workers=train_cfg["num_workers"],
        )
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
            tqdm.write(
                f"epoch {state.epoch}/{train_cfg['epochs']}  train {train_loss:.4e}  val {val_loss:.4e}"
                f"{' *' if is_best else '  '}  lr {lr:.2e}  {sps:,.0f} samples/s",
                file=sys.stderr,
            )
        _save(state, run_dir, meta, env, is_best)
        if epoch_callback is not None:
            epoch_callback(state.epoch, val_loss)


# ----------------------------------------------------------------- the entry point


def _open_datasets(data_dir: Path, dtype: torch.dtype, env: D.DistEnv) -> dict[str, ShardDataset | None]:
    """train/val/test datasets; rank 0 builds the Arrow caches first, the other ranks then map them."""

    def open_all() -> dict[str, ShardDataset | None]:
        out: dict[str, ShardDataset | None] = {
            "train": ShardDataset(data_dir, "train", dtype),
            "val": ShardDataset(data_dir, "val", dtype),
        }
        out["test"] = ShardDataset(data_dir, "test", dtype) if has_split(data_dir, "test") else None
        return out

    error: NHError | None = None
    result = None
    if env.is_main:
        try:
            result = open_all()
        except NHError as exc:
            error = exc
    D.barrier(env)
    if error is not None:
        raise error
    return result if result is not None else open_all()


def _check_resume(model_name: str, config: dict | None, resume: Path) -> dict[str, Any]:
    ckpt = load_checkpoint(checkpoint_path(resume, "last"))
    if ckpt["model_name"] != model_name:
        raise NHError(f"run {str(resume)!r} trained {ckpt['model_name']!r}, not {model_name!r}")
    if config is not None:
        given = resolve_config(model_name, config)
        diff = [
            f"{s}.{k}"
            for s in ("model", "train")
            for k in given[s]
            if given[s][k] != ckpt["config"][s].get(k)
        ]
        if diff:
            raise NHError(f"--resume keeps the run's saved config; these values differ: {', '.join(diff)}")
    done, total = ckpt["epoch"], ckpt["config"]["train"]["epochs"]
    if done >= total:
        raise NHError(f"run {str(resume)!r} already completed {done}/{total} epochs; nothing to resume")
    return ckpt


def _write_metrics(
    run_dir: Path,
    state: TrainState,
    model_name: str,
    train_cfg: dict[str, Any],
    test_loss: float | None,
    device: torch.device,
    env: D.DistEnv,
    status: str,
) -> dict[str, Any]:
    rows = state.history
    metrics = {
        "model": model_name,
        "status": status,
        "epochs": train_cfg["epochs"],
        "epochs_done": state.epoch,
        "final_val_loss": rows[-1]["val_loss"] if rows else None,
        "best_val_loss": state.best_val_loss if rows else None,
        "best_epoch": state.best_epoch if rows else None,
        "final_train_loss": rows[-1]["train_loss"] if rows else None,
        "test_loss": test_loss,
        "num_parameters": sum(p.numel() for p in state.model.parameters() if p.requires_grad),
        "samples_per_s": sum(r["samples_per_s"] for r in rows) / len(rows) if rows else None,
        "train_seconds": sum(r["seconds"] for r in rows),
        "device": str(device),
        "world_size": env.world_size,
    }
    if env.is_main:
        write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        if rows:
            from .trainplot import plot_loss_curve

            plot_loss_curve(rows, run_dir / "loss.png", title=f"{model_name} ({run_dir.name})")
    return metrics


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
) -> dict[str, Any]:
    """Train `model_name` on the shards of `data_dir`, writing the run folder `out_dir`; returns the metrics.

    config: a resolved config (`nh_models.config.load_config`); missing keys take the
    defaults. device: "cpu", "cuda", "cuda:N" or "auto". resume: a run folder to continue
    from its checkpoint_last.pt (its saved config and data folder are used; `config`
    may be None, otherwise it must equal the saved one; `out_dir` is ignored).
    Under torchrun every process calls this; rank 0 writes the files.
    """
    from nh_models.models import get_model

    retain_freed_memory()  # no page faults on every step's fresh activations (runtime.py)
    env = D.detect()
    dev = D.resolve_device(device, env)
    ckpt = None
    if resume is not None:
        run_dir = Path(resume)
        ckpt = _check_resume(model_name, config, run_dir)
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
    tc = config["train"]
    dtype = DTYPES[tc["dtype"]]
    if tc["compile"]:
        _check_compiler(dev)  # before anything is written

    created = D.init(env, dev)
    try:
        datasets = _open_datasets(Path(data_dir), dtype, env)
        if tc["batch_size"] % env.world_size:
            raise NHError(
                f"batch_size {tc['batch_size']} must be a multiple of the {env.world_size} processes"
            )
        if env.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if ckpt is None:
                write_text_atomic(
                    run_dir / "config.yaml", f"# nh train {model_name}\n" + dump_config(config)
                )

        torch.manual_seed(tc["seed"])
        model = get_model(model_name, config["model"]).to(device=dev, dtype=dtype)
        optimizer = torch.optim.AdamW(model.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"])
        scheduler = ExpHyperbolicLR(
            optimizer,
            max_iter=tc["epochs"],
            infimum_lr=tc["infimum_lr"],
            upper_bound=max(UPPER_BOUND, tc["epochs"]),
        )
        state = TrainState(model=model, net=model, optimizer=optimizer, scheduler=scheduler)
        if env.rank > 0:  # different dropout / sampling noise on every rank; rank 0 keeps the seed's stream
            torch.manual_seed(tc["seed"] + 1_000_003 * env.rank)
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            state.epoch, state.history = ckpt["epoch"], [dict(r) for r in ckpt.get("history", [])]
            state.best_val_loss, state.best_epoch = ckpt["best_val_loss"], ckpt["best_epoch"]
            ranks = ckpt.get("rng_ranks")
            set_rng_state(ranks[env.rank] if ranks and len(ranks) == env.world_size else ckpt["rng"])
        net: nn.Module = model
        if env.distributed:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[dev.index] if dev.type == "cuda" else None
            )
        if tc["compile"]:
            net = torch.compile(net)
        state.net = net

        meta = {
            "model_name": model_name,
            "config": config,
            "data_dir": str(Path(data_dir).resolve()),
            "world_size": env.world_size,
        }
        try:
            fit(
                state,
                datasets["train"],
                datasets["val"],
                tc,
                run_dir,
                meta,
                device=dev,
                env=env,
                progress=progress,
                epoch_callback=epoch_callback,
            )
        except BaseException:
            if state.history:
                _write_metrics(run_dir, state, model_name, tc, None, dev, env, status="stopped")
            raise

        test_loss = None
        if datasets["test"] is not None:
            D.barrier(env)  # checkpoint_best.pt is on disk
            best = load_checkpoint(run_dir / CHECKPOINT_NAMES["best"], dev)
            model.load_state_dict(best["model"])
            test_loss = evaluate(
                model,
                datasets["test"],
                batch_size=tc["batch_size"],
                device=dev,
                env=env,
                bf16=tc["bf16"],
                num_workers=tc["num_workers"],
            )
        metrics = _write_metrics(run_dir, state, model_name, tc, test_loss, dev, env, status="completed")
        D.barrier(env)
        return metrics
    finally:
        D.cleanup(created)


def default_run_dir(out_dir: str | os.PathLike, model_name: str, seed: int) -> Path:
    """`<out_dir>/<model>-<YYYYmmdd-HHMMSS>-s<seed>`; under torchrun the timestamp is replaced by
    the rendezvous id, which every rank shares."""
    env = D.detect()
    if env.distributed:
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
        tag = f"ddp{env.world_size}" + (f"-{run_id[:12]}" if run_id and run_id != "none" else "")
    else:
        tag = time.strftime("%Y%m%d-%H%M%S")
    return Path(out_dir) / f"{model_name}-{tag}-s{seed}"
