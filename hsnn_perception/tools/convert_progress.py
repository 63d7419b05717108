"""Progress of ``hsnn-bag convert`` on stderr, measured from outside the converter.

The converters (``core/io/bag/convert.py``) read their input in one call and report nothing on the
way, so the bar is fed by what the operating system shows: how far the input file has been read
(its read offset in ``/proc/<pid>/fdinfo``, in this process or a child, such as dv-processing's
reader process) against its size; with no input file (synthetic gestures), no ``/proc`` (not
Linux) or a partial read (``--max-us``) it shows the bytes written into the bag instead, without
a total. Shown on a terminal or when asked for (``--progress``), never otherwise, so a pipe or a
log gets only the result line.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

POLL_S = 0.25


def _children(pid: int) -> list[int]:
    """The child processes of ``pid``, and theirs (from /proc; empty where there is none)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        for child in text.split():
            found += [int(child), *_children(int(child))]
    return found


def read_offset(path: Path, pids: list[int] | None = None) -> int | None:
    """How far the file ``path`` has been read by this process or one of its children (the
    largest offset of a descriptor open on it), or None where no open descriptor is found."""
    target = os.path.realpath(path)
    best: int | None = None
    for pid in pids if pids is not None else [os.getpid(), *_children(os.getpid())]:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != target:
                    continue
                info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
            except OSError:  # closed meanwhile
                continue
            for line in info.splitlines():
                if line.startswith("pos:"):
                    pos = int(line.split()[1])
                    best = pos if best is None else max(best, pos)
    return best


def bytes_written(directory: Path) -> int:
    """Bytes in the files under ``directory`` (the bag being written)."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue
    return total


class ConvertProgress:
    """A progress bar for one conversion, updated by a thread while the ``with`` block runs.

    ``source``: the input file whose reading measures progress (None: bytes written to ``out``).
    ``show``: True / False, or None for "only on a terminal" (stderr is a TTY).
    """

    def __init__(
        self, out: Path, source: Path | None, show: bool | None, *, whole_input: bool = True
    ) -> None:
        self.out, self.source, self.show = Path(out), source, show
        self.whole_input = whole_input and source is not None and source.is_file()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None

    def __enter__(self) -> ConvertProgress:
        from tqdm import tqdm

        total = self.source.stat().st_size if self.whole_input and self.source else None
        what = (
            f"reading {self.source.name}" if total and self.source else f"writing {self.out.name}"
        )
        show = sys.stderr.isatty() if self.show is None else self.show
        self._bar = tqdm(
            total=total, desc=what, unit="B", unit_scale=True, disable=not show, leave=True
        )
        if not self._bar.disable:
            self._thread = threading.Thread(target=self._poll, name="hsnn-bag-progress")
            self._thread.daemon = True
            self._thread.start()
        return self

    def _measure(self) -> int | None:
        if self.whole_input and self.source is not None:
            return read_offset(self.source)
        return bytes_written(self.out)

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            done = self._measure()
            if done is not None and done > self._bar.n:
                self._bar.update(done - self._bar.n)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is None and not self._bar.disable:
            if self._bar.total:  # read to the end: the input is done
                self._bar.update(self._bar.total - self._bar.n)
            else:
                self._bar.update(max(0, bytes_written(self.out) - self._bar.n))
        self._bar.close()
