"""The energy aggregator over DDS: stage reports of one window are matched on the window's sensor
start time (the driver numbers windows from its own first event), totals carry the SNN node's
window id, a window only the driver saw gives no total, a window missing a stage gives a partial
total that names what is missing."""

from __future__ import annotations

import math
import random

import pytest
import rclpy

from hsnn_perception.core.energy.figure import EnergyFigure, unavailable
from hsnn_perception.core.energy.models import loihi_energy
from hsnn_perception.msg import EnergyReport
from hsnn_perception.nodes.base import reliable_qos
from hsnn_perception.nodes.conversions import energy_report, us_to_time

from .test_bad_input import Probe, start

pytestmark = pytest.mark.slow
W = 160_000


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _fig(stage: str, energy: float) -> EnergyFigure:
    if stage == "driver":
        return unavailable("driver", "cpu", "no readable CPU energy counter (RAPL)", 1e-4)
    fig = loihi_energy(100, 10, 1, 1e-3)
    fig.stage, fig.energy_j = stage, energy
    return fig


def test_reports_are_matched_on_sensor_time(ros, tmp_path):
    ns = f"agg_{random.randint(0, 10**6)}"
    params = {"timeout_s": 0.5, "diagnostics_period_s": 0.2}
    with start({"energy_aggregator"}, ns, tmp_path, energy_aggregator=params) as group:
        probe = Probe(ns)
        totals: list[EnergyReport] = []
        probe.node.create_subscription(
            EnergyReport, "energy/total", totals.append, reliable_qos(50)
        )
        pub = probe.node.create_publisher(EnergyReport, "energy", reliable_qos(50))
        probe.wait_for_subscriber(pub)
        stamp = probe.node.get_clock().now().to_msg()

        def report(stage: str, window_id: int, window: int, energy: float = 1e-6) -> None:
            pub.publish(energy_report(_fig(stage, energy), window_id, window * W, stamp))

        # Window 3 of the stream: the driver calls it 5 (it saw earlier events), the others 3.
        report("driver", 5, 3)
        for stage in ("snn", "bridge", "classifier"):
            report(stage, 3, 3, 2e-6)
        report("driver", 6, 4)  # a window only the driver saw: no inference, no total
        report("snn", 5, 5, 3e-6)  # a window missing the bridge, classifier, driver reports
        assert probe.spin_until(lambda: len(totals) >= 2, 30), group.log("energy_aggregator")
        dropped = lambda: probe.diag("energy_aggregator").get("dropped.driver_only_windows")  # noqa: E731
        assert probe.spin_until(lambda: dropped() == "1", 10), probe.diag("energy_aggregator")
        probe.spin_until(lambda: False, 0.5)
    full, partial = sorted(
        totals, key=lambda m: m.window_stamp.nanosec + m.window_stamp.sec * 10**9
    )
    assert (full.window_id, full.window_stamp) == (3, us_to_time(3 * W))
    assert full.energy_j == pytest.approx(6e-6) and full.source == "modelled"
    assert "unavailable, not included (lower bound): driver" in full.method
    assert partial.window_id == 5 and partial.energy_j == pytest.approx(3e-6)
    assert "no report from: driver, bridge, classifier" in partial.method
    assert len(totals) == 2 and not math.isnan(full.latency_s)


def test_bad_reports_are_counted_and_totals_go_on(ros, tmp_path):
    """Reports that used to kill the aggregator (in its timer, 2 s later): an unknown source, an
    "unavailable" with an energy, op counts whose sum passes 2^64; and a gap in window ids."""
    ns = f"agg_bad_{random.randint(0, 10**6)}"
    params = {"timeout_s": 0.3, "diagnostics_period_s": 0.2}
    with start({"energy_aggregator"}, ns, tmp_path, energy_aggregator=params) as group:
        probe = Probe(ns)
        totals: list[EnergyReport] = []
        probe.node.create_subscription(
            EnergyReport, "energy/total", totals.append, reliable_qos(50)
        )
        pub = probe.node.create_publisher(EnergyReport, "energy", reliable_qos(50))
        probe.wait_for_subscriber(pub)
        stamp = probe.node.get_clock().now().to_msg()

        def report(stage: str, window_id: int, window: int) -> EnergyReport:
            return energy_report(_fig(stage, 1e-6), window_id, window * W, stamp)

        unknown = report("snn", 1, 1)
        unknown.source = "guessed"
        finite_unavailable = report("snn", 1, 1)
        finite_unavailable.source = "unavailable"
        pub.publish(unknown)
        pub.publish(finite_unavailable)
        for stage in ("snn", "bridge", "classifier"):  # window 2: op counts sum past 2^64
            big = report(stage, 2, 2)
            big.synaptic_ops = (1 << 64) - 1
            pub.publish(big)
        for stage in ("snn", "bridge", "classifier"):  # window 5: ids 3 and 4 never came
            pub.publish(report(stage, 5, 5))
        assert probe.spin_until(lambda: len(totals) >= 2, 30), group.log("energy_aggregator")
        diag = lambda: probe.diag("energy_aggregator")  # noqa: E731
        assert probe.spin_until(
            lambda: (
                diag().get("errors.report") == "2"
                and diag().get("saturated.op_counts") == "1"
                and diag().get("lost.windows.snn") == "2"
            ),
            10,
        ), diag()
        assert diag().get("errors.internal") is None and group.poll()["energy_aggregator"] is None
    by_id = {t.window_id: t for t in totals}
    assert by_id[2].synaptic_ops == (1 << 64) - 1 and "saturated" in by_id[2].method
    assert by_id[5].energy_j == pytest.approx(3e-6)
