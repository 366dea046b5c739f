"""The mace-torch models of Table I as mlepi force models, for benchmarks run in .venv-mace:

    PYTHONPATH=benchmarks .venv-mace/bin/python benchmarks/interlayer_phonons.py --model mace_models:Mace2Layers

``force_model("module:Class")`` wraps ``Class()`` (an ASE calculator) in ``AseForceModel``.
The weights are those scripts/mace_torch.sh leaves in runs/mace_torch_N_layers (the stage-two
model when the run reached it, as mace-torch's own evaluation uses).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mace_model_path(layers: int) -> Path:
    """The trained model file of the N-layer run: stage two's if present, else stage one's."""
    run = ROOT / "runs" / f"mace_torch_{layers}_layers"
    for name in (f"mace_{layers}_stagetwo.model", f"mace_{layers}.model"):
        if (run / name).is_file():
            return run / name
    raise FileNotFoundError(f"{run}: no trained model; run scripts/mace_torch.sh {layers}")


def _calculator(layers: int):
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=str(mace_model_path(layers)), device="cpu", default_dtype="float32")


def Mace2Layers():
    return _calculator(2)


def Mace4Layers():
    return _calculator(4)
