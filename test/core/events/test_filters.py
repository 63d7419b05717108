"""Tests of the event filters and the dv-processing conversions
(hsnn_perception.core.events.filters)."""

from __future__ import annotations

import dv_processing as dv
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsnn_perception.core.events.codecs import EVENT_DTYPE, make_events
from hsnn_perception.core.events.filters import (
    BackgroundActivityFilter,
    EventFilterChain,
    FilterConfigError,
    MappedWindower,
    PolarityFilter,
    RoiCrop,
    SpatialMap,
    from_dv_store,
    model_input_chain,
    to_dv_store,
)


def random_events(n: int, height: int, width: int, seed: int = 0, span: int = 100_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, span, n))
    return make_events(
        t, rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n)
    )


def test_dv_store_round_trip_and_dv_sees_the_same_events() -> None:
    ev = random_events(500, 480, 640)
    store = to_dv_store(ev)
    assert isinstance(store, dv.EventStore) and store.size() == 500
    assert store.getLowestTime() == ev["t"][0] and store.getHighestTime() == ev["t"][-1]
    # dv's own slicing agrees with numpy on which events lie in a time range
    a, b = int(ev["t"][100]), int(ev["t"][300])
    assert store.sliceTime(a, b).size() == int(np.count_nonzero((ev["t"] >= a) & (ev["t"] < b)))
    back = from_dv_store(store)
    assert back.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(back, ev)
    assert from_dv_store(dv.EventStore()).size == 0


def test_roi_crop_keeps_inside_and_shifts() -> None:
    ev = make_events([1, 2, 3, 4], [10, 9, 29, 30], [5, 5, 24, 5], [0, 1, 0, 1])
    f = RoiCrop((480, 640), x=10, y=5, width=20, height=20)
    out = f(ev)
    assert f.out_shape == (20, 20)
    assert out.tolist() == [(1, 0, 0, 0), (3, 19, 19, 0)]
    with pytest.raises(FilterConfigError, match="not inside the 640x480"):
        RoiCrop((480, 640), x=630, y=0, width=20, height=10)


def test_polarity_filter() -> None:
    ev = make_events([1, 2, 3], [0, 1, 2], [0, 0, 0], [0, 1, 1])
    assert PolarityFilter((4, 4), "on")(ev)["x"].tolist() == [1, 2]
    assert PolarityFilter((4, 4), "off")(ev)["x"].tolist() == [0]
    with pytest.raises(FilterConfigError, match="'both'"):
        PolarityFilter((4, 4), "both")


def test_spatial_map_dvxplorer_to_128_crop() -> None:
    f = SpatialMap((480, 640), 128, 128, mode="crop")
    assert f.crop == (80, 0, 480, 480)
    ev = make_events([0, 1, 2, 3, 4], [79, 80, 559, 560, 320], [0, 0, 479, 5, 240], [1, 1, 0, 0, 1])
    out = f(ev)
    # columns 0..79 and 560..639 are cropped away; 480 -> 128 by floor(x * 128 / 480)
    assert out.tolist() == [(1, 0, 0, 1), (2, 127, 127, 0), (4, 64, 64, 1)]


@settings(max_examples=40, deadline=None)
@given(
    ih=st.integers(1, 300),
    iw=st.integers(1, 300),
    oh=st.integers(1, 300),
    ow=st.integers(1, 300),
    mode=st.sampled_from(["crop", "stretch"]),
)
def test_spatial_map_covers_output_exactly(ih, iw, oh, ow, mode) -> None:
    """Every input pixel of the crop lands in range, every output pixel receives some input."""
    if oh > ih or ow > iw:
        with pytest.raises(FilterConfigError):
            SpatialMap((ih, iw), oh, ow, mode)
        return
    f = SpatialMap((ih, iw), oh, ow, mode)
    yy, xx = np.mgrid[0:ih, 0:iw]
    ev = make_events(np.zeros(ih * iw, dtype=np.int64), xx.ravel(), yy.ravel(), np.ones(ih * iw))
    out = f(ev)
    x0, y0, cw, ch = f.crop
    assert out.size == cw * ch
    assert out["x"].max() == ow - 1 and out["y"].max() == oh - 1
    hits = np.zeros((oh, ow), dtype=np.int64)
    np.add.at(hits, (out["y"], out["x"]), 1)
    assert hits.min() >= 1
    if mode == "crop":  # aspect ratio kept to within one pixel
        assert abs(cw * oh - ch * ow) <= max(oh, ow)


def test_background_activity_filter_through_dv() -> None:
    # Events after the first time window (dv's timestamp map starts at 0, see module docs).
    ev = make_events(
        [10_000, 10_500, 10_600, 50_000, 60_000, 61_000],
        [10, 11, 100, 10, 300, 301],
        [10, 10, 100, 11, 300, 300],
        [1, 0, 1, 1, 0, 1],
    )
    f = BackgroundActivityFilter((480, 640), time_window_us=2000)
    out = f(ev[:5])
    # (11,10) has a neighbour 500 us before; (10,10) at 10_000 and (100,100) have none;
    # (10,11) at 50_000 is 39.5 ms after its neighbour.
    assert out["t"].tolist() == [10_500]
    # state carries over packets: (301,300) follows (300,300) from the previous packet
    assert f(ev[5:])["t"].tolist() == [61_000]
    # a 50 ms window also accepts (10,11) 39.5 ms after its neighbours (times shifted past the
    # 50 ms start-up transient)
    late = ev[:5].copy()
    late["t"] += 100_000
    wide = BackgroundActivityFilter((480, 640), time_window_us=50_000)
    assert wide(late)["t"].tolist() == [110_500, 150_000]


def test_chain_from_config_dvxplorer_to_model_input() -> None:
    cfg = {
        "stages": [
            {"type": "roi", "x": 0, "y": 0, "width": 640, "height": 480},
            {"type": "polarity", "keep": "on"},
            {"type": "background_activity", "time_window_us": 5000},
            {"type": "spatial_map", "height": 128, "width": 128},
        ]
    }
    chain = EventFilterChain.from_config(cfg, (480, 640))
    assert chain.out_shape == (128, 128)
    ev = random_events(3000, 480, 640, span=10_000)
    out = chain(ev)
    assert out.size < ev.size and (out["p"] == 1).all()
    assert out["x"].max() < 128 and out["y"].max() < 128
    assert out.size <= int(np.count_nonzero(ev["p"] == 1))
    assert np.all(np.diff(out["t"]) >= 0)


def test_chain_pass_through_and_config_errors() -> None:
    ev = random_events(10, 4, 4)
    np.testing.assert_array_equal(EventFilterChain.from_config(None, (4, 4))(ev), ev)
    with pytest.raises(FilterConfigError, match="unknown filter type 'blur'"):
        EventFilterChain.from_config([{"type": "blur"}], (4, 4))
    with pytest.raises(FilterConfigError, match=r"unknown keys \['size'\]"):
        EventFilterChain.from_config([{"type": "polarity", "keep": "on", "size": 3}], (4, 4))
    with pytest.raises(FilterConfigError, match="'type' key"):
        EventFilterChain.from_config([{"keep": "on"}], (4, 4))
    with pytest.raises(FilterConfigError, match="filter 'roi'"):
        EventFilterChain.from_config([{"type": "roi", "x": 0}], (4, 4))
    with pytest.raises(FilterConfigError, match="unknown filter chain keys"):
        EventFilterChain.from_config({"filters": []}, (4, 4))
    with pytest.raises(FilterConfigError, match="time_window_us"):
        EventFilterChain.from_config([{"type": "background_activity", "time_window_us": 0}], (4, 4))


# --- where events enter the model (the SNN node's input_roi / input_mapping) ---------------------


def _every_pixel(ih: int, iw: int) -> np.ndarray:
    yy, xx = np.mgrid[0:ih, 0:iw]
    return make_events(np.zeros(ih * iw, dtype=np.int64), xx.ravel(), yy.ravel(), np.ones(ih * iw))


@settings(max_examples=40, deadline=None)
@given(ih=st.integers(1, 300), iw=st.integers(1, 300), oh=st.integers(1, 64), ow=st.integers(1, 64))
def test_spatial_map_pad_keeps_every_event_and_the_aspect_ratio(ih, iw, oh, ow) -> None:
    if oh > ih or ow > iw:
        return
    f = SpatialMap((ih, iw), oh, ow, "pad")
    x0, y0, cw, ch = f.crop
    assert (cw, ch) >= (iw, ih) and (cw == iw or ch == ih) and x0 <= 0 and y0 <= 0
    assert abs(cw * oh - ch * ow) <= max(oh, ow)  # the frame has the output's aspect ratio
    out = f(_every_pixel(ih, iw))
    assert out.size == ih * iw
    assert out["x"].max() < ow and out["y"].max() < oh


def test_spatial_map_pad_davis346() -> None:
    f = SpatialMap((260, 346), 32, 32, "pad")
    assert f.crop == (0, -43, 346, 346)  # 86 padding rows, 43 above
    ev = make_events([0, 1, 2], [0, 345, 173], [0, 259, 130], [0, 1, 1])
    # (y + 43) * 32 // 346: row 0 -> 3, row 259 -> 27; x * 32 // 346
    assert f(ev).tolist() == [(0, 0, 3, 0), (1, 31, 27, 1), (2, 16, 16, 1)]


@pytest.mark.parametrize("sensor", [(128, 128), (260, 346), (480, 640), (720, 1280)])
@pytest.mark.parametrize("mapping", ["scale", "crop", "pad"])
def test_model_input_chain_runs_every_sensor_into_32x32(sensor, mapping) -> None:
    chain = model_input_chain(sensor, (32, 32), mapping)
    assert chain.in_shape == sensor and chain.out_shape == (32, 32)
    out = chain(_every_pixel(*sensor))
    assert out["x"].max() == 31 and out["y"].max() <= 31
    hits = np.zeros((32, 32), dtype=np.int64)
    np.add.at(hits, (out["y"], out["x"]), 1)
    if mapping != "pad":  # padding rows/columns receive nothing
        assert hits.min() >= 1
    else:
        assert out.size == sensor[0] * sensor[1]


def test_scale_with_an_integer_factor_is_the_windower_s_block_pooling() -> None:
    ev = random_events(5000, 128, 128, seed=2)
    out = model_input_chain((128, 128), (32, 32), "scale")(ev)
    np.testing.assert_array_equal(out["x"], ev["x"] // 4)
    np.testing.assert_array_equal(out["y"], ev["y"] // 4)


def test_roi_then_scale_is_the_centre_crop() -> None:
    ev = random_events(5000, 720, 1280, seed=3)
    crop = model_input_chain((720, 1280), (32, 32), "crop")(ev)
    roi = model_input_chain((720, 1280), (32, 32), "scale", [280, 0, 720, 720])(ev)
    np.testing.assert_array_equal(roi, crop)
    # width 0 (the parameter's default [0, 0, 0, 0]) is the whole sensor
    whole = model_input_chain((720, 1280), (32, 32), "scale", [0, 0, 0, 0])(ev)
    np.testing.assert_array_equal(whole, model_input_chain((720, 1280), (32, 32), "scale")(ev))


@pytest.mark.parametrize(
    ("mapping", "roi", "message"),
    [
        ("zoom", [], "input mapping must be one of"),
        ("scale", [0, 0, 2000, 10], "not inside the 1280x720"),
        ("scale", [0, 0, 10], "x, y, width, height"),
        ("crop", [0, 0, 16, 16], "cannot map 16x16 up to a larger 32x32"),
    ],
)
def test_model_input_chain_errors_name_the_problem(mapping, roi, message) -> None:
    with pytest.raises(FilterConfigError, match=message):
        model_input_chain((720, 1280), (32, 32), mapping, roi)


def test_mapped_windower_maps_then_bins_and_counts_what_it_leaves_out() -> None:
    from hsnn_perception.core.events.binning import EventWindower

    chain = model_input_chain((720, 1280), (32, 32), "crop")
    windower = MappedWindower(chain, EventWindower(1000, 2, 32, 32, 32, 32))
    ev = make_events([10, 20, 2500], [0, 640, 640], [0, 360, 360], [1, 1, 0])
    (window,) = windower.push(ev)  # the event at 2500 us completes window 0 (0..2000 us)
    assert windower.mapped_out_events == 1  # column 0 lies outside the centre crop
    assert int(window.frames.sum()) == 1 and window.frames[0, 1, 16, 16] == 1
    assert windower.windows_emitted == 1  # the windower's own attributes show through


@pytest.mark.parametrize("mapping", ["scale", "crop", "pad"])
@pytest.mark.parametrize(
    "sensor, roi",
    [((480, 640), ()), ((720, 1280), ()), ((260, 346), (10, 20, 300, 200)), ((128, 128), ())],
)
def test_axis_maps_are_the_chain_pixel_by_pixel(sensor, roi, mapping) -> None:
    """The per-axis tables the fused front end maps by send every sensor pixel where the chain
    sends it (or leave it out where the chain does)."""
    chain = model_input_chain(sensor, (32, 32), mapping, roi)
    h, w = sensor
    xmap, ymap = chain.axis_maps(w, h)
    yy, xx = np.mgrid[0:h, 0:w]
    ev = make_events(np.zeros(h * w, np.int64), xx.ravel(), yy.ravel(), np.zeros(h * w))
    mapped = chain(ev)
    keep = (xmap[ev["x"]] >= 0) & (ymap[ev["y"]] >= 0)
    np.testing.assert_array_equal(mapped["x"], xmap[ev["x"][keep]])
    np.testing.assert_array_equal(mapped["y"], ymap[ev["y"][keep]])
    polarity = EventFilterChain.from_config([{"type": "polarity", "keep": "on"}], sensor)
    assert polarity.axis_maps(w, h) is None
