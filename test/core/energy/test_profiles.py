"""Tests of hsnn_perception.core.energy.profiles: every published constant names its source, and
an unknown chip is an EnergyError naming the known ones."""

from __future__ import annotations

import pytest

from hsnn_perception.core.energy.figure import EnergyError
from hsnn_perception.core.energy.profiles import (
    ADD_SOURCE,
    ANN_DEVICE_PROFILES,
    DEFAULT_ANN_DEVICE,
    LOIHI,
    NEUROMORPHIC_PROFILES,
    neuromorphic_profile,
)


def test_every_profile_names_its_published_source():
    for prof in NEUROMORPHIC_PROFILES.values():
        assert "Davies et al. 2018" in prof.source and "Frady et al. 2020" in prof.static_source
        assert prof.synaptic_op_j > 0 and prof.cores_per_chip == 128
    for name, ann in ANN_DEVICE_PROFILES.items():
        assert ann.name == name and ann.power_w > 0 and ann.peak_ops_per_s > 0
        assert "NVIDIA" in ann.source or "Intel" in ann.source
    assert DEFAULT_ANN_DEVICE in ANN_DEVICE_PROFILES
    assert ADD_SOURCE.startswith("Horowitz ISSCC 2014")


def test_unknown_chip_is_an_energy_error_naming_the_known_ones():
    assert neuromorphic_profile("loihi") is LOIHI
    with pytest.raises(EnergyError, match=r"chip 'truenorth'; known: \['loihi', 'loihi2'\]"):
        neuromorphic_profile("truenorth")
