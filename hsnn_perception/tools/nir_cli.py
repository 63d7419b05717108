"""``hsnn-nir``: exchange the spiking layers with other neuromorphic tools through NIR.

    hsnn-nir export BUNDLE OUT.nir [--dt S]
    hsnn-nir import IN.nir OUT_BUNDLE [--ann ANN.onnx] [--template BUNDLE] [--dt S]
                                      [--labels a,b,...] [--name NAME] [--calibration N]

``export`` writes the bundle's netx network as a NIR graph (Input, Conv2d / Affine, CubaLIF or IF,
Flatten, Output) with ``dt`` seconds per Loihi step (default 1e-4, snnTorch's convention) in its
metadata. ``import`` turns a NIR graph into a bundle that the nodes, hsnn-eval and Lava run:
weights brought to Loihi's fixed point (kept as they are when already integers, else quantised
as hsnn-convert does and, with ``--calibration N``, thresholds corrected on N synthetic gesture
windows). The template bundle (default: the shipped model) gives the sensor, binning, window and
labels. docs/nir.md has the mapping and what NIR cannot express.

Bad input ends with ``hsnn-nir: error: ...`` and exit status 1 (2 for a bad command line),
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hsnn_perception.tools.errors import number_arg, one_line, show_defaults

PROG = "hsnn-nir"
EXIT_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    from hsnn_perception.core.snn.nir.layers import DEFAULT_DT

    parser = argparse.ArgumentParser(
        prog=PROG, description="Export / import the spiking layers as NIR graphs (docs/nir.md)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="write a bundle's spiking layers as a NIR graph")
    exp.add_argument("bundle", type=Path, help="model bundle directory (or its manifest.json)")
    exp.add_argument("out", type=Path, help="NIR file to write (HDF5, usually *.nir)")
    exp.add_argument(
        "--dt",
        type=number_arg(float, 0, above=True),
        default=DEFAULT_DT,
        help="seconds per Loihi step for the NIR time constants",
    )
    exp.add_argument("--json", action="store_true", help="print the node table as JSON")
    imp = sub.add_parser("import", help="make a bundle from a NIR graph")
    imp.add_argument("nir", type=Path, help="NIR file (nir.write / another library's export)")
    imp.add_argument("out", type=Path, help="bundle directory to write")
    imp.add_argument("--ann", type=Path, help="ONNX classifier over the accumulated SNN output")
    imp.add_argument(
        "--template",
        type=Path,
        help="bundle whose sensor, binning, window and labels the new one takes "
        "(default: the shipped model)",
    )
    imp.add_argument(
        "--dt",
        type=number_arg(float, 0, above=True),
        help=f"seconds per step when the graph's metadata has no dt (default {DEFAULT_DT:g})",
    )
    imp.add_argument("--labels", help="comma-separated class names (default: the template's)")
    imp.add_argument("--name", help="bundle name (default: the NIR file's stem)")
    imp.add_argument(
        "--calibration",
        type=number_arg(int, 0),
        default=64,
        help="synthetic gesture windows for the threshold calibration of quantised layers "
        "(0: none)",
    )
    imp.add_argument("--seed", type=number_arg(int, 0), default=0, help="calibration data seed")
    imp.add_argument("--json", action="store_true", help="print the import report as JSON")
    return show_defaults(parser)


def _export(args: argparse.Namespace) -> int:
    from hsnn_perception.core.hybrid.bundle import ModelBundle
    from hsnn_perception.core.snn.nir.export import export_snn
    from hsnn_perception.core.snn.nir.layers import NirError

    bundle = ModelBundle.load(args.bundle)
    if bundle.snn_file is None:
        raise NirError(f"{bundle.path}: the bundle has no spiking part (an ANN baseline)")
    report = export_snn(
        bundle.snn_file,
        args.out,
        args.dt,
        metadata={"bundle": bundle.name, "bin_us": bundle.bin_us, "timesteps": bundle.timesteps},
    )
    if args.json:
        print(json.dumps(report.__dict__, indent=1))
        return 0
    print(f"wrote {report.out}: dt {report.dt:g} s per step, Loihi latency {report.latency_steps}")
    for row in report.nodes:
        extra = ", ".join(
            f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in row.items()
            if k not in ("node", "type")
        )
        print(f"  {row['node']:<10} {row['type']:<8} {extra}")
    return 0


def _calibration(template: Any, count: int, seed: int) -> Any:
    if count < 1:
        return None
    from hsnn_perception.training.data import InputSpec, synthetic_spikeset

    spec = InputSpec(
        sensor_height=template.sensor_height,
        sensor_width=template.sensor_width,
        height=template.height,
        width=template.width,
        bin_us=template.bin_us,
        timesteps=template.timesteps,
    )
    # Indices far from the training and test ranges of the shipped recipe (0.. and 1e6..).
    return synthetic_spikeset(count, spec, seed=seed, first_index=3_000_000).spikes


def _import(args: argparse.Namespace) -> int:
    from hsnn_perception.core.hybrid.bundle import ModelBundle, default_bundle_path
    from hsnn_perception.core.snn.nir.bundle import import_graph

    template = ModelBundle.load(args.template or default_bundle_path())
    labels = None
    if args.labels is not None:
        labels = tuple(label.strip() for label in args.labels.split(",") if label.strip())
        if not labels:
            raise ValueError("--labels names no class")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"{args.out} is a file: give a directory for the bundle")
    bundle, report = import_graph(
        args.nir,
        args.out,
        template,
        ann=args.ann,
        dt=args.dt,
        name=args.name,
        labels=labels,
        calibration=_calibration(template, args.calibration, args.seed),
        log=None if args.json else print,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
        return 0
    kind = "hybrid" if bundle.ann_file is not None else "SNN-only"
    print(
        f"wrote {bundle.path} ({kind}, dt {report.dt:g} s from the {report.dt_from}): "
        f"{len(report.layers)} spiking layers, output {list(bundle.feature_shape)}"
    )
    for layer in report.layers:
        agree = (
            f", {layer.float_agreement:.4f} of spikes as the real-valued graph"
            if layer.float_agreement is not None
            else ""
        )
        print(f"  {layer.name}: {layer.method}, vThMant {layer.vth}{agree}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``hsnn-nir``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed the usage message
        return int(exc.code or 0)
    try:
        status = _export(args) if args.command == "export" else _import(args)
        sys.stdout.flush()
        return status
    except (ValueError, OSError, ImportError) as exc:  # NirError, BundleError: ValueError
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
