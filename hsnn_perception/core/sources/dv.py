"""AEDAT4 recordings as an event source, read through dv-processing (the live sources, cameras and
network streams, are in :mod:`.live`); all yield numpy :data:`EVENT_DTYPE` packets in sensor time.

Every source has ``next_packet() -> (events, sensor_time_us) | None``. ``sensor_time_us`` is the
sensor time up to which the stream is complete once this packet is out (for files: the end of the
packet's time slice; for live sources: the last event's time). ``None`` means nothing right now
(live sources) or the end (files). Sources do not sleep: the caller paces them (the driver does,
on sensor time).

AEDAT4 files are read by dv-processing in a worker process (:class:`Aedat4Reader`): a damaged
file can make dv-processing spin for ever inside C++ while holding the GIL, or crash the process.
A watchdog in the caller turns either into a :class:`SourceError` after ``read_timeout_s`` without
a reply, and the caller (a ROS node's executor, a CLI) stays responsive meanwhile.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import EventSourceError
from hsnn_perception.core.events.codecs import EVENT_DTYPE
from hsnn_perception.core.events.filters import from_dv_store

# A healthy file gives a batch within milliseconds, even from a slow SD card; several seconds
# without one means dv-processing is stuck in a damaged file (byte-flipped files spin for ever).
READ_TIMEOUT_S = 5.0
# Starting the worker imports numpy and dv-processing (0.2 s here, a few s on a loaded robot).
START_TIMEOUT_S = 60.0
# Address space the worker may add after its imports: dv-processing allocates what a damaged
# packet header claims, so a bound turns "grow until the OOM killer" into a clear error.
READER_MEMORY_BYTES = 1 << 30
# Events per reply: batches are gathered up to this count to amortise the pipe round trip
# (a DAVIS346 file stores ~300 events per batch), and it bounds one reply to ~1 MB.
REPLY_EVENTS = 1 << 16
_HEAD = struct.Struct("<IQ")  # reply framing: JSON header length, payload length


class SourceError(EventSourceError, ValueError):
    """An event source cannot be opened or read (names the source and the reason)."""


class CameraUnavailableError(SourceError):
    """No (matching) event camera is connected; the caller may retry later."""


def first_line(exc: BaseException) -> str:
    # dv-processing appends a C++ stack trace to its messages; the first lines say what is wrong.
    lines = [ln for ln in str(exc).splitlines() if ln.strip() and not ln.lstrip()[:1].isdigit()]
    return " ".join(ln.strip() for ln in lines if not ln.startswith("Stacktrace"))[:300]


def _open_error(path: Path, msg: str) -> str:
    if "version line" in msg:
        why = "not an AEDAT4 file"
    elif "truncated" in msg or "End-Of-File" in msg or "EndOfFile" in msg:
        why = "the file is cut off or corrupt"
    else:
        why = "cannot be opened"
    return f"{path}: {why} ({msg})"


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Aedat4Reader:
    """The event stream of an AEDAT4 file, read by dv-processing in a worker process.

    ``width``, ``height``, ``camera_name``, ``time_range`` (first, last event time) are known
    after construction; :meth:`next_batch` gives ``(events, highest_time)`` (EVENT_DTYPE, file
    clock; ``highest_time`` None for an empty batch) or None at the end. Every call waits at
    most ``timeout_s`` for the worker; a stuck or crashed worker is stopped and becomes a
    :class:`SourceError` (the reader is then unusable: the file is damaged).
    """

    def __init__(
        self,
        path: str | Path,
        timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        if self.timeout_s <= 0:
            raise SourceError(f"read timeout must be positive, got {timeout_s}")
        self._proc: subprocess.Popen[bytes] | None = None
        self._failed: str | None = None
        if not self.path.is_file():
            raise SourceError(f"AEDAT4 file {str(self.path)!r} does not exist")
        self.reopen()

    # -- worker management -----------------------------------------------------------------
    def _start(self) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        code = "from hsnn_perception.core.sources.dv import _worker_main; _worker_main()"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
            close_fds=True,
        )
        self._finalizer = weakref.finalize(self, _stop_worker, self._proc)
        self._receive(START_TIMEOUT_S, "starting")

    def close(self) -> None:
        """Stop the worker process."""
        if self._proc is not None:
            self._finalizer()
            self._proc = None

    def __enter__(self) -> Aedat4Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, message: str) -> SourceError:
        self._failed = message
        self.close()
        return SourceError(message)

    def _request(self, command: dict[str, Any], what: str) -> tuple[dict[str, Any], bytes]:
        if self._failed is not None:
            raise SourceError(self._failed)
        if self._proc is None:
            self._start()
        elif self._proc.poll() is not None:
            raise self._fail(self._died(what))
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(command).encode() + b"\n")
        except OSError:  # the worker died since the last reply
            raise self._fail(self._died(what)) from None
        return self._receive(self.timeout_s, what)

    def _died(self, what: str) -> str:
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        return (
            f"{self.path}: the AEDAT4 reader process died while {what} "
            f"({_describe_exit(code)}): file corrupt?"
        )

    def _read_exact(self, n: int, deadline: float, timeout: float, what: str) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        parts, left = [], n
        while left:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise self._fail(
                    f"{self.path}: AEDAT4 reader made no progress for {timeout:g} s while {what}: "
                    "file corrupt? (reader stopped)"
                )
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise self._fail(self._died(what))
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def _receive(self, timeout: float, what: str) -> tuple[dict[str, Any], bytes]:
        deadline = time.monotonic() + timeout
        n_head, n_payload = _HEAD.unpack(self._read_exact(_HEAD.size, deadline, timeout, what))
        head = json.loads(self._read_exact(n_head, deadline, timeout, what))
        payload = self._read_exact(n_payload, deadline, timeout, what) if n_payload else b""
        return head, payload

    # -- reading ---------------------------------------------------------------------------
    def reopen(self) -> None:
        """(Re)open the file at its start."""
        head, _ = self._request(
            {"op": "open", "path": str(self.path)},
            "opening the file",
        )
        if head["kind"] == "error":
            raise SourceError(_open_error(self.path, head["message"]))
        if not head["events"]:
            raise SourceError(f"{self.path}: the recording has no event stream")
        self.width, self.height = int(head["width"]), int(head["height"])
        self.camera_name = str(head["camera"])
        self.time_range = (int(head["t_lo"]), int(head["t_hi"]))

    def next_batch(self) -> tuple[NDArray[Any], int | None] | None:
        """Next events (up to about REPLY_EVENTS, in file order) and the highest time dv reports
        for them, or None at the end of the file."""
        head, payload = self._request({"op": "next"}, "reading events")
        if head["kind"] == "eof":
            return None
        if head["kind"] == "error":
            raise self._fail(f"{self.path}: read failed, file cut off? ({head['message']})")
        events = np.frombuffer(payload, dtype=EVENT_DTYPE).copy()
        return events, head["highest"]


def _stop_worker(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()  # a worker stuck in C++ ignores anything gentler
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _worker_main() -> None:
    """The AEDAT4 reader process: JSON commands on stdin, framed replies on stdout."""
    import ctypes
    import resource

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the caller, who stops us
    try:  # die with the caller, even while stuck in C++ (Linux)
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    out = os.dup(1)
    os.dup2(2, 1)  # whatever C++ code prints must not corrupt the reply stream
    import dv_processing as dv

    vm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmSize:"))
    limit = int(vm.split()[1]) * 1024 + READER_MEMORY_BYTES
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:  # a caller's own limit stays in force
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))

    def send(head: dict[str, Any], payload: bytes = b"") -> None:
        raw = json.dumps(head).encode()
        data = memoryview(_HEAD.pack(len(raw), len(payload)) + raw + payload)
        while data:
            data = data[os.write(out, data) :]

    send({"kind": "ready"})
    rec: Any = None
    for line in sys.stdin.buffer:
        cmd = json.loads(line)
        try:
            if cmd["op"] == "open":
                rec = None
                rec = dv.io.MonoCameraRecording(cmd["path"])
                if not rec.isEventStreamAvailable():
                    send({"kind": "meta", "events": False})
                    continue
                width, height = rec.getEventResolution()
                lo, hi = rec.getTimeRange()
                send(
                    {
                        "kind": "meta",
                        "events": True,
                        "width": int(width),
                        "height": int(height),
                        "camera": rec.getCameraName(),
                        "t_lo": int(lo),
                        "t_hi": int(hi),
                    }
                )
            elif cmd["op"] == "next":
                chunks, highest, n = [], None, 0
                while n < REPLY_EVENTS:
                    batch = rec.getNextEventBatch()
                    if batch is None:
                        break
                    if batch.size():
                        highest = int(batch.getHighestTime())
                    ev = from_dv_store(batch)
                    chunks.append(ev)
                    n += ev.size
                if not chunks:
                    send({"kind": "eof"})
                    continue
                ev = np.concatenate(chunks)
                send({"kind": "batch", "highest": highest}, ev.tobytes())
        except (RuntimeError, MemoryError, ValueError, TypeError) as exc:
            send({"kind": "error", "message": first_line(exc) or type(exc).__name__})


class Aedat4FileSource:
    """Replays the event stream of an AEDAT4 recording in packets of ``packet_us`` sensor time.

    ``start_us`` / ``end_us`` are absolute sensor timestamps (the file's clock) bounding the
    replay. With ``loop=True`` the recording restarts at the end and its timestamps are shifted
    by the replayed span (rounded up to whole packets) each time, so sensor time keeps
    increasing. Packets are aligned to ``start_us`` (default: the first event's time); packets
    with no events are returned too (time still advanced). The caller paces the packets.
    """

    def __init__(
        self,
        path: str | Path,
        loop: bool = False,
        start_us: int | None = None,
        end_us: int | None = None,
        packet_us: int = 1000,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        if int(packet_us) != packet_us or packet_us < 1:
            raise SourceError(f"packet_us must be a positive integer, got {packet_us!r}")
        self.path = Path(path)
        self.loop, self.packet_us = bool(loop), int(packet_us)
        self.read_timeout_s = float(read_timeout_s)
        self._reader: Aedat4Reader | None = None
        self._open()
        t_lo, t_hi = self.time_range
        self.start_us = t_lo if start_us is None else int(start_us)
        self.end_us = t_hi + 1 if end_us is None else int(end_us)
        if self.end_us <= self.start_us:
            raise SourceError(
                f"{self.path}: empty replay range [{self.start_us}, {self.end_us}) "
                f"(recording spans [{t_lo}, {t_hi}])"
            )
        span = self.end_us - self.start_us
        self.loop_span_us = -(-span // self.packet_us) * self.packet_us
        self._k = 0  # packet index since start (across loops)
        self._offset = 0  # added to file timestamps (loops)
        self._buffer = np.zeros(0, dtype=EVENT_DTYPE)
        self._eof = False
        self.packets_out = 0

    def _open(self) -> None:
        if self._reader is None:
            self._reader = Aedat4Reader(self.path, self.read_timeout_s)
        else:
            self._reader.reopen()  # loop: same worker
        self.width, self.height = self._reader.width, self._reader.height
        self.camera_name = self._reader.camera_name
        self.time_range = self._reader.time_range

    def close(self) -> None:
        """Stop the reader process (also done when the source is garbage collected)."""
        if self._reader is not None:
            self._reader.close()

    def _read_until(self, t_end_file: int) -> None:
        """Read batches until the buffer holds every event before ``t_end_file`` (file clock)."""
        assert self._reader is not None
        chunks = [self._buffer]
        last = int(self._buffer["t"][-1]) if self._buffer.size else None
        while not self._eof and (last is None or last < t_end_file):
            got = self._reader.next_batch()
            if got is None:
                self._eof = True
                break
            ev, highest = got
            if ev.size:
                ev = ev[(ev["t"] >= self.start_us) & (ev["t"] < self.end_us)]
                chunks.append(ev)
            if highest is not None:
                last = highest
        if len(chunks) > 1:  # a reply holds many packets: do not copy the buffer per packet
            self._buffer = np.concatenate(chunks)

    def _restart(self) -> None:
        self._open()
        self._eof = False
        self._buffer = np.zeros(0, dtype=EVENT_DTYPE)
        self._offset += self.loop_span_us

    @property
    def next_sensor_time_us(self) -> int:
        """Sensor time at the end of the next packet (the time it stands for)."""
        return self.start_us + (self._k + 1) * self.packet_us

    def next_packet(self) -> tuple[NDArray[Any], int] | None:
        """Return the next packet and its sensor end time, or ``None`` at the end of replay."""
        k_local = self._k - self._offset // self.packet_us
        t0 = self.start_us + k_local * self.packet_us
        t1 = t0 + self.packet_us
        if t0 >= self.end_us:
            if not self.loop:
                return None
            self._restart()
            return self.next_packet()
        self._read_until(t1)
        n = int(np.searchsorted(self._buffer["t"], t1))
        ev, self._buffer = self._buffer[:n], self._buffer[n:]
        if self._offset:
            ev = ev.copy()
            ev["t"] += self._offset
        self._k += 1
        self.packets_out += 1
        return ev, t1 + self._offset

    def __iter__(self) -> Iterator[tuple[NDArray[Any], int]]:
        while (item := self.next_packet()) is not None:
            yield item


def write_aedat4(
    path: str | Path,
    events: NDArray[Any],
    width: int,
    height: int,
    camera_name: str = "hsnn",
    batch: int = 500,
) -> Path:
    """Write ``events`` as an event-only AEDAT4 recording with dv-processing (e.g. synthetic data
    for tools that read DV recordings)."""
    import dv_processing as dv

    from hsnn_perception.core.events.filters import to_dv_store

    writer = dv.io.MonoCameraWriter(
        str(path), dv.io.MonoCameraWriter.EventOnlyConfig(camera_name, (int(width), int(height)))
    )
    for i in range(0, events.size, batch):
        writer.writeEvents(to_dv_store(events[i : i + batch]))
    del writer  # closing writes the file's data table
    return Path(path)
