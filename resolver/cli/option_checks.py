"""Checking one command-line value with the checker that owns its rules.

The checkers (address, name, type, URL readers) raise ValueError, or their own error, with a
one-line reason; click shows a `BadParameter` as "Invalid value for '--listen': reason" and
exits 2. Every option and argument turns one into the other here, so all say it alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

T = TypeVar("T")


def checked_option(
    check: Callable[[str], T],
    text: str,
    param_hint: str | None = None,
    *,
    errors: type[Exception] | tuple[type[Exception], ...] = ValueError,
) -> T:
    """`check(text)`; one of `errors` becomes click's BadParameter with its message, naming
    `param_hint` (click names the parameter itself when None)."""
    try:
        return check(text)
    except errors as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None
