"""Neural networks of mlepi: shared equivariant blocks, HedgeNet-Phonon, HedgeNet-Electron, saving and loading.

``load_model(path)`` brings back a saved model folder: a phonon model as a ForceModel
(``MLForceModel``), an electron model as a HamiltonianModel (``MLHamiltonianModel``).
"""

from .electron import HedgeNetElectron, HedgeNetElectronConfig
from .electron_deployed import MLHamiltonianModel
from .io import ModelFormatError, load_model, read_metadata, save_model
from .deployed import count_parameters
from .phonon import HedgeNetPhonon, HedgeNetPhononConfig, MLForceModel

__all__ = ["HedgeNetElectron", "HedgeNetElectronConfig", "HedgeNetPhonon", "HedgeNetPhononConfig",
           "MLForceModel", "MLHamiltonianModel", "ModelFormatError", "count_parameters", "load_model",
           "read_metadata", "save_model"]
