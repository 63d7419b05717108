import numpy as np
import pytest

from hsnn_perception.core.streams import Pacer, synthetic_packets
from hsnn_perception.core.synthetic import SyntheticGestures


def test_packets_cover_the_samples_and_carry_labels():
    gen = SyntheticGestures(height=32, width=32, seed=1)
    packets = list(synthetic_packets(gen, 5000, n_samples=3))
    assert len(packets) == 3 * 160_000 // 5000
    assert [p.t_start_us for p in packets] == list(range(0, 480_000, 5000))
    labels = [span for p in packets for span in p.labels]
    assert [(s.start_us, s.end_us) for s in labels] == [
        (0, 160_000),
        (160_000, 320_000),
        (320_000, 480_000),
    ]
    reference = [events for events, *_ in gen.stream(3)]
    joined = np.concatenate([p.events for p in packets])
    np.testing.assert_array_equal(joined, np.concatenate(reference))
    for p in packets:
        assert ((p.events["t"] >= p.t_start_us) & (p.events["t"] < p.t_end_us)).all()


def test_pacer_releases_on_sensor_time():
    now = [100.0]
    pacer = Pacer(2.0, clock=lambda: now[0])
    assert pacer.due(10_000)  # first packet starts the clock
    assert not pacer.due(30_000)  # 20 ms of sensor time needs 10 ms of wall time at 2x
    now[0] += 0.011
    assert pacer.due(30_000)


def test_pacer_speed_zero_never_waits():
    pacer = Pacer(0.0, clock=lambda: 0.0)
    assert all(pacer.due(t) for t in range(0, 10**7, 10**6))


def test_bad_arguments():
    with pytest.raises(ValueError):
        Pacer(-1)
    with pytest.raises(ValueError):
        list(synthetic_packets(SyntheticGestures(32, 32), 0, 1))
