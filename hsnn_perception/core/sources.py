"""Event sources the driver node wraps: AEDAT4 files, iniVation cameras and dv network streams,
all through dv-processing, all yielding numpy :data:`EVENT_DTYPE` packets in sensor time.

Every source has ``next_packet() -> (events, sensor_time_us) | None``. ``sensor_time_us`` is the
sensor time up to which the stream is complete once this packet is out (for files: the end of the
packet's time slice; for live sources: the last event's time). ``None`` means nothing right now
(live sources) or the end (files). Sources do not sleep: :meth:`Aedat4FileSource.due_in` tells the
caller how long to wait before publishing the next packet in real time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.events import EVENT_DTYPE
from hsnn_perception.core.filters import BackgroundActivityFilter, from_dv_store


class SourceError(ValueError):
    """An event source cannot be opened or read (names the source and the reason)."""


class CameraUnavailableError(SourceError):
    """No (matching) event camera is connected; the caller may retry later."""


def _first_line(exc: BaseException) -> str:
    # dv-processing appends a C++ stack trace to its messages; the first lines say what is wrong.
    lines = [ln for ln in str(exc).splitlines() if ln.strip() and not ln.lstrip()[:1].isdigit()]
    return " ".join(ln.strip() for ln in lines if not ln.startswith("Stacktrace"))[:300]


class Aedat4FileSource:
    """Replays the event stream of an AEDAT4 recording in packets of ``packet_us`` sensor time.

    ``speed``: 1.0 = real time, 2.0 = twice as fast, 0 = as fast as possible. ``start_us`` /
    ``end_us`` are absolute sensor timestamps (the file's clock) bounding the replay. With
    ``loop=True`` the recording restarts at the end and its timestamps are shifted by the replayed
    span (rounded up to whole packets) each time, so sensor time keeps increasing. Packets are
    aligned to ``start_us`` (default: the first event's time); packets with no events are
    returned too (time still advanced). ``noise_filter_us`` runs dv's background-activity filter
    on the native ``dv.EventStore`` before conversion.
    """

    def __init__(
        self,
        path: str | Path,
        speed: float = 1.0,
        loop: bool = False,
        start_us: int | None = None,
        end_us: int | None = None,
        packet_us: int = 1000,
        noise_filter_us: int | None = None,
    ) -> None:
        if speed < 0:
            raise SourceError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        if int(packet_us) != packet_us or packet_us < 1:
            raise SourceError(f"packet_us must be a positive integer, got {packet_us!r}")
        self.path = Path(path)
        self.speed, self.loop, self.packet_us = float(speed), bool(loop), int(packet_us)
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
        self.noise = (
            BackgroundActivityFilter((self.height, self.width), noise_filter_us)
            if noise_filter_us
            else None
        )
        self._k = 0  # packet index since start (across loops)
        self._offset = 0  # added to file timestamps (loops)
        self._buffer = np.zeros(0, dtype=EVENT_DTYPE)
        self._eof = False
        self._wall_start: float | None = None
        self.packets_out = 0

    def _open(self) -> None:
        import dv_processing as dv

        if not self.path.is_file():
            raise SourceError(f"AEDAT4 file {str(self.path)!r} does not exist")
        try:
            self._rec = dv.io.MonoCameraRecording(str(self.path))
        except RuntimeError as exc:
            msg = _first_line(exc)
            if "version line" in msg:
                why = "not an AEDAT4 file"
            elif "truncated" in msg or "End-Of-File" in msg or "EndOfFile" in msg:
                why = "the file is cut off or corrupt"
            else:
                why = "cannot be opened"
            raise SourceError(f"{self.path}: {why} ({msg})") from exc
        if not self._rec.isEventStreamAvailable():
            raise SourceError(f"{self.path}: the recording has no event stream")
        self.width, self.height = self._rec.getEventResolution()
        self.camera_name = self._rec.getCameraName()
        lo, hi = self._rec.getTimeRange()
        self.time_range = (int(lo), int(hi))

    def _read_until(self, t_end_file: int) -> None:
        """Read batches until the buffer holds every event before ``t_end_file`` (file clock)."""
        chunks = [self._buffer]
        last = int(self._buffer["t"][-1]) if self._buffer.size else None
        while not self._eof and (last is None or last < t_end_file):
            try:
                batch = self._rec.getNextEventBatch()
            except RuntimeError as exc:
                raise SourceError(
                    f"{self.path}: read failed, file cut off? ({_first_line(exc)})"
                ) from exc
            if batch is None:
                self._eof = True
                break
            if self.noise is not None:
                batch = self.noise.filter_store(batch)
            ev = from_dv_store(batch)
            if ev.size:
                ev = ev[(ev["t"] >= self.start_us) & (ev["t"] < self.end_us)]
                chunks.append(ev)
                last = int(batch.getHighestTime())
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

    def next_packet(self) -> tuple[np.ndarray, int] | None:
        """Return the next packet and its sensor end time, or ``None`` at the end of replay."""
        if self._wall_start is None:
            self._wall_start = time.monotonic()
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

    def due_in(self, wall_now: float | None = None) -> float:
        """Seconds (``time.monotonic`` clock) until the next packet is due; 0 = now/overdue.

        The first packet is due immediately; packet ``k`` is due ``k * packet_us / speed``
        after it. With ``speed=0`` everything is due now.
        """
        if self.speed == 0 or self._wall_start is None:
            return 0.0
        now = time.monotonic() if wall_now is None else wall_now
        due = self._wall_start + self._k * self.packet_us / 1e6 / self.speed
        return max(0.0, due - now)

    def __iter__(self):
        while (item := self.next_packet()) is not None:
            yield item


_SUBSAMPLE = {1: "EVERY_PIXEL", 2: "EVERY_SECOND", 4: "EVERY_FOURTH", 8: "EVERY_EIGHTH"}


class CameraSource:
    """Live iniVation camera through ``dv.io.camera.open`` (first found, or by ``serial``).

    Raises :class:`CameraUnavailableError` when no matching camera is connected; the caller
    retries after ``retry_s`` (or uses :meth:`open_with_retry`). Settings applied when given:
    ``roi`` ``(x, y, w, h)`` via ``setCropArea`` (all models); ``subsample`` ``(fy, fx)`` in
    {1, 2, 4, 8} via DVXplorer ``setSubSampleVertical/Horizontal``; ``bias_sensitivity``
    ``(on, off)`` contrast thresholds via DVXplorer ``setContrastThresholdOn/Off``;
    ``noise_filter_us`` as DAVIS hardware filter (``setBackgroundActivityFilter``, 250 us
    units) or else dv's software background-activity filter. A setting the connected model
    does not offer raises :class:`SourceError` naming it.
    """

    def __init__(
        self,
        serial: str | None = None,
        roi: tuple[int, int, int, int] | None = None,
        subsample: tuple[int, int] | None = None,
        bias_sensitivity: tuple[int, int] | None = None,
        noise_filter_us: int | None = None,
        retry_s: float = 2.0,
    ) -> None:
        self.serial, self.roi, self.subsample = serial, roi, subsample
        self.bias_sensitivity, self.noise_filter_us = bias_sensitivity, noise_filter_us
        self.retry_s = float(retry_s)
        self.camera: Any = None
        self.noise: BackgroundActivityFilter | None = None
        self.open()

    @staticmethod
    def discover() -> list[str]:
        """Serial numbers of the connected cameras."""
        import dv_processing as dv

        return [str(d.serialNumber) for d in dv.io.camera.discover()]

    def open(self) -> None:
        """Open the camera and apply the settings (raises CameraUnavailableError if absent)."""
        import dv_processing as dv

        found = self.discover()
        if not found:
            raise CameraUnavailableError(
                "no event camera connected (dv.io.camera.discover() found none); check USB"
            )
        if self.serial is not None and self.serial not in found:
            raise CameraUnavailableError(
                f"no camera with serial {self.serial!r} connected (found: {', '.join(found)})"
            )
        try:
            cam = dv.io.camera.open(self.serial) if self.serial else dv.io.camera.open()
        except (RuntimeError, IndexError) as exc:
            raise CameraUnavailableError(f"opening the camera failed: {_first_line(exc)}") from exc
        self.camera = cam
        self._apply_settings(cam, dv)
        self.width, self.height = cam.getEventResolution()

    def open_with_retry(self, timeout_s: float) -> None:
        """Try :meth:`open` every ``retry_s`` until it works or ``timeout_s`` has passed."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.open()
            except CameraUnavailableError:
                if time.monotonic() + self.retry_s > deadline:
                    raise
                time.sleep(self.retry_s)

    def _apply_settings(self, cam: Any, dv: Any) -> None:
        name = cam.getCameraName()
        is_dvx = isinstance(cam, dv.io.camera.DVXplorer)
        is_davis = isinstance(cam, dv.io.camera.DAVIS)
        if self.roi is not None:
            cam.setCropArea(tuple(int(v) for v in self.roi))
        if self.subsample is not None:
            if not is_dvx:
                raise SourceError(f"subsample is only offered for DVXplorer, not {name}")
            fy, fx = self.subsample
            if fy not in _SUBSAMPLE or fx not in _SUBSAMPLE:
                raise SourceError(
                    f"subsample factors must be in {sorted(_SUBSAMPLE)}, got {self.subsample}"
                )
            cam.setSubSampleVertical(getattr(dv.io.camera.DVXplorer.SubSample, _SUBSAMPLE[fy]))
            cam.setSubSampleHorizontal(getattr(dv.io.camera.DVXplorer.SubSample, _SUBSAMPLE[fx]))
        if self.bias_sensitivity is not None:
            if not is_dvx:
                raise SourceError(
                    f"bias_sensitivity is not offered by dv-processing 2.0.4 for {name}"
                )
            on, off = self.bias_sensitivity
            cam.setContrastThresholdOn(int(on))
            cam.setContrastThresholdOff(int(off))
        if self.noise_filter_us:
            if is_davis:
                cam.setBackgroundActivityFilter(max(1, int(self.noise_filter_us) // 250))
            else:
                w, h = cam.getEventResolution()
                self.noise = BackgroundActivityFilter((h, w), int(self.noise_filter_us))

    def next_packet(self) -> tuple[np.ndarray, int] | None:
        """Next batch from the camera, or ``None`` if none is ready; raises
        :class:`CameraUnavailableError` when the camera went away."""
        if self.camera is None or not self.camera.isRunning():
            self.camera = None
            raise CameraUnavailableError("the camera stopped or was disconnected")
        batch = self.camera.getNextEventBatch()
        if batch is None:
            return None
        if self.noise is not None:
            batch = self.noise.filter_store(batch)
        ev = from_dv_store(batch)
        return (ev, int(ev["t"][-1])) if ev.size else None


class NetworkStreamSource:
    """Events from a dv network stream (``dv.io.NetworkReader`` over TCP), e.g. DV software."""

    def __init__(self, host: str, port: int, noise_filter_us: int | None = None) -> None:
        import dv_processing as dv

        self.host, self.port = host, int(port)
        try:
            self.reader = dv.io.NetworkReader(host, self.port)
        except RuntimeError as exc:
            raise SourceError(
                f"cannot connect to dv network stream {host}:{port}: {_first_line(exc)[:120]}"
            ) from exc
        if not self.reader.isEventStreamAvailable():
            raise SourceError(f"dv network stream {host}:{port} carries no events")
        self.width, self.height = self.reader.getEventResolution()
        self.camera_name = self.reader.getCameraName()
        self.noise = (
            BackgroundActivityFilter((self.height, self.width), noise_filter_us)
            if noise_filter_us
            else None
        )

    def next_packet(self) -> tuple[np.ndarray, int] | None:
        """Next batch, or ``None`` if none is ready; raises SourceError once the stream ended."""
        batch = self.reader.getNextEventBatch()
        if batch is None:
            if not self.reader.isRunning():
                raise SourceError(f"dv network stream {self.host}:{self.port} ended")
            return None
        if self.noise is not None:
            batch = self.noise.filter_store(batch)
        ev = from_dv_store(batch)
        return (ev, int(ev["t"][-1])) if ev.size else None

    def close(self) -> None:
        """Drop the connection."""
        self.reader = None


def write_aedat4(
    path: str | Path,
    events: np.ndarray,
    width: int,
    height: int,
    camera_name: str = "hsnn",
    batch: int = 500,
) -> Path:
    """Write ``events`` as an event-only AEDAT4 recording with dv-processing (e.g. synthetic data
    for tools that read DV recordings)."""
    import dv_processing as dv

    from hsnn_perception.core.filters import to_dv_store

    writer = dv.io.MonoCameraWriter(
        str(path), dv.io.MonoCameraWriter.EventOnlyConfig(camera_name, (int(width), int(height)))
    )
    for i in range(0, events.size, batch):
        writer.writeEvents(to_dv_store(events[i : i + batch]))
    del writer  # closing writes the file's data table
    return Path(path)
