"""A gesture classifier trained in snnTorch, brought into the pipeline through NIR.

    python bench/nir_snntorch_gestures.py [--epochs 12] [--n-train 1100] [--n-test 330]
                                          [--eval-bag 44] [--dds] [--threads 2]

1. Trains a small convolutional SNN with snnTorch (``snn.Leaky``, reset to zero in the same step,
   no biases, beta = 1 - 256/4096) on the synthetic gestures at the shipped model's input
   geometry (2x32x32, 10 ms bins, T = 16), BPTT with cross-entropy on the output spike counts.
2. Writes it with snnTorch's own NIR exporter (``snntorch.export_nir.export_to_nir``).
3. Imports the file with ``hsnn-nir import`` (hsnn_perception.core.snn.nir.bundle.import_graph,
   SNN-only: the class is the output neuron with the most spikes) into
   ``build/nir-bench/snntorch-bundle``.
4. Compares, on the test windows, the classes of snnTorch's forward pass of the trained module,
   of snnTorch's own NIR importer on the file, and of the bundle in the native runtime (the path
   of the nodes and hsnn-eval offline: runtime + accumulator + read-out); then runs hsnn-eval
   on a synthetic event bag (offline, and with ``--dds`` through the pipeline nodes over DDS).

Prints a JSON summary and a Markdown table for docs/nir.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BETA = 1 - 256 / 4096  # Loihi's vDecay 256 exactly
DT = 1e-4  # snnTorch's exporter writes tau = dt / (1 - beta) with this dt


def build(channels: tuple[int, int], classes: int) -> Any:
    import snntorch as snn
    import torch

    def leaky(shape: tuple[int, ...]) -> Any:
        # Per-neuron tensors: snnTorch's exporter writes scalar parameters without a shape,
        # which NIR's type check refuses.
        return snn.Leaky(
            beta=torch.full(shape, BETA),
            threshold=torch.ones(shape),
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
        )

    c1, c2 = channels
    # No biases: Loihi adds a bias also before a layer's first input arrives (docs/nir.md).
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, c1, 3, stride=2, padding=1, bias=False),
        leaky((c1, 16, 16)),
        torch.nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False),
        leaky((c2, 8, 8)),
        torch.nn.Flatten(),
        torch.nn.Linear(c2 * 64, classes, bias=False),
        leaky((classes,)),
    )


def forward_counts(net: Any, spikes: Any, steps: int | None = None) -> Any:
    """Output spike counts (B, classes) of ``net`` over the window ``spikes`` (B, T, ...),
    counted over the first ``steps`` output steps (default all)."""
    import snntorch.utils

    snntorch.utils.reset(net)
    total = 0
    for step in range(spikes.shape[1] if steps is None else steps):
        total = total + net(spikes[:, step])
    return total


def train(net: Any, data: Any, epochs: int, batch: int, lr: float, seed: int) -> list[dict]:
    import torch

    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x = torch.from_numpy(data.spikes.astype(np.float32))
    y = torch.from_numpy(data.labels)
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(epochs):
        net.train()
        order = torch.from_numpy(rng.permutation(len(y)))
        loss_sum, correct = 0.0, 0
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            counts = forward_counts(net, x[idx])
            loss = torch.nn.functional.cross_entropy(counts, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((counts.argmax(1) == y[idx]).sum())
        history.append(
            {"epoch": epoch + 1, "loss": loss_sum / len(y), "train_accuracy": correct / len(y)}
        )
        print(json.dumps(history[-1]), flush=True)
    return history


def classes_of(counts: np.ndarray) -> np.ndarray:
    # numpy's argmax takes the first of tied counts, as the bundle's read-out does.
    return np.asarray(counts).argmax(axis=1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import nir
    import torch
    from snntorch.export_nir import export_to_nir

    from bench.nir_third_party import run_layers
    from hsnn_perception.core.events.synthetic import GESTURE_LABELS
    from hsnn_perception.core.hybrid.bundle import ModelBundle
    from hsnn_perception.training.data import InputSpec, synthetic_spikeset
    from hsnn_perception.training.export import predict_bundle

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = ROOT / "build" / "nir-bench"
    out.mkdir(parents=True, exist_ok=True)
    spec = InputSpec()  # the shipped model's geometry: 128x128 -> 32x32, 10 ms, T = 16
    cache = out / "data"
    start = time.perf_counter()
    train_set = synthetic_spikeset(args.n_train, spec, seed=0, first_index=0, cache_dir=cache)
    test_set = synthetic_spikeset(args.n_test, spec, seed=0, first_index=1_000_000, cache_dir=cache)
    net = build((args.c1, args.c2), len(GESTURE_LABELS))
    t0 = time.perf_counter()
    history = train(net, train_set, args.epochs, args.batch, args.lr, args.seed)
    train_s = time.perf_counter() - t0
    net.eval()
    x = torch.from_numpy(test_set.spikes.astype(np.float32))
    latency = 3  # three synaptic layers: Loihi's output lags snnTorch's by three steps
    with torch.no_grad():
        own = classes_of(forward_counts(net, x).numpy())
        # What the bundle's window sees: snnTorch's output steps 0 .. T - 1 - latency.
        own_matched = classes_of(forward_counts(net, x, x.shape[1] - latency).numpy())

    with contextlib.redirect_stdout(io.StringIO()):
        graph = export_to_nir(net, torch.zeros(1, 2, 32, 32), ignore_dims=[0])
    nir_file = out / "snntorch-gestures.nir"
    nir.write(str(nir_file), graph)
    reread = nir.read(str(nir_file))
    imported_by_snntorch = classes_of(
        run_layers("snntorch", reread, test_set.spikes, DT)[-1].sum(axis=1)
    )

    bundle_dir = out / "snntorch-bundle"
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "hsnn-nir"),
        "import",
        str(nir_file),
        str(bundle_dir),
        "--dt",
        str(DT),
        "--name",
        "snntorch-gestures",
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    bundle = ModelBundle.load(bundle_dir)
    ours = predict_bundle(bundle, test_set.spikes).predictions
    labels = test_set.labels
    result: dict[str, Any] = {
        "train": {
            "windows": args.n_train,
            "epochs": args.epochs,
            "seconds": round(train_s, 1),
            "history": history,
            "channels": [args.c1, args.c2],
        },
        "test_windows": args.n_test,
        "snntorch_accuracy": float((own == labels).mean()),
        "snntorch_nir_import_accuracy": float((imported_by_snntorch == labels).mean()),
        "snntorch_nir_import_agreement": float((imported_by_snntorch == own).mean()),
        "pipeline_accuracy": float((ours == labels).mean()),
        "pipeline_agreement": float((ours == own).mean()),
        "snntorch_latency_matched_accuracy": float((own_matched == labels).mean()),
        "pipeline_agreement_latency_matched": float((ours == own_matched).mean()),
        "import": report,
        "command": " ".join(["python", "bench/nir_snntorch_gestures.py", *sys.argv[1:]]),
    }
    if args.eval_bag:
        result["hsnn_eval"] = evaluate(out, bundle_dir, args.eval_bag, args.dds)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    return result


def evaluate(out: Path, bundle_dir: Path, samples: int, dds: bool) -> dict[str, Any]:
    """hsnn-eval on a synthetic event bag: offline, and through the nodes over DDS."""
    bag = out / f"eval-bag-{samples}"
    if not bag.exists():
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "hsnn-bag"),
                "convert",
                "synthetic",
                str(bag),
                "--samples",
                str(samples),
                "--seed",
                "7",
            ],
            check=True,
            capture_output=True,
        )
    found = {}
    for mode in ("offline", "dds") if dds else ("offline",):
        report_dir = out / f"eval-{mode}"
        cmd = [
            sys.executable,
            str(ROOT / "scripts" / "hsnn-eval"),
            str(bag),
            "--bundle",
            str(bundle_dir),
            "--out",
            str(report_dir),
            "--no-plots",
            "--no-progress",
            "--mode",
            mode,
        ]
        if mode == "dds":
            cmd += ["--speed", "0"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            found[mode] = {"error": (done.stderr or done.stdout).strip()[-400:]}
            continue
        doc = json.loads((report_dir / "report.json").read_text())
        found[mode] = _accuracy(doc)
    return found


def _accuracy(doc: dict[str, Any]) -> dict[str, Any]:
    """The accuracy and window count of an hsnn-eval report.json (one bundle)."""
    entry = doc
    if isinstance(doc.get("models"), list) and doc["models"]:
        entry = doc["models"][0]
    keep = {}
    for key in ("accuracy", "windows", "labelled_windows", "n_windows"):
        if key in entry:
            keep[key] = entry[key]
    return keep or {"keys": sorted(entry)[:20]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--n-train", type=int, default=1100)
    parser.add_argument("--n-test", type=int, default=330)
    parser.add_argument("--c1", type=int, default=8)
    parser.add_argument("--c2", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-bag", type=int, default=44, help="synthetic bag samples (0: no)")
    parser.add_argument("--dds", action="store_true", help="also hsnn-eval --mode dds")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
