"""Tests of hsnn_perception.core.snn.loihi_profiler: Lava's Loihi 2 energy profiler.

With the real Lava installed here (no lava-loihi, no board), ``Profiler.init`` has no profiler for
any run configuration: those tests use real Lava. The conversion of a board's figures is tested by
isolating the probe from lava-loihi's ``Loihi2HWProfiler`` (which cannot be installed here) with a
stand-in that returns the six-value breakdowns the public scripts read from it.
"""

from __future__ import annotations

import math

import pytest

from hsnn_perception.core.snn.lava import lava_loihi_installed
from hsnn_perception.core.snn.loihi_profiler import (
    PROFILER_NAME,
    LoihiEnergyProbe,
    LoihiProfilerError,
    lava_profiler_init,
)


class BoardProfiler:
    """Stands in for Loihi2HWProfiler: records the probe request, returns given breakdowns."""

    def __init__(self, energy_uj, power_w, fail: str = "") -> None:
        self.energy_uj, self.power_w, self.fail = energy_uj, power_w, fail
        self.probes: list[int] = []

    def energy_probe(self, num_steps: int) -> None:
        if self.fail == "probe":
            raise RuntimeError("board busy")
        self.probes.append(num_steps)

    def energy_breakdown(self):
        if self.fail == "read":
            raise RuntimeError("no samples")
        return self.energy_uj

    def power_breakdown(self):
        return self.power_w


def _probe(profiler: BoardProfiler, steps: int = 16) -> LoihiEnergyProbe:
    return LoihiEnergyProbe("cfg", steps, init=lambda cfg: profiler)


def test_real_lava_has_no_profiler_for_the_cpu_simulation():
    from lava.magma.core.run_configs import Loihi2SimCfg

    with pytest.raises(LoihiProfilerError, match="no energy profiler for Loihi2SimCfg.*lava-loihi"):
        lava_profiler_init(Loihi2SimCfg(select_tag="fixed_pt"))
    with pytest.raises(LoihiProfilerError, match="Loihi2SimCfg"):
        LoihiEnergyProbe(Loihi2SimCfg(select_tag="fixed_pt"), 16)


def test_real_lava_without_lava_loihi_has_no_hardware_profiler():
    if lava_loihi_installed():
        pytest.skip("lava-loihi is installed here")
    from lava.magma.core.run_configs import Loihi2HwCfg

    with pytest.raises(LoihiProfilerError, match="Loihi2HwCfg.*lava-loihi"):
        LoihiEnergyProbe(Loihi2HwCfg(), 16)


def test_board_figures_become_a_measurement_in_joules():
    board = BoardProfiler((150.0, 100.0, 50.0, 90.0, 40.0, 20.0), (1.5, 1.0, 0.5, 0.9, 0.4, 0.2))
    probe = _probe(board, steps=16)
    assert board.probes == [16]  # attached for the window's steps, before any run
    m = probe.read()
    assert m.energy_j == pytest.approx(150e-6)
    assert (m.dynamic_j, m.static_j) == (pytest.approx(100e-6), pytest.approx(50e-6))
    assert m.rails_j == {
        "vdd": pytest.approx(90e-6),
        "vdd_m": pytest.approx(40e-6),
        "vdd_io": pytest.approx(20e-6),
    }
    assert m.power_w == 1.5
    assert m.device_time_s == pytest.approx(150e-6 / 1.5)
    assert m.steps == 16 and m.description == PROFILER_NAME


@pytest.mark.parametrize(
    ("energy", "power", "match"),
    [
        ((1.0, 1.0, 0.0, 1.0, 0.0), (1.0,) * 6, "expected 6 values"),
        ((math.nan, 1.0, 0.0, 1.0, 0.0, 0.0), (1.0,) * 6, r"invalid .*\['total'\]"),
        ((1.0, -1.0, 2.0, 1.0, 0.0, 0.0), (1.0,) * 6, r"invalid .*\['dynamic'\]"),
        ((1.0,) * 6, (0.0,) * 6, "not > 0"),
        ((1.0,) * 6, (math.inf,) + (1.0,) * 5, "power_breakdown"),
        (None, (1.0,) * 6, "not a sequence of numbers"),
        (("a",) * 6, (1.0,) * 6, "not a sequence of numbers"),
    ],
)
def test_unusable_board_figures_are_refused(energy, power, match):
    with pytest.raises(LoihiProfilerError, match=match):
        _probe(BoardProfiler(energy, power)).read()


def test_profiler_failures_are_profiler_errors():
    with pytest.raises(LoihiProfilerError, match="could not be attached: board busy"):
        _probe(BoardProfiler((1.0,) * 6, (1.0,) * 6, fail="probe"))
    with pytest.raises(LoihiProfilerError, match="gave no figures: no samples"):
        _probe(BoardProfiler((1.0,) * 6, (1.0,) * 6, fail="read")).read()
    with pytest.raises(LoihiProfilerError, match="num_steps"):
        _probe(BoardProfiler((1.0,) * 6, (1.0,) * 6), steps=0)
