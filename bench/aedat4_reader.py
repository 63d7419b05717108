"""Cost of reading AEDAT4 in a worker process (Aedat4Reader, the hang-proof reader) against
dv-processing in the calling process, side by side in one run.

    PYTHONPATH=. python bench/aedat4_reader.py [--file /work/shared/recordings/davis346.aedat4]
        [--synthetic 2000000] [--repeat 5]

Both paths read every event batch of the file and convert it to EVENT_DTYPE; the worker path also
ships it through a pipe. Figures are M events/s of wall time (best of ``--repeat``, worker already
started), plus the worker's start-up time (spawn + imports) and the Aedat4FileSource replay in 1 ms
packets (started beforehand). ``--synthetic N`` adds a recording of N uniform events written with
dv-processing (a denser stream than the real file).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hsnn_perception.core.events.codecs import make_events
from hsnn_perception.core.events.filters import from_dv_store
from hsnn_perception.core.sources.dv import Aedat4FileSource, Aedat4Reader, write_aedat4


def in_process(path: Path) -> int:
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(path))
    n = 0
    while (batch := rec.getNextEventBatch()) is not None:
        n += from_dv_store(batch).size
    return n


def worker(reader: Aedat4Reader) -> int:
    reader.reopen()
    n = 0
    while (got := reader.next_batch()) is not None:
        n += got[0].size
    return n


def replay(path: Path) -> tuple[float, int]:
    """Seconds to replay every 1 ms packet (the worker started beforehand) and the events."""
    source = Aedat4FileSource(path, packet_us=1000)
    t0 = time.perf_counter()
    n = sum(p.size for p, _ in source)
    seconds = time.perf_counter() - t0
    source.close()
    return seconds, n


def best(fn, repeat: int) -> tuple[float, int]:  # noqa: ANN001
    times, n = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t0)
    return min(times), n


def bench(path: Path, repeat: int) -> None:
    t0 = time.perf_counter()
    reader = Aedat4Reader(path)
    start_s = time.perf_counter() - t0
    t_in, n_in = best(lambda: in_process(path), repeat)
    t_out, n_out = best(lambda: worker(reader), repeat)
    reader.close()
    t_rep, n_rep = min(replay(path) for _ in range(max(1, repeat // 2)))
    assert n_in == n_out == n_rep, (n_in, n_out, n_rep)
    print(f"\n{path.name}: {n_in} events")
    print("| path | time (s) | M events/s |")
    print("|---|---|---|")
    print(f"| dv-processing in-process | {t_in:.4f} | {n_in / t_in / 1e6:.1f} |")
    print(f"| Aedat4Reader (worker process) | {t_out:.4f} | {n_out / t_out / 1e6:.1f} |")
    print(f"| Aedat4FileSource replay, 1 ms packets | {t_rep:.4f} | {n_rep / t_rep / 1e6:.1f} |")
    print(
        f"worker start-up (spawn, imports, open): {start_s:.3f} s; "
        f"worker / in-process time: {t_out / t_in:.2f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--file", type=Path, default=Path("/work/shared/recordings/davis346.aedat4"))
    ap.add_argument("--synthetic", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if args.file.is_file():
        bench(args.file, args.repeat)
    if args.synthetic:
        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(0)
            n = args.synthetic
            t = np.sort(rng.integers(0, 1_000_000, n)) + 1_000_000
            ev = make_events(
                t, rng.integers(0, 640, n), rng.integers(0, 480, n), rng.integers(0, 2, n)
            )
            path = write_aedat4(Path(tmp) / "synthetic.aedat4", ev, 640, 480, batch=5000)
            bench(path, args.repeat)


if __name__ == "__main__":
    main()
