"""Shared fixtures: small synthetic structures, float64, fixed seeds."""

import numpy as np
import pytest

from mlepi_core.structures import bilayer, supercell


@pytest.fixture(scope="session")
def displaced_ab6():
    """A 6x6 AB bilayer with 0.05 A Gaussian displacements (seed 0): wide enough for r_c = 6 A."""
    atoms = supercell(bilayer("AB"), 6)
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.05, atoms.positions.shape)
    return atoms
