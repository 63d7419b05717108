"""Progress of ``hsnn-bag convert`` on stderr.

The converters (``core/io/bag/convert.py``, ``core/io/bag/write.synthetic_to_bag``) call their
``progress`` with the fraction of the input covered so far (of the recording's sensor time, of a
.raw file's bytes, of the samples asked for); this turns it into a bar. Shown on a terminal or
when asked for (``--progress``), never otherwise, so a pipe or a log gets only the result line.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


class ConvertProgress:
    """A percentage bar for one conversion; pass the instance as the converter's ``progress``.

    ``show``: True / False, or None for "only on a terminal" (stderr is a TTY).
    """

    def __init__(self, what: str, show: bool | None) -> None:
        self.what, self.show = what, show
        self._bar: Any = None

    def __enter__(self) -> ConvertProgress:
        from tqdm import tqdm

        show = sys.stderr.isatty() if self.show is None else self.show
        self._bar = tqdm(
            total=100,
            desc=self.what,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
            disable=not show,
            leave=True,
        )
        return self

    def __call__(self, fraction: float) -> None:
        """The converter has covered ``fraction`` (0..1) of its input."""
        done = round(100 * min(max(fraction, 0.0), 1.0), 1)
        if self._bar is not None and done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:  # the converter returned: all of what it was asked to read is in
            self(1.0)
        self._bar.close()
