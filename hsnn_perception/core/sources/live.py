"""Live event sources through dv-processing: iniVation cameras and dv network streams. Like the
AEDAT4 source (:mod:`.dv`) they give ``next_packet() -> (events, sensor_time_us) | None``, here
``None`` while nothing is ready and ``sensor_time_us`` the last event's time; the caller polls.
"""

from __future__ import annotations

from typing import Any

from numpy.typing import NDArray

from hsnn_perception.core.events.filters import from_dv_store
from hsnn_perception.core.sources.dv import CameraUnavailableError, SourceError, first_line

_SUBSAMPLE = {1: "EVERY_PIXEL", 2: "EVERY_SECOND", 4: "EVERY_FOURTH", 8: "EVERY_EIGHTH"}


class CameraSource:
    """Live iniVation camera through ``dv.io.camera.open`` (first found, or by ``serial``).

    Raises :class:`CameraUnavailableError` when no matching camera is connected; the caller
    retries (the driver wraps it in ``packet_sources.ReconnectingSource``). Settings applied
    when given:
    ``roi`` ``(x, y, w, h)`` via ``setCropArea`` (all models); ``subsample`` ``(fy, fx)`` in
    {1, 2, 4, 8} via DVXplorer ``setSubSampleVertical/Horizontal``; ``bias_sensitivity``
    ``(on, off)`` contrast thresholds via DVXplorer ``setContrastThresholdOn/Off``. A setting the
    connected model does not offer raises :class:`SourceError` naming it.
    """

    def __init__(
        self,
        serial: str | None = None,
        roi: tuple[int, int, int, int] | None = None,
        subsample: tuple[int, int] | None = None,
        bias_sensitivity: tuple[int, int] | None = None,
    ) -> None:
        self.serial, self.roi, self.subsample = serial, roi, subsample
        self.bias_sensitivity = bias_sensitivity
        self.camera: Any = None
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
            raise CameraUnavailableError(f"opening the camera failed: {first_line(exc)}") from exc
        self.camera = cam
        self._apply_settings(cam, dv)
        self.width, self.height = cam.getEventResolution()

    def _apply_settings(self, cam: Any, dv: Any) -> None:
        name = cam.getCameraName()
        is_dvx = isinstance(cam, dv.io.camera.DVXplorer)
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

    def next_packet(self) -> tuple[NDArray[Any], int] | None:
        """Next batch from the camera, or ``None`` if none is ready; raises
        :class:`CameraUnavailableError` when the camera went away."""
        if self.camera is None or not self.camera.isRunning():
            self.camera = None
            raise CameraUnavailableError("the camera stopped or was disconnected")
        batch = self.camera.getNextEventBatch()
        if batch is None:
            return None
        ev = from_dv_store(batch)
        return (ev, int(ev["t"][-1])) if ev.size else None


class NetworkStreamSource:
    """Events from a dv network stream (``dv.io.NetworkReader`` over TCP), e.g. DV software."""

    def __init__(self, host: str, port: int) -> None:
        import dv_processing as dv

        self.host, self.port = host, int(port)
        try:
            self.reader = dv.io.NetworkReader(host, self.port)
        except RuntimeError as exc:
            raise SourceError(
                f"cannot connect to dv network stream {host}:{port}: {first_line(exc)[:120]}"
            ) from exc
        if not self.reader.isEventStreamAvailable():
            raise SourceError(f"dv network stream {host}:{port} carries no events")
        self.width, self.height = self.reader.getEventResolution()
        self.camera_name = self.reader.getCameraName()

    def next_packet(self) -> tuple[NDArray[Any], int] | None:
        """Next batch, or ``None`` if none is ready; raises SourceError once the stream ended."""
        batch = self.reader.getNextEventBatch()
        if batch is None:
            if not self.reader.isRunning():
                raise SourceError(f"dv network stream {self.host}:{self.port} ended")
            return None
        ev = from_dv_store(batch)
        return (ev, int(ev["t"][-1])) if ev.size else None

    def close(self) -> None:
        """Drop the connection."""
        self.reader = None
