"""Error messages of the command-line tools: one readable line, never a traceback.

:func:`number_arg` is the argparse type of every numeric option of the tools, so a bad value is a
usage error (exit 2) that names the option and says what it must be.

:func:`one_line` turns an exception (or text) into one line: an ``OSError`` names the path and
the reason (``cannot write /x: Permission denied``), a C++ stack dump that dv-processing appends
to its messages (``Stacktrace: 0# ...``) is cut off, and line breaks (numpy arrays, YAML parser
messages) are folded. :func:`check_namespace` checks a ROS namespace the way rclpy does, as a
``ValueError`` with a one-line message instead of rclpy's multi-line exception (which the tools
used to let through as a traceback).

:func:`show_defaults` makes a parser's ``--help`` show each option's default, and
:func:`closed_pipe` ends a tool whose output reader went away (``hsnn-bag info BAG | head -1``)
quietly.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hsnn_perception.core.errors import ConfigurationError


class CliError(ConfigurationError, ValueError):
    """A command line that cannot be carried out: the tool prints it as one line and exits 2."""


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


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help with ``(default: X)`` after each option whose default says something: not None,
    not a flag's False, not where the help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or default == []
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return text
        return f"{text} (default: %(default)s)".lstrip()


def show_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` and its sub-command parsers :class:`DefaultsHelpFormatter`; an option
    without help text gets one that shows its default (argparse prints nothing for it else).
    Returns ``parser``."""
    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                show_defaults(sub)
        elif action.help is None and action.option_strings:
            default = action.default
            if default not in (None, [], argparse.SUPPRESS) and not isinstance(default, bool):
                action.help = "(default: %(default)s)"
    return parser


EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool its pipe closed on


def closed_pipe() -> int:
    """For ``except BrokenPipeError`` around a tool's output: the reader went away (``| head``),
    which is no error. Points stdout at /dev/null so that the interpreter's last flush cannot
    raise again (a traceback at exit), and returns the exit status, 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a descriptor (captured): nothing to flush
        pass
    return EXIT_CLOSED_PIPE
