"""Measured energy of the SNN stage on Loihi 2 hardware, through Lava's profiler.

Lava (lava-nc, public) defines ``lava.utils.profiler.Profiler.init(run_cfg)``: for
``Loihi2HwCfg`` it returns ``Loihi2HWProfiler`` from Intel's lava-loihi extension (INRC members
only), which reads the power measurement circuits of the Loihi 2 board; for any other run
configuration, or without lava-loihi, it raises ``NotImplementedError``. What is public of its
interface (lava-nc PR #444 "Add Profiler base class", and users' published Loihi 2 scripts):

* ``energy_probe(num_steps=N)`` before the network runs N steps;
* after the run, ``energy_breakdown()`` -> (total, dynamic, static, vdd, vdd_m, vdd_io) energy
  and ``power_breakdown()`` -> the same six as power.

Units: energy in microjoules, power in watts. That is how the published scripts use it (run time
= total energy x 1e-6 / total power); Intel's own documentation is not public, so the unit is a
named constant here and every figure's ``method`` says where it came from. Nothing in this module
has run on a Loihi 2 board (none was available to this project); without lava-loihi the probe
fails with :class:`LoihiProfilerError` and the SNN stage falls back to the modelled figure, saying
why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hsnn_perception.core.energy.models import LoihiMeasurement
from hsnn_perception.core.errors import SnnError

# Unit of the figures Loihi2HWProfiler returns (see the module docstring for the source).
PROFILER_ENERGY_UNIT_J = 1e-6
PROFILER_POWER_UNIT_W = 1.0
BREAKDOWN_PARTS = ("total", "dynamic", "static", "vdd", "vdd_m", "vdd_io")
PROFILER_NAME = "Lava Loihi2HWProfiler energy probe (lava-loihi)"


class LoihiProfilerError(SnnError, RuntimeError):
    """Lava has no energy profiler for this run configuration, or it gave unusable figures."""


def lava_profiler_init(run_cfg: Any) -> Any:
    """``lava.utils.profiler.Profiler.init(run_cfg)`` with its failures made clear."""
    try:
        import warnings

        with warnings.catch_warnings():
            # Lava warns at import when lava-loihi is absent; the error below says it instead.
            warnings.simplefilter("ignore")
            from lava.utils.profiler import Profiler
    except Exception as exc:  # Lava itself missing or broken
        raise LoihiProfilerError(f"Lava's profiler cannot be imported: {exc}") from exc
    try:
        return Profiler.init(run_cfg)
    except NotImplementedError as exc:
        raise LoihiProfilerError(
            f"Lava has no energy profiler for {type(run_cfg).__name__} here ({exc}); it needs "
            "Intel's lava-loihi extension and a Loihi 2 run configuration (Loihi2HwCfg)"
        ) from exc
    except Exception as exc:
        raise LoihiProfilerError(f"Lava's profiler failed to start: {exc}") from exc


def _breakdown(values: Any, what: str) -> dict[str, float]:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise LoihiProfilerError(f"{what}: not a sequence of numbers ({values!r})") from exc
    if len(numbers) != len(BREAKDOWN_PARTS):
        raise LoihiProfilerError(
            f"{what}: expected {len(BREAKDOWN_PARTS)} values {BREAKDOWN_PARTS}, got {len(numbers)}"
        )
    bad = [n for n, v in zip(BREAKDOWN_PARTS, numbers, strict=True) if not math.isfinite(v)]
    bad += [n for n, v in zip(BREAKDOWN_PARTS, numbers, strict=True) if v < 0]
    if bad:
        raise LoihiProfilerError(f"{what}: invalid (NaN, infinite or negative) {bad}: {numbers}")
    return dict(zip(BREAKDOWN_PARTS, numbers, strict=True))


class LoihiEnergyProbe:
    """Lava's energy probe on one compiled network that runs ``num_steps`` per window.

    Create it before the network's first ``run`` (the profiler attaches to the run
    configuration, which is used when Lava compiles); call :meth:`read` after each run.
    ``init`` replaces :func:`lava_profiler_init` (tests isolate this class with it).
    """

    def __init__(
        self, run_cfg: Any, num_steps: int, init: Callable[[Any], Any] | None = None
    ) -> None:
        if num_steps < 1:
            raise LoihiProfilerError(f"num_steps must be >= 1, got {num_steps}")
        self.num_steps = int(num_steps)
        self._profiler = (init or lava_profiler_init)(run_cfg)
        try:
            self._profiler.energy_probe(num_steps=self.num_steps)
        except Exception as exc:
            raise LoihiProfilerError(f"Lava's energy probe could not be attached: {exc}") from exc

    def read(self) -> LoihiMeasurement:
        """The energy of the last run, as the board measured it."""
        try:
            energy = self._profiler.energy_breakdown()
            power = self._profiler.power_breakdown()
        except Exception as exc:
            raise LoihiProfilerError(f"Lava's profiler gave no figures: {exc}") from exc
        e = _breakdown(energy, "energy_breakdown()")
        p = _breakdown(power, "power_breakdown()")
        energy_j = e["total"] * PROFILER_ENERGY_UNIT_J
        power_w = p["total"] * PROFILER_POWER_UNIT_W
        if power_w <= 0:
            raise LoihiProfilerError(f"power_breakdown(): total power {power_w} W is not > 0")
        return LoihiMeasurement(
            energy_j=energy_j,
            dynamic_j=e["dynamic"] * PROFILER_ENERGY_UNIT_J,
            static_j=e["static"] * PROFILER_ENERGY_UNIT_J,
            power_w=power_w,
            device_time_s=energy_j / power_w,
            rails_j={k: e[k] * PROFILER_ENERGY_UNIT_J for k in ("vdd", "vdd_m", "vdd_io")},
            steps=self.num_steps,
            description=PROFILER_NAME,
        )
