"""Neural networks of mlepi: shared equivariant blocks, HedgeNet-Phonon, saving and loading.

``load_model(path)`` brings back a saved model folder as a ForceModel (``MLForceModel``).
"""

from .io import ModelFormatError, load_model, read_metadata, save_model
from .phonon import HedgeNetPhonon, HedgeNetPhononConfig, MLForceModel, count_parameters

__all__ = ["HedgeNetPhonon", "HedgeNetPhononConfig", "MLForceModel", "ModelFormatError",
           "count_parameters", "load_model", "read_metadata", "save_model"]
