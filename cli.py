"""`nh`: the Neural Hamilton command line, a thin layer over the Python API.

Every command parses its options, calls one function of `nh_data` or
`nh_models`, and prints. Heavy imports (torch) happen inside the commands so
that `nh data ...` never loads torch. An `NHError` (bad input, refused
operation) becomes a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import sys

import click

from nh_data.errors import NHError


class _Group(click.Group):
    """Click group that turns NHError into a one-line error with exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NHError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def nh() -> None:
    """Neural Hamilton: data, training and evaluation of Hamiltonian neural operators."""


# ============================================================ nh data  (issue 2)


@nh.group(cls=_Group)
def data() -> None:
    """Build, inspect and validate Parquet datasets of potentials and orbits."""


# ============================================================ nh physics  (issue 3)


@nh.command()
@click.argument("name", metavar="NAME")
@click.option("--out", "out_dir", default="parquet_data/physics", show_default=True, help="Output folder.")
@click.option("--dt", default="0.02", show_default=True, metavar="DT", help="Step of the compared integrators.")
@click.option("--t-max", "t_max", default="2", show_default=True, metavar="T", help="End of the time window.")
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
    m = next(iter(s["methods"].values()))
    click.echo(
        f"ic=({s['ic'][0]:g}, {s['ic'][1]:g})  t_max={s['t_max']:g}  dt={s['dt']:g} (step used {m['step']:.4g}: "
        f"steps land on the {s['n_out']} output times)  written to {out_dir}"
    )


# ============================================================ nh train  (issue 4)


# ============================================================ nh eval / tune / demo  (issue 5)


# ============================================================ entry point


def main() -> None:
    nh(prog_name="nh")


if __name__ == "__main__":
    main()
