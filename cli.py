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


# ============================================================ nh train  (issue 4)


# ============================================================ nh eval / tune / demo  (issue 5)


# ============================================================ entry point


def main() -> None:
    nh(prog_name="nh")


if __name__ == "__main__":
    main()
