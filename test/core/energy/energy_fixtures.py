"""A fake RAPL sysfs tree for the energy tests (the reader cannot tell it from the real one)."""

from __future__ import annotations

from pathlib import Path


def rapl_tree(root: Path, packages: dict[str, int], max_range: int = 1000) -> None:
    for name, value in packages.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "energy_uj").write_text(f"{value}\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
        (d / "name").write_text(f"package-{name[-1]}\n")
