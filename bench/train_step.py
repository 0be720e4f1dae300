"""Training and inference speed of the five operator networks at their paper configurations.

    python bench/train_step.py                          # all models, CPU, 2 threads
    python bench/train_step.py --models deeponet,mambonet --quick
    python bench/train_step.py --device cuda

Per model: parameter count, training samples/s (batch 100, W = 100: forward, loss,
backward, gradient clipping, AdamW step) and inference microseconds per trajectory
(batch 1,000, W = 100, eval mode under torch.inference_mode), each the fastest of several
runs after a warm-up (other jobs on a shared machine only ever add time). Query times are
sorted random draws per orbit (v1.33 data); DeepONet is also timed on one uniform grid
shared by the batch (`deeponet @grid`: v1 data, the paper's test set), where its trunk,
a function of t alone, runs once per batch instead of once per orbit. On CPU the
figures are compared with the reference implementation's, measured on this machine class
(issue 4); `x` > 1 means faster. `--threads 1 --clock cpu` times one thread's CPU time,
which other jobs on the machine inflate far less than wall-clock time. Like `nh train`, the
script keeps freed heap memory for reuse (nh_models/runtime.py); `--malloc default` times
with glibc's own thresholds.

Reference figures are fixed numbers from another day; machines here are shared, so the
script also times, in the same run, baselines that reproduce the reference's hot spots
with the same weights: `deeponet[ref-loop]` (trunk evaluated once per time column, as the
reference did), `traonet[nn.Transformer]` (the reference's torch.nn Transformer layers,
same sizes) and `mambonet[pscan]` (mambapy's parallel scan, L padded 100 -> 128).
The side-by-side ratios are the ones to trust on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from nh_models.models import MODEL_NAMES, OperatorModel, get_model
from nh_models.models.base import mlp, sinusoidal_table
from nh_models.models.deeponet import DeepONet, inner_product
from nh_models.models.traonet import TraONet
from nh_models.runtime import retain_freed_memory

# reference implementation on this machine class, 2 threads (issue 4): samples/s, us/trajectory
REFERENCE = {
    "deeponet": (1900.0, 52.0),
    "traonet": (103.0, 4100.0),
    "varonet": (4.0, 70000.0),
    "mambonet": (9.0, 44000.0),
    "fno": (110.0, 4000.0),
}
TRAIN_BATCH, INFER_BATCH, W = 100, 1000, 100


class RefLoopDeepONet(OperatorModel):
    """The same DeepONet weights, trunk run once per time column (the reference's loop)."""

    name = "deeponet[ref-loop]"

    def __init__(self, model: DeepONet) -> None:
        super().__init__(model.config)
        self.model = model

    def forward(self, V, t, ic):
        m = self.model
        branch = m.branch(V, ic)  # (B, 2K)
        cols = [m.trunk(t[:, i]) for i in range(t.shape[1])]  # W x (B, 2K), B rows per column
        return inner_product(branch, torch.stack(cols, dim=1), m.bias)


class RefTraONet(OperatorModel):
    """TraONet as the reference built it: torch.nn.Transformer{Encoder,Decoder} layers (post-norm,
    ReLU), linear embeddings plus sinusoidal positions on both sides, same sizes as `model`."""

    name = "traonet[nn.Transformer]"

    def __init__(self, model: TraONet) -> None:
        super().__init__(model.config)
        c = model.config
        nn = torch.nn
        self.embed_V, self.embed_t = nn.Linear(1, c.d_model), nn.Linear(1, c.d_model)
        self.ic_embed = mlp([2, c.d_model, c.d_model])
        self.register_buffer("pos", sinusoidal_table(100, c.d_model), persistent=False)
        enc = nn.TransformerEncoderLayer(c.d_model, c.nhead, c.dim_feedforward, c.dropout, batch_first=True)
        dec = nn.TransformerDecoderLayer(c.d_model, c.nhead, c.dim_feedforward, c.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(
            enc, c.num_layers, norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False
        )
        self.decoder = nn.TransformerDecoder(dec, c.num_layers, norm=nn.LayerNorm(c.d_model))
        self.head = nn.Linear(c.d_model, 2)
        self.scale = c.d_model**0.5

    def forward(self, V, t, ic):
        memory = self.encoder(self.embed_V(V.unsqueeze(-1)) * self.scale + self.pos)  # (B, 100, d)
        x = (
            self.embed_t(t.unsqueeze(-1)) * self.scale
            + self.pos[: t.shape[1]]
            + self.ic_embed(ic).unsqueeze(1)
        )
        out = self.head(self.decoder(x, memory))  # (B, W, 2)
        return out[..., 0], out[..., 1]


def inputs(batch: int, device: torch.device, seed: int = 0, grid: bool = False) -> tuple[torch.Tensor, ...]:
    """Random V, ic, targets; t: sorted per-orbit draws on [0, 2] (v1.33 data), or with
    grid=True the same W uniform times in every row (v1 data, the paper's test set)."""
    g = torch.Generator().manual_seed(seed)
    V = 2.0 - 3.0 * torch.rand(batch, 100, generator=g)  # (B, 100)
    if grid:
        t = torch.linspace(0.0, 2.0, W).repeat(batch, 1)  # (B, W), every row the same
    else:
        t = torch.sort(2.0 * torch.rand(batch, W, generator=g), dim=1).values  # (B, W)
    ic = torch.rand(batch, 2, generator=g)  # (B, 2)
    q, p = torch.rand(batch, W, generator=g), torch.rand(batch, W, generator=g)
    return tuple(x.to(device) for x in (V, t, ic, q, p))


CLOCK: Callable[[], float] = time.perf_counter


def timed(fn: Callable[[], None], device: torch.device, min_time: float, max_reps: int) -> float:
    """Fastest run of fn() over repetitions lasting at least min_time (at least one run).

    The minimum, not the median: on a shared machine other jobs only ever add time.
    """
    times: list[float] = []
    start = time.perf_counter()
    while not times or (time.perf_counter() - start < min_time and len(times) < max_reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = CLOCK()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(CLOCK() - t0)
    return min(times)


def train_samples_per_s(model: OperatorModel, device: torch.device, min_time: float, grid: bool) -> float:
    V, t, ic, q, p = inputs(TRAIN_BATCH, device, grid=grid)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        q_hat, p_hat = model(V, t, ic)
        loss = 0.5 * (torch.mean((q_hat - q) ** 2) + torch.mean((p_hat - p) ** 2)) + model.regularizer()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step()  # warm-up: allocator, first-call dispatch
    return TRAIN_BATCH / timed(step, device, min_time, max_reps=20)


def infer_us_per_trajectory(
    model: OperatorModel, device: torch.device, batch: int, min_time: float, grid: bool
) -> float:
    V, t, ic, _, _ = inputs(batch, device, seed=1, grid=grid)
    model.eval()

    def run() -> None:
        with torch.inference_mode():
            model(V, t, ic)

    with torch.inference_mode():
        model(V[:10], t[:10], ic[:10])  # warm-up: first-call dispatch, oneDNN primitives
    return timed(run, device, min_time, max_reps=10) / batch * 1e6


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated (default: all six)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="short timings, inference batch 100, no baselines")
    ap.add_argument("--no-baselines", action="store_true", help="skip the side-by-side reference-style runs")
    ap.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "cpu"),
        help="wall: elapsed time; cpu: this process's CPU time (with --threads 1, robust on a busy machine)",
    )
    ap.add_argument(
        "--malloc",
        default="retain",
        choices=("retain", "default"),
        help="retain: keep freed heap for reuse, as nh train and nh eval do (nh_models.runtime); "
        "default: glibc's own thresholds",
    )
    args = ap.parse_args(argv)
    retained = args.malloc == "retain" and retain_freed_memory()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    bad = [n for n in names if n not in MODEL_NAMES]
    if bad:
        ap.error(f"unknown model(s) {', '.join(bad)}; valid: {', '.join(MODEL_NAMES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    min_time = 0.5 if args.quick else 3.0
    infer_batch = 100 if args.quick else INFER_BATCH
    baselines = not (args.quick or args.no_baselines)

    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{cpu_name()}, {args.threads} threads"
    print(f"# {where}; torch {torch.__version__}; {os.cpu_count()} CPUs; load average {loadavg()} at start")
    print(f"# clock: {args.clock}; glibc malloc: {'freed memory retained' if retained else 'default'}")
    print(f"# train: batch {TRAIN_BATCH}, W {W}; inference: batch {infer_batch}, W {W}")
    print("# t: sorted random times per orbit (v1.33 data); '@grid': one uniform grid shared by the batch (v1)")
    header = f"{'model':<26} {'params':>11} {'train samples/s':>16} {'x ref':>7} {'infer us/traj':>14} {'x ref':>7}"
    print(header)
    print("-" * len(header))
    rows: dict[str, tuple[float, float]] = {}

    def report(label: str, model: OperatorModel, ref: tuple[float, float] | None, grid: bool = False) -> None:
        torch.manual_seed(0)
        model = model.to(device)
        sps = train_samples_per_s(model, device, min_time, grid)
        us = infer_us_per_trajectory(model, device, infer_batch, min_time, grid)
        rows[label] = (sps, us)
        if ref is not None and device.type == "cpu":
            r_train, r_infer = f"{sps / ref[0]:.2f}", f"{ref[1] / us:.2f}"
        else:
            r_train = r_infer = "-"
        n = sum(p.numel() for p in model.parameters())
        print(f"{label:<26} {n:>11,} {sps:>16,.1f} {r_train:>7} {us:>14,.1f} {r_infer:>7}", flush=True)

    for name in names:
        torch.manual_seed(0)
        model = get_model(name)
        report(name, model, REFERENCE.get(name))  # SympONet is not in the reference implementation
        if baselines and name == "deeponet":
            report("deeponet[ref-loop]", RefLoopDeepONet(model), None)
        if name == "deeponet":  # the trunk depends on t alone: one pass for a shared grid
            report("deeponet @grid", model, REFERENCE[name], grid=True)
            if baselines:
                report("deeponet[ref-loop] @grid", RefLoopDeepONet(model), None, grid=True)
        if baselines and name == "traonet":
            torch.manual_seed(0)
            report("traonet[nn.Transformer]", RefTraONet(model), None)
        if baselines and name == "mambonet":
            torch.manual_seed(0)
            report("mambonet[pscan]", get_model("mambonet", {"scan": "pscan"}), None)
    print(f"# load average {loadavg()} at end")
    pairs = (
        ("deeponet[ref-loop]", "deeponet"),
        ("deeponet[ref-loop] @grid", "deeponet @grid"),
        ("traonet[nn.Transformer]", "traonet"),
        ("mambonet[pscan]", "mambonet"),
    )
    for base, fast in pairs:
        if base in rows and fast in rows:
            (s0, u0), (s1, u1) = rows[base], rows[fast]
            print(f"# side by side: {fast} vs {base}: train x{s1 / s0:.2f}, inference x{u0 / u1:.2f}")


if __name__ == "__main__":
    main()
