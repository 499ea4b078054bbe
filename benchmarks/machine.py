"""What a benchmark says about the machine it ran on (shared by the benchmarks)."""

from __future__ import annotations

from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name and its widest vector unit: AVX2 and AVX-512 CPUs round
    differently and run at different speeds, and "AMD EPYC" alone names both kinds."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown CPU":
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        return name
    if not flags:
        return name
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name}, {vector}"
