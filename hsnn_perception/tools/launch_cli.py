"""``hsnn-launch``: run a launch file of this package the way ``ros2 launch`` does, for machines
that have the ``launch``/``launch_ros`` packages but no ``ros2`` command (a wheel set-up).

    hsnn-launch pipeline.launch.py source:=rosbag source_path:=rec.mcap speed:=0
    hsnn-launch --show-args pipeline.launch.py

With a full ROS 2 install use ``ros2 launch hsnn_perception <file>`` instead: same file, same
arguments, same behaviour (launch.LaunchService handles SIGINT: the nodes get SIGINT, then
SIGTERM after 5 s, then SIGKILL). One difference: here SIGTERM, what a service manager stops a
service with, ends the launch the same way (``ros2 launch`` exits at once, and its nodes stop on
their own when their parent is gone; under systemd give it ``KillSignal=SIGINT``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from hsnn_perception.graph import PACKAGE


def parse_launch_arguments(items: list[str]) -> list[tuple[str, str]]:
    """``name:=value`` strings -> pairs; ValueError naming a malformed one."""
    pairs = []
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"launch argument {item!r} is not of the form name:=value")
        pairs.append((name, value))
    return pairs


def launch_file_path(name: str) -> str:
    """A path as given, or a file name in the package's share/<package>/launch directory."""
    if os.sep in name or os.path.isfile(name):
        return name
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = get_package_share_directory(PACKAGE)
    except PackageNotFoundError:
        raise ValueError(f"package {PACKAGE} is not installed (AMENT_PREFIX_PATH)") from None
    path = os.path.join(share, "launch", name)
    if not os.path.isfile(path):
        raise ValueError(f"no launch file {name!r} in {os.path.dirname(path)}")
    return path


# The LaunchService that SIGTERM stops: the latest one given to stop_on_sigterm.
_sigterm_service: Any = None


def stop_on_sigterm(service: Any) -> bool:
    """Have SIGTERM end ``service``'s run as a non-interactive SIGINT does: every process gets
    SIGINT, then SIGTERM and SIGKILL on launch's own timeouts. False where this launch version
    offers no way to (then SIGTERM is what launch makes of it).

    launch.LaunchService reads signals through its AsyncSafeSignalManager. For SIGTERM it cancels
    its run without stopping the processes it started (it logs that they may be orphaned), and
    as nothing installs a Python handler for SIGTERM, the signal ends the process before that
    even runs. The nodes are then left to stop on their own when their parent is gone
    (``nodes.base.die_with_parent``), without launch's escalation or its log of their exit."""
    global _sigterm_service
    try:
        from launch.utilities.signal_management import AsyncSafeSignalManager
    except ImportError:
        return False
    register = getattr(AsyncSafeSignalManager, "handle", None)
    if register is None:
        return False
    _sigterm_service = service
    if not getattr(register, "_hsnn_sigterm", False):  # patched once per process

        def handle(manager: Any, signum: int, handler: Any) -> Any:
            if signum == signal.SIGTERM and handler is not None:
                handler = _on_sigterm
            return register(manager, signum, handler)

        handle._hsnn_sigterm = True  # type: ignore[attr-defined]
        AsyncSafeSignalManager.handle = handle  # type: ignore[method-assign]
    # A Python handler, so that SIGTERM reaches the manager (through its wake-up file) instead
    # of ending the process.
    signal.signal(signal.SIGTERM, lambda *_: None)
    return True


def _on_sigterm(signum: int) -> None:
    print("[hsnn-launch] SIGTERM: stopping every process as on Ctrl-C", file=sys.stderr)
    pending = _sigterm_service.shutdown()  # a coroutine when called on the launch loop, as here
    if pending is not None:
        asyncio.ensure_future(pending)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hsnn-launch", description=__doc__.split("\n\n")[0])
    ap.add_argument("launch_file", help="file name in share/hsnn_perception/launch, or a path")
    ap.add_argument("arguments", nargs="*", help="launch arguments, name:=value")
    ap.add_argument("--show-args", action="store_true", help="list the launch arguments")
    ap.add_argument("--debug", action="store_true", help="launch's debug output")
    ap.add_argument(
        "-n",
        "--noninteractive",
        action="store_true",
        help="not run from a terminal (a service manager, a script): a SIGINT to this process "
        "is passed on to the nodes (interactively the terminal sends it to them itself)",
    )
    opts = ap.parse_intermixed_args(argv)  # options before or after the launch arguments
    try:
        import launch_ros  # noqa: F401 - the file needs it; say so here, not in a traceback
        from launch.launch_description_sources import AnyLaunchDescriptionSource

        import launch
    except ImportError as exc:
        print(
            f"hsnn-launch: the ROS 2 launch stack is not installed ({exc}); "
            "source a ROS 2 installation or run scripts/setup.sh with the overlay",
            file=sys.stderr,
        )
        return 2
    try:
        path = launch_file_path(opts.launch_file)
        arguments = parse_launch_arguments(opts.arguments)
    except ValueError as exc:
        print(f"hsnn-launch: {exc}", file=sys.stderr)
        return 2
    source = AnyLaunchDescriptionSource(path)
    if opts.show_args:
        context = launch.LaunchContext()
        for arg in source.get_launch_description(context).get_launch_arguments():
            default = "".join(s.perform(context) for s in arg.default_value or [])
            print(f"    '{arg.name}':\n        {arg.description}\n        (default: '{default}')")
        return 0
    service = launch.LaunchService(
        argv=[f"{k}:={v}" for k, v in arguments],
        debug=opts.debug,
        noninteractive=opts.noninteractive,
    )
    stop_on_sigterm(service)
    service.include_launch_description(
        launch.LaunchDescription(
            [launch.actions.IncludeLaunchDescription(source, launch_arguments=arguments)]
        )
    )
    return service.run()


if __name__ == "__main__":
    raise SystemExit(main())
