"""Warnings that point at the caller's line, however deep inside vlal they are raised."""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn_caller"]

_PKG = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the ``stacklevel`` of the first frame outside the vlal package.

    A fixed ``stacklevel=2`` names the vlal function that called the warning's function when
    that function is reached through a strategy, the loop or the harness; this names the
    user's line instead (the same as ``skip_file_prefixes`` of Python 3.12, on 3.10+).
    """
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PKG):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
