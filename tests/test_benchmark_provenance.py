"""Benchmark results name the models they measured, and those must be the shipped ones:
a result that quotes a shipped network's speed or accuracy goes stale when the network is
retrained, and this fails until the benchmark is rerun."""

import json
from pathlib import Path

import pytest

from mlepi_core.model_names import model_identity

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json")) + sorted((ROOT / "assets" / "results").glob("*.json"))
SHIPPED = ("phonon", "electron", "electron_sk", "electron_hbn")


def recorded_identities(result: dict) -> dict[str, str]:
    """Model identities a result records: its "models" mapping and any top-level *_identity key."""
    out = {f"models.{k}": v for k, v in (result.get("models") or {}).items()}
    for key, value in result.items():
        if key.endswith("identity"):
            items = value.items() if isinstance(value, dict) else [("", value)]
            out.update({f"{key}.{k}".rstrip("."): v for k, v in items})
    return {k: v for k, v in out.items() if isinstance(v, str)}


def stale_models(result: dict) -> dict[str, str]:
    """The recorded trained-model identities that match no shipped model's weights."""
    shipped = {model_identity(name) for name in SHIPPED}
    return {k: v for k, v in recorded_identities(result).items()
            if v.startswith("weights sha256") and v not in shipped}


def test_identity_helper_reads_both_layouts():
    result = {"models": {"electrons": "weights sha256 a"}, "forces_identity": "empirical",
              "electrons_identity": {"electron": model_identity("electron")}}
    assert recorded_identities(result) == {"models.electrons": "weights sha256 a", "forces_identity": "empirical",
                                           "electrons_identity.electron": model_identity("electron")}
    assert stale_models(result) == {"models.electrons": "weights sha256 a"}  # a retrained network


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_benchmarks_ran_the_shipped_models(path):
    result = json.loads(path.read_text())
    if not isinstance(result, dict):
        return
    stale = stale_models(result)
    assert not stale, (f"{path.relative_to(ROOT)} measured models that are not shipped any more: {stale}; "
                       f"rerun the benchmark that writes it")
