"""``hsnn-eval``: evaluate a model (or a family of models) on a labelled event bag, offline.

    hsnn-eval BAG [--bundle models/default] [--out reports/NAME] [--chip loihi] ...

``--bundle`` may be one bundle directory or a directory of bundles (a model family): then each is
evaluated and ``family.md`` / ``family.json`` compare them. Bad input (not a bag, a bag without
events, a broken bundle) ends with a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hsnn_perception.core.bundle import MANIFEST, default_bundle_path
from hsnn_perception.core.energy import ANN_DEVICE_PROFILES, NEUROMORPHIC_PROFILES

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hsnn-eval",
        description="Evaluate hybrid SNN/ANN models on a labelled event bag (offline).",
    )
    p.add_argument("bag", type=Path, help="rosbag2 directory or .mcap/.db3 file with /events")
    p.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="model bundle directory, or a directory of bundles (default: models/default)",
    )
    p.add_argument("--out", type=Path, default=None, help="report directory (default reports/BAG)")
    p.add_argument("--backend", default="native", help="SNN backend (native, lava, ...)")
    p.add_argument("--chip", default="loihi", choices=sorted(NEUROMORPHIC_PROFILES))
    p.add_argument(
        "--loihi-cores", type=int, default=0, help="cores the SNN occupies (adds static power)"
    )
    p.add_argument(
        "--ann-device",
        default="",
        choices=["", *sorted(ANN_DEVICE_PROFILES)],
        help="energy model of the ANN part where no power meter is readable",
    )
    p.add_argument("--providers", default="cpu", help="ONNX Runtime providers (cpu, auto, ...)")
    p.add_argument("--max-windows", type=int, default=0, help="stop after N windows (0: all)")
    p.add_argument("--no-meter", action="store_true", help="do not read power meters")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--require-labels", action="store_true", help="fail if the bag has no ground truth"
    )
    return p


def find_bundles(path: Path) -> list[Path]:
    """``path`` itself if it is a bundle, else its sub-directories that are bundles (sorted)."""
    if (path / MANIFEST).is_file() or path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if (p / MANIFEST).is_file())
    return []


def eval_main(argv: list[str] | None = None) -> int:
    from hsnn_perception.evaluation.offline import OfflineSettings, evaluate_offline
    from hsnn_perception.evaluation.report import summarize, write_family_report, write_report

    args = build_parser().parse_args(argv)
    bundle_arg = args.bundle or default_bundle_path()
    out = args.out or Path("reports") / args.bag.name.split(".")[0]
    settings = OfflineSettings(
        backend=args.backend,
        chip=args.chip,
        loihi_cores=args.loihi_cores,
        ann_device=args.ann_device,
        providers=args.providers,
        measure=not args.no_meter,
        max_windows=args.max_windows,
        progress=not args.no_progress,
    )
    try:
        if args.max_windows < 0 or args.loihi_cores < 0:
            raise ValueError("--max-windows and --loihi-cores must be >= 0")
        bundles = find_bundles(Path(bundle_arg))
        if not bundles:
            raise ValueError(f"no model bundle at {bundle_arg} (no {MANIFEST} there or below)")
        family = len(bundles) > 1 or bundles[0] != Path(bundle_arg)
        summaries = []
        for bundle in bundles:
            result = evaluate_offline(args.bag, bundle, settings)
            if args.require_labels and not any(r.label is not None for r in result.records):
                raise ValueError(f"{args.bag} has no labelled windows (--require-labels)")
            target = out / bundle.name if family else out
            paths = write_report(result, target, plots=not args.no_plots)
            summary = summarize(result)
            summaries.append(summary)
            acc = summary["accuracy"]
            print(
                f"{summary['model']}: {summary['windows']} windows, accuracy "
                f"{'n/a' if acc is None else f'{acc * 100:.2f}%'} -> {paths['markdown']}"
            )
        if family:
            fam = write_family_report(summaries, out)
            print(f"family comparison -> {fam['markdown']}")
    except (ValueError, OSError) as exc:  # all the project's input errors subclass ValueError
        print(f"hsnn-eval: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("hsnn-eval: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(eval_main())
