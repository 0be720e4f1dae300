"""User-facing errors.

`NHError` is raised for bad input or a refused operation: the CLI prints its
message on one line and exits with status 2. Anything else is a bug.
"""

from __future__ import annotations


class NHError(Exception):
    """An error the user can fix: bad input, refused overwrite, corrupt file."""
