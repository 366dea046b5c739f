"""The README's Tables I and II (and the 6x6 phonon RMS) show the numbers the evaluation command wrote into the
shipped models' metrics.json, at the printed precision: no figure in the README is typed
by hand, and a retrained model whose README was not updated fails here."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def metrics(kind: str) -> dict:
    path = ROOT / "assets" / "models" / kind / "metrics.json"
    if not path.is_file():
        pytest.skip(f"no shipped {kind} model")
    return json.loads(path.read_text())


def table_row(header_start: str, row_start: str) -> list[str]:
    """The cells (markup removed) of the README table row beginning ``row_start`` in the
    first table below a header row beginning ``header_start``."""
    lines = README.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    for line in lines[top:]:
        if not line.startswith("|"):
            break
        if line.startswith(row_start):
            return [re.sub(r"[*\s]|meV/atom|meV/Å", "", c) for c in line.strip("|").split("|")[1:]]
    raise AssertionError(f"no row {row_start!r} under {header_start!r}")


def test_table_one_is_the_phonon_metrics():
    m = metrics("phonon")
    header = "| | HedgeNet-Phonon | homogeneous, 2 layers | homogeneous, 4 layers |"
    assert header in README
    columns = [None, "homogeneous_2", "homogeneous_4"]
    rows = {"| energy MAE, all three stages": ("", "energy_mae_mev_per_atom", 3),
            "| force MAE, all three stages": ("", "force_mae_mev_per_a", 2),
            "| energy MAE, stages one and two only": ("_before_stage_three", "energy_mae_mev_per_atom", 3),
            "| force MAE, stages one and two only": ("_before_stage_three", "force_mae_mev_per_a", 2)}
    for row, (suffix, key, digits) in rows.items():
        cells = table_row(header, row)
        for name, cell in zip(columns, cells):
            if name is None:
                result = m if not suffix else m["ablation"]["hedgenet" + suffix]
            else:
                result = m["ablation"][name + suffix]
            assert cell == f"{result['test'][key]:.{digits}f}", (row, name, cell)
    assert f"RMS difference of {m['phonons_6x6']['rms_cm1']:.1f} cm⁻¹" in README  # the 6x6 dispersion
    params = table_row(header, "| parameters")
    assert params[0] == f"{m['n_parameters']:,}"
    assert params[1:] == [f"{m['ablation'][name]['n_parameters']:,}" for name in ("homogeneous_2", "homogeneous_4")]


def test_table_two_is_the_electron_metrics():
    m = metrics("electron")
    header = "| | with the two-centre term"
    columns = [m] + [m["ablation"][name] for name in (
        "homogeneous_3", "homogeneous_6", "hedgenet_without_two_centre", "homogeneous_3_without_two_centre",
        "homogeneous_6_without_two_centre")]
    for row, split in (("| H MAE, bilayer test split", "test"), ("| H MAE, held-out twisted cells", "twisted")):
        cells = table_row(header, row)
        assert cells == [f"{c[split]['h_mae_mev']:.3f}" for c in columns], row


def test_the_tables_would_catch_a_changed_figure(monkeypatch):
    """The check bites: one digit changed in the README fails it."""
    m = metrics("phonon")
    shown = f"{m['test']['force_mae_mev_per_a']:.2f}"
    wrong = f"{m['test']['force_mae_mev_per_a'] + 0.01:.2f}"
    monkeypatch.setitem(globals(), "README", README.replace(f"**{shown} meV/Å**", f"**{wrong} meV/Å**"))
    with pytest.raises(AssertionError):
        test_table_one_is_the_phonon_metrics()
