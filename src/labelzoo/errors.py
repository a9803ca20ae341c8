"""Errors a user can act on.

Every error raised for bad input is a :class:`LabelZooError` whose message names the file, field or
parameter that is wrong and what was expected. The command line prints the message on one line and
exits non-zero; the app turns it into an HTTP 4xx.
"""

from __future__ import annotations


class LabelZooError(Exception):
    """Bad input or an unusable environment, explained in one sentence for the user."""

    exit_code: int = 2
