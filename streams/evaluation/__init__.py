"""Offline evaluations of the online models on real data, and their reports."""

from __future__ import annotations

import sys


class EvaluationError(ValueError):
    """Data, a split or an option that cannot be evaluated; the message says what is
    valid."""


def fail(message: str) -> int:
    r"""Print ``message`` on standard error as the one line the commands promise, and
    return their exit status for it, 2.

    Examples
    --------
    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     status = fail("no purchases    before the calibration end")
    >>> status, err.getvalue()
    (2, 'crmstream: no purchases before the calibration end\n')
    """
    print(f"crmstream: {' '.join(message.split())}", file=sys.stderr)
    return 2
