"""Pandas tables on the scoring path: string columns held as Python strings.

pandas 3 keeps string columns in pyarrow arrays when pyarrow is installed (it is: the cohort's
Parquet copies). A study's muscle table has tens of rows and is filtered hundreds of times while
it is graded, matched and drawn; each such take of a pyarrow column costs far more than of a
Python one (a quarter of a small study's CPU time, measured on 64x64x12 studies). Inside
:func:`python_strings` new string columns are Python-backed; the values, and every file
written, are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import pandas as pd

__all__ = ["python_strings"]

P = ParamSpec("P")
R = TypeVar("R")


def python_strings(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with pandas' string storage set to Python (``mode.string_storage``).

    Examples
    --------
    >>> @python_strings
    ... def storage() -> str:
    ...     return pd.Series(["a"]).dtype.storage
    >>> storage()
    'python'
    """

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with pd.option_context("mode.string_storage", "python"):
            return func(*args, **kwargs)

    return wrapper
