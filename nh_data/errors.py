"""User-facing errors.

`NHError` is raised for bad input or a refused operation: the CLI prints its
message on one line and exits with status 2. `Interrupted` is a Ctrl-C that says what
was kept (exit 130). Anything else is a bug.
"""

from __future__ import annotations


class NHError(Exception):
    """An error the user can fix: bad input, refused overwrite, corrupt file."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with one line on what was kept and how to go on; the CLI prints it (exit 130).

    A KeyboardInterrupt still: code that cleans up on one cleans up on this too."""
