"""The published constants the energy models use, each with its source: per-operation energies and
times of neuromorphic chips, power and throughput of ANN accelerators, the energy of an addition.

All published constants live here, so there is one place to check or change them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hsnn_perception.core.energy.figure import EnergyError

PJ = 1e-12
NS = 1e-9


@dataclass(frozen=True)
class NeuromorphicProfile:
    name: str
    synaptic_op_j: float  # one synaptic spike operation (no learning)
    neuron_update_active_j: float
    neuron_update_inactive_j: float
    spike_within_tile_j: float  # sending one spike to a core in the same tile
    synaptic_op_s: float  # time per synaptic op (for the latency model)
    neuron_update_s: float  # time per active neuron update
    barrier_s: float  # end-of-timestep mesh barrier (one tile; grows to 465 ns at 32 tiles)
    static_chip_w: float  # leakage of one fully powered chip
    cores_per_chip: int
    source: str
    static_source: str


# Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE Micro 38(1),
# 2018, Table 2 ("Loihi pre-silicon performance and energy measurements", values at 0.75 V, from
# SDF/SPICE simulation "consistent with early post-silicon characterization"):
#   energy per synaptic spike op (min) 23.6 pJ; per synaptic update (pairwise STDP) 120 pJ
#   (not used: no on-chip learning here); per neuron update active / inactive 81 pJ / 52 pJ;
#   within-tile spike energy 1.7 pJ; per tile hop E-W / N-S 3.0 / 4.0 pJ (not used: the mapping
#   is unknown);
#   time per synaptic spike op (max) 3.5 ns; per neuron update active / inactive 8.4 / 5.3 ns;
#   mesh-wide barrier sync 113-465 ns (1-32 tiles); 128 neuromorphic cores per chip.
# Static power: Frady et al., "Neuromorphic Nearest-Neighbor Search Using Intel's Pohoiki Springs",
# NICE 2020, Table 1: 3.34 W static power for the 32-chip board, i.e. 3.34 W / 32 = 104 mW per chip,
# measured at the wall at an unstated supply voltage (so mixing it with Table 2 is approximate).
LOIHI = NeuromorphicProfile(
    name="loihi",
    synaptic_op_j=23.6 * PJ,
    neuron_update_active_j=81.0 * PJ,
    neuron_update_inactive_j=52.0 * PJ,
    spike_within_tile_j=1.7 * PJ,
    synaptic_op_s=3.5 * NS,
    neuron_update_s=8.4 * NS,
    barrier_s=113.0 * NS,
    static_chip_w=3.34 / 32,
    cores_per_chip=128,
    source="Davies et al. 2018 (IEEE Micro 38(1)) Table 2 per-op energies at 0.75 V",
    static_source="Frady et al. 2020 (NICE) Table 1 static power 3.34 W / 32 chips",
)

# Loihi 2: Intel has published no per-operation energy table for Loihi 2 (the 2021 technology
# brief "Taking Neuromorphic Computing to the Next Level with Loihi 2" gives only relative
# speed-ups), nor a static power per chip. The Loihi 1 figures stand in and every figure says so.
LOIHI2 = replace(
    LOIHI,
    name="loihi2",
    source="no published Loihi 2 per-op energies; Loihi 1 values stand in: " + LOIHI.source,
    static_source="no published Loihi 2 static power; Loihi 1 value stands in: "
    + LOIHI.static_source,
)

NEUROMORPHIC_PROFILES: dict[str, NeuromorphicProfile] = {"loihi": LOIHI, "loihi2": LOIHI2}


def neuromorphic_profile(chip: str) -> NeuromorphicProfile:
    try:
        return NEUROMORPHIC_PROFILES[chip]
    except KeyError:
        raise EnergyError(
            f"unknown neuromorphic chip {chip!r}; known: {sorted(NEUROMORPHIC_PROFILES)}"
        ) from None


@dataclass(frozen=True)
class AnnDeviceProfile:
    name: str
    power_w: float  # module power of the named power mode (upper bound of what inference draws)
    peak_ops_per_s: float  # dense peak throughput (ops = 2 per MAC), for a latency lower bound
    source: str


# NVIDIA datasheets: Jetson Nano module 472 GFLOPS (FP16), 5 W / 10 W power modes; Jetson Orin Nano
# 8 GB module 40 TOPS INT8 sparse (20 TOPS dense), 7 W - 15 W power modes; Jetson AGX Orin 64 GB
# 275 TOPS INT8 sparse (about 138 dense), 15 W - 60 W. Intel Movidius Myriad X (Neural Compute
# Stick 2): 1 TOPS from its two neural compute engines (Intel, "Optimize Networks for the Intel
# Neural Compute Stick 2", 2018) at a VPU power budget of about 1 W (Intel's figure for Movidius
# VPUs). These are power-mode caps, so power x latency is an upper bound of the energy.
ANN_DEVICE_PROFILES: dict[str, AnnDeviceProfile] = {
    "jetson-nano": AnnDeviceProfile(
        "jetson-nano", 10.0, 472e9, "NVIDIA Jetson Nano datasheet: 10 W mode, 472 GFLOPS FP16"
    ),
    "jetson-orin-nano": AnnDeviceProfile(
        "jetson-orin-nano",
        15.0,
        20e12,
        "NVIDIA Jetson Orin Nano 8GB datasheet: 15 W mode, 20 TOPS INT8 dense (40 sparse)",
    ),
    "jetson-agx-orin": AnnDeviceProfile(
        "jetson-agx-orin",
        60.0,
        137.5e12,
        "NVIDIA Jetson AGX Orin 64GB datasheet: 60 W mode, 275 TOPS INT8 sparse (half dense)",
    ),
    "ncs2": AnnDeviceProfile(
        "ncs2",
        1.0,
        1e12,
        "Intel NCS2 (Myriad X): 1 TOPS neural compute engines, ~1 W VPU power budget (Intel)",
    ),
}


# Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm, 0.9 V:
# a 32-bit floating-point add costs 0.9 pJ (8-bit integer add 0.03 pJ, 32-bit 0.1 pJ). Arithmetic
# only: the memory traffic of reading spikes and writing frames is not included (a lower bound).
FP32_ADD_J = 0.9 * PJ
ADD_SOURCE = "Horowitz ISSCC 2014 (45 nm): 0.9 pJ per fp32 add, arithmetic only (lower bound)"


# The ANN device the classifier stage is modelled for when nothing measures it (node and
# offline evaluation alike).
DEFAULT_ANN_DEVICE = "jetson-orin-nano"
