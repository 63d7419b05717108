"""The SNN node with its default model and backend (the native runtime) never imports torch
(~190 MiB of its memory): configured, activated and run on real event packets in a fresh
process, torch is not in ``sys.modules``; loading the runtime's torch variant in the same process
then does import it (the check sees torch where it is loaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import json, sys, time
import numpy as np
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn as R
from hsnn_perception.core.events.codecs import encode_packet, make_events
from hsnn_perception.core.hybrid.bundle import ModelBundle, default_bundle_path
from hsnn_perception.msg import EventPacket
from hsnn_perception.nodes.snn_node import SnnFeatureNode

rclpy.init()
node = SnnFeatureNode()
assert node.trigger_configure() == R.SUCCESS, dict(node.last_errors)
assert node.trigger_activate() == R.SUCCESS, dict(node.last_errors)
b = ModelBundle.load(default_bundle_path())
rng = np.random.default_rng(0)
n = 4000
t = np.sort(rng.integers(0, 3 * b.window_us, n))  # three windows: two of them close
ev = make_events(t, rng.integers(0, b.sensor_width, n), rng.integers(0, b.sensor_height, n),
                 rng.integers(0, 2, n))
for seq, part in enumerate(np.array_split(ev, 12)):
    tb, payload = encode_packet(part, "mono", b.sensor_width, b.sensor_height)
    msg = EventPacket(height=b.sensor_height, width=b.sensor_width, seq=seq, time_base=tb,
                      encoding="mono", is_bigendian=False)
    msg.events = payload
    node._on_events(msg)
deadline = time.monotonic() + 60
while node.counters["published.windows"] < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
result = {
    "backend": node._snn.backend_name,
    "windows": node.counters["published.windows"],
    "errors": node.counters["errors"],
    "torch": "torch" in sys.modules,
}
from hsnn_perception.core.snn.runtime import load_snn
load_snn(b.snn_file, "native-torch").close()
result["torch_after_native_torch"] = "torch" in sys.modules
node.trigger_deactivate()
node.destroy_node()
rclpy.try_shutdown()
print(json.dumps(result))
"""


def test_default_snn_node_runs_without_torch() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CODE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["windows"] >= 2 and result["errors"] == 0, result
    assert result["backend"].startswith("native"), result
    assert result["torch"] is False, result
    assert result["torch_after_native_torch"] is True, result
