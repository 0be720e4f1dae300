"""`nh`: the Neural Hamilton command line, a thin layer over the Python API.

Every command parses its options, calls one function of `nh_data` or
`nh_models`, and prints. Heavy imports (torch) happen inside the commands so
that `nh data ...` never loads torch. An `NHError` (bad input, refused
operation) becomes a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import functools
import sys

import click

from nh_data.errors import Interrupted, NHError
from nh_data.problem import PHYSICS_DT, T_END, WINDOW
from nh_models.training.command import DEFAULT_DATA, DEFAULT_STORAGE


class _Group(click.Group):
    """Click group whose sub-commands fail in one line with exit status 2: an NHError,
    a usage error (bad option value, missing argument, unknown command: click parses a
    sub-command's options inside its group's `invoke`) or an OSError."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NHError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except Interrupted as exc:  # Ctrl-C: one line on what was kept and how to go on
            click.echo(str(exc), err=True)
            sys.exit(130)
        except click.UsageError as exc:
            where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
            click.echo(f"Error: {where}{exc.format_message()}", err=True)
            sys.exit(2)
        except OSError as exc:
            # an unwritable or vanished path met late: still one line, never a traceback
            what = exc.strerror or str(exc)
            click.echo(f"Error: cannot use {exc.filename}: {what}" if exc.filename else f"Error: {what}", err=True)
            sys.exit(2)


def plugin_option(command):
    """--plugin MODULE (repeatable): import the user's modules when the command runs, before its body,
    so that the models they register resolve; parsing alone (and --help) imports nothing."""

    @functools.wraps(command)
    def run(*args, plugin: tuple[str, ...] = (), **kwargs):
        if plugin:
            from nh_models.models import load_plugin

            for module in plugin:
                load_plugin(module)
        return command(*args, **kwargs)

    return click.option(
        "--plugin", multiple=True, metavar="MODULE",
        help="Import MODULE (a module name or a .py file) first: it registers a model of your own "
        "(docs/extending.md). Repeatable.",
    )(run)  # fmt: skip


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def nh() -> None:
    """Neural Hamilton: data, training and evaluation of Hamiltonian neural operators."""


# ============================================================ nh data  (issue 2)


@nh.group(cls=_Group)
def data() -> None:
    """Build, inspect and validate Parquet datasets of potentials and orbits."""


@data.command("build")
@click.option("--n", "n", type=int, default=None, help="Number of potentials: strata: half train+val 80/20, half test; wall: n train+val "
              "80/20 (the paper) plus a test split of 0.4 n.")
@click.option("--preset", default=None, help="normal (10,000) | more (100,000) | much (1,000,000).")
@click.option("--out", "out", default=None, help="Output directory [parquet_data/<preset or n>].")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes on this machine.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--ic", default="strata", show_default=True, help="strata (4 orbits/potential) | wall (0, 0).")
@click.option("--times", default="random", show_default=True, help="random | uniform.")
@click.option("--integrator", default=None, help="dop853 (default, certified) | yoshida8 | kahanli8 | ...")
@click.option("--dt", type=float, default=None, help="Step of a fixed-step integrator (the paper: 1e-3).")
@click.option("--shard-size", type=int, default=1000, show_default=True, help="Potentials per shard.")
@click.option("--shards", default=None, help="Build only shards I:J of the full plan.")
@click.option("--overwrite", is_flag=True, help="Replace a dataset built with another configuration.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--scheduler", default=None, metavar="ADDRESS|local[:N]",
              help="Build on a Dask cluster: a scheduler's address (tcp://host:8786) or local[:N] (N worker "
              "processes here); needs the [cluster] extra and an output folder every worker sees.")
@click.option("--scheduler-file", default=None, metavar="FILE",
              help="Build on the Dask cluster whose scheduler wrote FILE (dask-jobqueue, dask-mpi, "
              "`dask scheduler --scheduler-file`).")
def data_build(n, preset, out, workers, seed, ic, times, integrator, dt, shard_size, shards, overwrite, quiet,
               scheduler, scheduler_file):  # fmt: skip
    """Build (or resume) a certified dataset of random potentials and orbits."""
    from nh_data.build import build_dataset
    from nh_data.schema import rejection_totals

    if out is None:
        out = f"parquet_data/{preset if preset is not None else n}"
    m = build_dataset(
        out, n, preset=preset, seed=seed, workers=workers, ic=ic, times=times, integrator=integrator,
        dt=dt, shard_size=shard_size, shards=shards, overwrite=overwrite, progress=not quiet,
        scheduler=scheduler, scheduler_file=scheduler_file,
    )  # fmt: skip
    if not m.get("complete", True):
        click.echo(f"{out}: built shards {', '.join(m['shards_built'])}; {m['shards_missing']} still missing")
        return
    rej = rejection_totals(m)
    counts = ", ".join(f"{s} {c}" for s, c in m["counts"].items())
    click.echo(f"{out}: {counts} rows in {len(m['shards'])} shards; rejected: {rej or 'none'}")


@data.command("info")
@click.argument("dir")
def data_info(dir):
    """Counts and distribution summaries of a dataset."""
    from nh_data.validate import format_info, info

    click.echo(format_info(info(dir)))


@data.command("validate")
@click.argument("dir")
@click.option("--sample", type=int, default=16, show_default=True, help="Rows to re-integrate independently.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the row sample.")
def data_validate(dir, sample, seed):
    """Check schema, checksums, finiteness and re-integrate a sample of rows; exit 1 on any problem."""
    from nh_data.validate import validate

    r = validate(dir, sample=sample, seed=seed)
    for line in r["problems"]:
        click.echo(line, err=True)
    if r["problems"]:
        click.echo(f"{dir}: {len(r['problems'])} problem(s)", err=True)
        sys.exit(1)
    if r.get("imported"):  # nh data import: how far the orbits are from the sensor interpolant's
        from nh_data.validate_imported import format_report

        click.echo(format_report(dir, r))
        return
    click.echo(
        f"{dir}: OK ({r['checked_rows']} rows checked, {r['sampled_rows']} re-integrated, "
        f"max deviation {r['max_deviation']:.2g})"
    )


@data.command("import")
@click.argument("src")
@click.option("--out", required=True, help="New dataset folder (must not hold anything).")
@click.option("--val", type=float, default=0.1, show_default=True, help="Fraction of the potentials for val.")
@click.option("--test", type=float, default=0.1, show_default=True, help="Fraction of the potentials for test.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split.")
def data_import(src, out, val, test, seed):
    """Import your own orbits: SRC (.npz or .parquet) with V (N x S sensors on [0, 1]), t, q, p (N x W)
    and optionally q0, p0 -> shards and manifest in OUT, marked imported (not certified)."""
    from nh_data.importing import import_dataset

    m = import_dataset(src, out, val=val, test=test, seed=seed)
    c = m["config"]
    counts = ", ".join(f"{s} {n}" for s, n in m["counts"].items())
    note = f"; V resampled from {c['sensors_in']} sensors to 100" if c["resampled"] else ""
    click.echo(f"{out}: {c['orbits']} orbits of {c['n']} potentials imported ({counts}){note}; not certified")


# ============================================================ nh physics  (issue 3)


@nh.command()
@click.argument("name", metavar="NAME")
@click.option("--out", "out_dir", default="parquet_data/physics", show_default=True, help="Output folder.")
@click.option("--dt", default=f"{PHYSICS_DT:g}", show_default=True, metavar="DT", help="Step of the compared integrators.")
@click.option("--t-max", "t_max", default=f"{T_END:g}", show_default=True, metavar="T", help="End of the time window.")
@click.option("--ic", default="0,0", show_default=True, metavar="Q0,P0", help="Initial condition.")
@click.option("--plot", is_flag=True, help="Also write NAME.png.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def physics(name: str, out_dir: str, dt: str, t_max: str, ic: str, plot: bool, quiet: bool) -> None:
    """Reference orbit and rk4 / leapfrog / yoshida4 / yoshida8 on a physical potential.

    NAME: sho, quartic, morse, mff, smff, unbounded, pendulum, atw, or all.
    Writes OUT/NAME.parquet and OUT/NAME.json (and OUT/NAME.png with --plot).
    """
    from nh_data import physics as ph

    dt_f, t_max_f = ph.parse_float(dt, "--dt"), ph.parse_float(t_max, "--t-max")
    ic_qp = ph.parse_ic(ic)
    if name == "all":
        summaries = ph.build_all(out_dir, dt=dt_f, t_max=t_max_f, ic=ic_qp, plot=plot, progress=not quiet)
    else:
        summaries = {name: ph.build_physics(name, out_dir, dt=dt_f, t_max=t_max_f, ic=ic_qp, plot=plot)}
    click.echo(ph.format_table(summaries))
    s = next(iter(summaries.values()))
    click.echo(
        f"ic=({s['ic'][0]:g}, {s['ic'][1]:g})  t_max={s['t_max']:g}  dt={s['dt']:g}  (errors on each method's "
        f"native grid t = k dt)  written to {out_dir}"
    )


# ============================================================ nh train  (issue 4)


@nh.command("train")
@plugin_option
@click.argument("model", metavar="MODEL")
@click.option("--config", "config_file", default=None,
              help="YAML config: a path, or a packaged config from any folder (configs/paper/MODEL.yaml, "
              "paper/MODEL, MODEL_small: found in nh_models/configs/ when no such file is here) "
              "[default: the recommended recipe MODEL; the paper's: paper/MODEL].")
@click.option("--data", "data_dir", default=None, help=f"Dataset folder (shards + manifest.json) [default: {DEFAULT_DATA}].")
@click.option("--time-limit", "time_limit", type=float, default=None, metavar="MINUTES",
              help="Train for this many minutes: the schedule is planned to span them (train.time_limit).")
@click.option("--fresh", type=int, default=None, metavar="N",
              help="Train every epoch on N fresh potentials drawn like --data's (0: its train split).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Override train.epochs; beside a time limit (the recommended recipes have one), train at "
              "most this many epochs, the schedule planned for them.")
@click.option("--batch-size", type=int, default=None, help="Override train.batch_size (global, all processes).")
@click.option("--lr", type=float, default=None, help="Override train.lr.")
@click.option("--seed", type=int, default=None, help="Override train.seed.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--out", "out_dir", default="runs", show_default=True, help="Parent folder of the run folder.")
@click.option("--resume", default=None, metavar="RUN", help="Continue the stopped run in folder RUN.")
@click.option("--log", "log", type=click.Choice(["none", "tensorboard", "wandb"]), default=None,
              help="Training logs: TensorBoard events in RUN/tensorboard, or W&B (offline unless logged in) "
              "[default: train.log, none].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
def train_(model, config_file, data_dir, time_limit, fresh, epochs, batch_size, lr, seed, device, out_dir, resume,
           log, quiet) -> None:  # fmt: skip
    """Train MODEL; command-line values override the config file; run it under torchrun for DDP."""
    from nh_models.training.command import interrupted, is_main_process, plan_train
    from nh_models.training.trainer import train

    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "time_limit": time_limit,
                 "fresh": fresh, "log": log}  # fmt: skip
    config, data_dir, run_dir = plan_train(model, config_file, data_dir, overrides, out_dir, resume)
    main_rank = is_main_process()
    try:
        metrics = train(model, config, data_dir, run_dir, device=device, resume=resume, progress=not quiet,
                        started=lambda d: click.echo(f"run folder: {d}"),  # once it exists: all checked
                        max_epochs=epochs)  # under a time limit, --epochs still bounds the run
    except KeyboardInterrupt:
        if not main_rank:
            sys.exit(130)
        raise interrupted(model, run_dir) from None
    if main_rank:
        test = "" if metrics["test_loss"] is None else f", test {metrics['test_loss']:.4e}"
        click.echo(
            f"{model}: best val {metrics['best_val_loss']:.4e} (epoch {metrics['best_epoch']}){test}; "
            f"{metrics['num_parameters']:,} parameters, {metrics['samples_per_s']:,.0f} samples/s"
        )


# ============================================================ nh eval / tune / demo  (issue 5)


@nh.command("eval")
@plugin_option
@click.argument("runs", nargs=-1, metavar="[RUN ...]")
@click.option("--model", "pretrained", multiple=True, metavar="NAME",
              help="A pretrained operator shipped with the package (`nh models`), evaluated like a run; repeatable.")
@click.option("--data", "data_dir", default=None,
              help="Dataset folder with a test split [default: the first run's].")
@click.option("--physics", default="all", show_default=True,
              help="Physics potentials: all, none or NAME,NAME,...")
@click.option("--physics-dir", default="parquet_data/physics", show_default=True,
              help="Where the physics potentials are (built there when missing).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--out", "out_dir", default="runs/eval", show_default=True, help="Output folder.")
@click.option("--max-test", type=click.IntRange(min=1), default=None,
              help="Evaluate at most this many test orbits.")
@click.option("--n-sub", type=click.IntRange(min=2), default=1000, show_default=True,
              help="Test orbits for work-precision and energy.")
@click.option("--compiled", is_flag=True,
              help="Time a SympONet's equal-cost table as compiled code on both sides (Numba, "
              "nh_models.compiled) when the model compiles [default: torch].")
@click.option("--lanes", type=int, default=1, show_default=True,
              help="With --compiled: orbits stepped side by side on the thread, every row (16: a batch's "
              "throughput; 1: one orbit at a time).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def eval_(runs, pretrained, data_dir, physics, physics_dir, device, out_dir, max_test, n_sub, compiled, lanes,
          quiet) -> None:
    """Evaluate trained runs (or --model NAME) against integrators: accuracy, physics, work-precision, report."""
    from nh_models.evaluation import EvalSettings, evaluate_runs
    from nh_models.zoo import Pretrained

    if not runs and not pretrained:
        raise click.UsageError("Missing argument 'RUN' (a run folder, or --model NAME: `nh models` lists them)")
    settings = EvalSettings(max_test=max_test, n_sub=n_sub, compiled=compiled, lanes=lanes)
    sources = [*runs, *(Pretrained(name) for name in pretrained)]
    _, report = evaluate_runs(sources, data_dir, physics, physics_dir, device, out_dir, settings,
                              progress=not quiet)
    click.echo(f"report: {report}")


@nh.command()
@plugin_option
@click.argument("model", metavar="MODEL")
@click.option("--trials", type=click.IntRange(min=1), required=True, help="Trials to add to the study.")
@click.option("--data", "data_dir", default=DEFAULT_DATA, show_default=True,
              help="Dataset folder.")
@click.option("--storage", default=DEFAULT_STORAGE, show_default=True, help="Optuna storage URL.")
@click.option("--study", "study_name", default=None, help="Study name [default: MODEL].")
@click.option("--out", "out_dir", default=None, help="Output folder [default: runs/tune/STUDY].")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs per trial (beside --time-limit: at most this many) [default: the base config's, "
              "unless it has a time limit].")
@click.option("--time-limit", "time_limit", type=float, default=None, metavar="MINUTES",
              help="Minutes per trial, its schedule planned to span them [default: 1 when the base config "
              "has a time limit, as the recommended recipes do; none beside --epochs].")
@click.option("--config", "base_config", default=None, help="Base config the samples override: a path or "
              "a packaged config (configs/MODEL_small.yaml, paper/MODEL) [default: configs/MODEL.yaml].")
@click.option("--space", "space_path", default=None, help="Search space: a path or a packaged one "
              "(configs/MODEL_tune.yaml) [default: configs/MODEL_tune.yaml].")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler seed.")
@click.option("-q", "--quiet", is_flag=True, help="No per-trial lines.")
def tune(model, trials, data_dir, storage, study_name, out_dir, epochs, time_limit, base_config, space_path, device,
         seed, quiet) -> None:
    """Search hyperparameters with Optuna (TPE, median pruning); resumable; writes best.yaml."""
    from nh_models.training.tune import tune as run_tune

    summary = run_tune(model, trials, data_dir, storage=storage, study_name=study_name, out_dir=out_dir,
                       epochs=epochs, time_limit=time_limit, base_config=base_config, space_path=space_path,
                       device=device, seed=seed, progress=not quiet)
    click.echo(f"study {summary['study']}: {summary['n_trials']} trials {summary['states']}; "
               f"best val loss {summary['best_value']:.4e} (trial {summary['best_trial']}); "
               f"config: {summary['best_yaml']}")


@nh.command()
@click.option("--out", "out_dir", default="runs/demo", show_default=True, help="Output folder.")
@click.option("--size", type=click.Choice(["small", "tiny"]), default="small", show_default=True,
              help="small: the real demo (minutes); tiny: a seconds-long smoke run.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def demo(out_dir, size, device, quiet) -> None:
    """Build a small dataset, train small DeepONet and TraONet, evaluate, write the report."""
    from nh_models.demo import run_demo

    result = run_demo(out_dir, size=size, device=device, progress=not quiet)
    click.echo(f"demo finished in {result['seconds']:.0f} s ({result['cpu_seconds']:.0f} CPU-s); "
               f"report: {result['report']}")


# ============================================================ nh predict / calibrate  (issue 12)


@nh.command("predict")
@plugin_option
@click.argument("run", metavar="[RUN]", required=False)
@click.option("--model", "pretrained", default=None, metavar="NAME",
              help="A pretrained operator shipped with the package (`nh models`) instead of a RUN folder.")
@click.option("--potential", "spec", required=True, metavar="SPEC",
              help="A name of `nh physics` (sho, morse, ...), a file (.csv/.npy/.parquet: 100 sensor values "
              "or columns q, V) or a formula in q such as '8*(q-0.5)**2'.")
@click.option("--ic", required=True, metavar="Q0,P0", help="Initial condition.")
@click.option("--t-max", "t_max", default=f"{T_END:g}", show_default=True, metavar="T",
              help="End time; beyond 2, windows are chained as in `nh eval`.")
@click.option("--times", type=int, default=WINDOW, show_default=True, metavar="N", help="Uniform times on [0, T].")
@click.option("--band", type=float, default=None, metavar="LEVEL",
              help="Band level [default: 0.9 when the run has a calibration].")
@click.option("--allow-uncalibrated", is_flag=True,
              help="With a band, predict past the run's calibrated windows (t > 2K) without a band there "
              "(NaN band columns, a note on stderr) instead of refusing.")
@click.option("--check", is_flag=True, help="Also integrate with the certified integrator (and the exact V).")
@click.option("--out", "out", default="prediction.parquet", show_default=True,
              help="Output table: .parquet or .csv.")
@click.option("--plot", is_flag=True, help="Also write a PNG beside --out.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
def predict_(run, pretrained, spec, ic, t_max, times, band, allow_uncalibrated, check, out, plot, device) -> None:
    """Predict the orbit of a trained RUN (or --model NAME) on any potential, with its calibrated error band.

    Window k (t in (2(k-1), 2k]) gets the band calibrated for window k. A run calibrated for K
    windows (`nh calibrate RUN --windows K`; `nh train` calibrates K = 1) has bands to t = 2K:
    with a band, a --t-max past 2K is refused (exit 2, nothing written) unless
    --allow-uncalibrated, which writes no band past t = 2K and says so.
    """
    from nh_data.physics import parse_float, parse_ic
    from nh_models.devices import resolve_device
    from nh_models.inference.check import format_check
    from nh_models.inference.predict_command import predict_command
    from nh_models.zoo import Pretrained

    if (run is None) == (pretrained is None):
        raise NHError("give either a RUN folder or --model NAME (`nh models` lists the pretrained ones)")
    source = run if pretrained is None else Pretrained(pretrained)
    r = predict_command(source, spec, parse_ic(ic), t_max=parse_float(t_max, "--t-max"), times=times, band=band,
                        check=check, out=out, plot=plot, device=resolve_device(device),
                        allow_uncalibrated=allow_uncalibrated)  # fmt: skip
    for w in r["warnings"]:
        click.echo(f"Warning: {w}", err=True)
    b = r["bands"]
    band_text = "no band (the run has no calibration.json: `nh calibrate RUN`)" if b is None else (
        f"band at {b.level:g} (stratum {b.stratum}): q +-{b.half_q:.3g}, p +-{b.half_p:.3g}")  # fmt: skip
    if b is not None and b.windows > 1 and b.calibrated.any() and int(b.window[b.calibrated].max()) > 1:
        last = int(b.window[b.calibrated].max())
        hq, hp = b.half_widths[last - 1]
        band_text += f" in window 1, q +-{hq:.3g}, p +-{hp:.3g} in window {last} ({b.windows} windows calibrated)"
    for note in b.notes if b is not None else []:
        click.echo(f"Note: {note}", err=True)
    click.echo(f"{r['model']} on {r['potential']}: {band_text}; H0 = {r['H'][0]:.6g}, "
               f"max |H - H0| = {r['H'][1]:.3g}")  # fmt: skip
    if r["check"] is not None:
        click.echo(format_check(r["check"], b))
    click.echo(f"written: {r['out']}" + (f", {r['plot']}" if r["plot"] else ""))


@nh.command("calibrate")
@plugin_option
@click.argument("run", metavar="RUN")
@click.option("--data", "data_dir", default=None, help="Dataset folder with a val split [default: the run's].")
@click.option("--score", type=click.Choice(["scaled", "max"]), default="scaled", show_default=True,
              help="Nonconformity score: q and p errors over their train RMS (scaled), or raw (max).")
@click.option("--fresh", type=int, default=0, show_default=True, metavar="N",
              help="Calibrate on the orbits of N new potentials drawn like the data's (0: its val split; "
              "with --windows K > 1: 1,000).")
@click.option("--windows", type=int, default=1, show_default=True, metavar="K",
              help="Calibrate each chained window k = 1..K separately (bands to t = 2K for `nh predict`), on "
              "orbits of --fresh new potentials that the engine integrates and certifies to t = 2K.")
@click.option("--workers", type=int, default=1, show_default=True, metavar="N",
              help="Processes that draw the fresh orbits (the file does not depend on it).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
def calibrate_(run, data_dir, score, fresh, windows, workers, device) -> None:
    """Split-conformal bands of RUN on its val split (or fresh orbits), per energy stratum -> RUN/calibration.json.

    With --windows K, one band per chained window k = 1..K (window k: t in (2(k-1), 2k]), each
    calibrated on fresh long orbits predicted by chaining windows exactly as `nh predict` does.
    """
    from nh_models.calibration import calibrate
    from nh_models.devices import resolve_device

    cal, path = calibrate(run, data_dir, kind=score, device=resolve_device(device), fresh=fresh, progress=True,
                          windows=windows, workers=workers)  # fmt: skip
    click.echo(f"{path}: {cal['n']} {cal['split']} orbits; " + ", ".join(
        f"{k} (n={v['n']}) Q0.9={v['quantiles']['0.9']}" for k, v in cal["strata"].items() if k != "all"))
    if cal.get("windows", 1) > 1:
        qs = [cal["strata"]["all"]["quantiles"]["0.9"]] + [
            w["strata"]["all"]["quantiles"]["0.9"] for w in cal["later_windows"]]  # fmt: skip
        click.echo(f"{cal['windows']} windows (to t = {cal['windows'] * T_END:g}; {cal['fresh']['rejected']} "
                   "orbits not certified that far); Q0.9 of all strata by window: "
                   + ", ".join("inf" if q is None else f"{q:.3g}" for q in qs))  # fmt: skip


# ============================================================ nh models  (issue 22)


@nh.group("models", cls=_Group, invoke_without_command=True)
@click.pass_context
def models(ctx) -> None:
    """Pretrained operators shipped with the package: list them, or build one again."""
    if ctx.invoked_subcommand is not None:
        return
    from nh_models import zoo

    rows = [zoo.summary(name) for name in zoo.names()]
    if not rows:
        click.echo("no pretrained operators shipped")
        return
    head = ("name", "network", "recipe", "training data", "test loss", "calibrated levels", "size")
    table = [head] + [(r["name"], r["network"], r["recipe"], r["data"], f"{r['test_loss']:.3e} ({r['test_orbits']})",
                       r["calibration"], f"{r['bytes'] / 2**20:.2f} MB") for r in rows]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    click.echo(f"zoo: {zoo.zoo_bytes() / 2**20:.2f} MB; use: nh predict --model NAME --potential sho --ic 0.3,0 --plot")


@models.command("build")
@click.argument("name", metavar="NAME")
@click.option("--data-root", default="parquet_data", show_default=True,
              help="Where the recipe's data folder is (built there when missing).")
@click.option("--out", "out_dir", default="runs/zoo", show_default=True,
              help="Zoo folder the rebuilt entry is written to (its run folder goes to OUT/runs).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def models_build(name, data_root, out_dir, device, quiet) -> None:
    """Train pretrained entry NAME again from its recipe and data seed; compare with the shipped one."""
    from nh_models.devices import resolve_device
    from nh_models.zoo_build import build_entry

    r = build_entry(name, data_root, out_dir, resolve_device(device), progress=not quiet)
    m = r["entry"]["metrics"]
    shipped = "" if r["shipped"] is None else f"; shipped {r['shipped']:.4e} (rebuilt / shipped = {r['ratio']:.2f})"
    click.echo(f"{name}: test loss {m['test_loss']:.4e} on {m['test_orbits']} orbits{shipped}; "
               f"entry in {out_dir}, run {r['run']}")  # fmt: skip


# ============================================================ entry point


def main() -> None:
    nh(prog_name="nh")


if __name__ == "__main__":
    main()
