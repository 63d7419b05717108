"""Error messages of the command-line tools: one readable line, never a traceback.

:func:`number_arg` is the argparse type of every numeric option of the tools, so a bad value is a
usage error (exit 2) that names the option and says what it must be.

:func:`one_line` turns an exception (or text) into one line: an ``OSError`` names the path and
the reason (``cannot write /x: Permission denied``), a C++ stack dump that dv-processing appends
to its messages (``Stacktrace: 0# ...``) is cut off, and line breaks (numpy arrays, YAML parser
messages) are folded. :func:`check_namespace` checks a ROS namespace the way rclpy does, as a
``ValueError`` with a one-line message instead of rclpy's multi-line exception (which the tools
used to let through as a traceback).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# dv-processing: "<file>.hpp(313): <signature>()\nEndOfFile: Error info: <message>\nStacktrace:"
_CPP_LOCATION = re.compile(r"(?:/[^\s:]+)?\.[ch]pp\(\d+\):[^\n]*\n")
_CPP_STACK = re.compile(r"\n?\s*Stacktrace:.*", re.DOTALL)


def one_line(error: BaseException | str) -> str:
    """``error`` as one line of text (see the module docstring)."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"cannot use {error.filename}: {error.strerror}"
        if error.filename2 is not None:
            text += f" ({error.filename2})"
    else:
        text = str(error)
    text = _CPP_STACK.sub("", text)
    text = _CPP_LOCATION.sub("", text)
    text = " ".join(text.split())
    return text or type(error).__name__


def number_arg(
    kind: type = int, minimum: float = 0, *, above: bool = False, finite: bool = True
) -> Callable[[str], Any]:
    """argparse type: a ``kind`` (int or float) >= ``minimum`` (> with ``above``); a float must
    also be finite unless ``finite`` is False (NaN is refused either way)."""
    what = "an integer" if kind is int else "a number"
    bound = f"{'>' if above else '>='} {minimum:g}"
    must = f"a finite number {bound}" if kind is float and finite else bound

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        bad_float = kind is float and (math.isnan(value) or (finite and math.isinf(value)))
        if bad_float or value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {must}, got {text}")
        return value

    return parse


def prepare_out(out: Path, what: str = "output") -> bool:
    """Make the ``--out`` directory now, so an unusable one fails before the work runs. Returns
    whether it was created here (then :func:`remove_if_empty` after a failure)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a directory for the {what}")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot write to --out {out}: {exc.strerror or exc}") from exc
    return created


def remove_if_empty(path: Path) -> None:
    """Remove ``path`` if it is an empty directory: nothing of another run is lost."""
    try:
        path.rmdir()
    except OSError:
        pass


def check_namespace(namespace: str, option: str = "--namespace") -> str:
    """Raise ``ValueError`` (one line) if ``namespace`` is not a valid ROS namespace."""
    if not namespace:
        return namespace
    try:
        from rclpy.exceptions import InvalidNamespaceException
        from rclpy.validate_namespace import validate_namespace
    except ImportError:  # no rclpy here: the tool that needs it says so itself
        return namespace
    full = namespace if namespace.startswith("/") else "/" + namespace
    try:
        validate_namespace(full)
    except InvalidNamespaceException as exc:
        # rclpy: "Invalid namespace: <why>:\n  '<name>'\n   ^"
        why = str(exc).split("\n", 1)[0].removeprefix("Invalid namespace: ").rstrip(":")
        raise ValueError(f"{option} {namespace!r} is not a valid ROS namespace: {why}") from None
    return namespace
