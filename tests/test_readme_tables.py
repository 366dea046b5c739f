"""Tables I and II in docs/models.md (and the 6x6 phonon RMS), and the README's headline numbers, show
the numbers the evaluation command wrote into the shipped models' metrics.json and the Monte Carlo
run wrote into assets/results/mc_ab_6x6.json, at the printed precision: no figure is typed by hand,
and a retrained model whose docs were not updated fails here."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MODELS = (ROOT / "docs" / "models.md").read_text()  # Tables I and II


def metrics(kind: str) -> dict:
    path = ROOT / "assets" / "models" / kind / "metrics.json"
    if not path.is_file():
        pytest.skip(f"no shipped {kind} model")
    return json.loads(path.read_text())


def table_row(header_start: str, row_start: str) -> list[str]:
    """The cells (markup removed) of the docs/models.md table row beginning ``row_start`` in
    the first table below a header row beginning ``header_start``."""
    lines = MODELS.splitlines()
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
    assert header in MODELS
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
    assert f"RMS difference of {m['phonons_6x6']['rms_cm1']:.1f} cm⁻¹" in MODELS  # the 6x6 dispersion
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
    """The check bites: one digit changed in docs/models.md fails it."""
    m = metrics("phonon")
    shown = f"{m['test']['force_mae_mev_per_a']:.2f}"
    wrong = f"{m['test']['force_mae_mev_per_a'] + 0.01:.2f}"
    monkeypatch.setitem(globals(), "MODELS", MODELS.replace(f"**{shown} meV/Å**", f"**{wrong} meV/Å**"))
    with pytest.raises(AssertionError):
        test_table_one_is_the_phonon_metrics()


def headline() -> str:
    """The README's "Measured numbers" section, markup removed."""
    section = README.split("## Measured numbers", 1)[1].split("\n## ", 1)[0]
    return re.sub(r"\*\*|\s+", lambda m: "" if m.group() == "**" else " ", section)


def test_readme_headline_is_the_model_metrics():
    text = headline()
    p = metrics("phonon")
    assert f"energy MAE {p['test']['energy_mae_mev_per_atom']:.3f} meV/atom" in text
    assert f"force MAE {p['test']['force_mae_mev_per_a']:.2f} meV/Å" in text
    homogeneous = [p["ablation"][n]["test"]["force_mae_mev_per_a"] for n in ("homogeneous_2", "homogeneous_4")]
    assert "2 and 4 layers: {:.2f} and {:.2f} meV/Å".format(*homogeneous) in text
    assert f"({p['n_parameters']:,} parameters)" in text
    assert f"within {p['phonons_6x6']['rms_cm1']:.1f} cm⁻¹ RMS" in text
    e = metrics("electron")
    assert f"H MAE {e['test']['h_mae_mev']:.3f} meV on the bilayer test split" in text
    assert f"{e['twisted']['h_mae_mev']:.3f} meV on held-out twisted cells" in text
    h3, h6 = (e["ablation"][n] for n in ("homogeneous_3", "homogeneous_6"))
    assert (f"(homogeneous baselines {h3['test']['h_mae_mev']:.3f} and {h6['test']['h_mae_mev']:.3f}; "
            f"{h3['twisted']['h_mae_mev']:.3f} and {h6['twisted']['h_mae_mev']:.3f})") in text
    sk = metrics("electron_sk")
    assert f"{sk['test']['h_mae_mev']:.3f} meV and {sk['twisted']['h_mae_mev']:.3f} meV" in text


def test_readme_headline_is_the_monte_carlo_run():
    path = ROOT / "assets" / "results" / "mc_ab_6x6.json"
    run = json.loads(path.read_text())
    text = headline()
    by_t = {t["T"]: t for t in run["temperatures"]}
    ml, ref = by_t[300.0]["ml"], by_t[300.0]["reference"]
    assert f"{by_t[300.0]['samples']} samples per temperature" in text
    assert (f"{ml['vf']:.4f} ± {ml['vf_se']:.4f} ·10⁶ m/s ({100 * ml['vf_rel_change']:.1f} % "
            f"from the static lattice)").replace("-", "−") in text
    assert f"{ref['vf']:.4f} ± {ref['vf_se']:.4f} ({100 * ref['vf_rel_change']:.1f} %)".replace("-", "−") in text
    ml0, ref0 = by_t[0.0]["ml"], by_t[0.0]["reference"]
    assert f"{ml0['vf']:.4f} ± {ml0['vf_se']:.4f} against {ref0['vf']:.4f} ± {ref0['vf_se']:.4f}" in text


def test_the_headline_would_catch_a_changed_figure(monkeypatch):
    """The check bites: the README's 300 K v_F changed in its last digit fails it."""
    run = json.loads((ROOT / "assets" / "results" / "mc_ab_6x6.json").read_text())
    shown = f"{run['temperatures'][1]['ml']['vf']:.4f}"
    wrong = f"{run['temperatures'][1]['ml']['vf'] + 0.0001:.4f}"
    monkeypatch.setitem(globals(), "README", README.replace(shown, wrong))
    with pytest.raises(AssertionError):
        test_readme_headline_is_the_monte_carlo_run()


def test_models_doc_quotes_the_hbn_network_metrics():
    """docs/models.md's hBN electron network sentence is its shipped metrics.json, digit for digit."""
    text = " ".join((ROOT / "docs" / "models.md").read_text().split())
    t, held = metrics("electron_hbn")["test"], metrics("electron_hbn")["twisted"]
    assert (f"H MAE against GFN1-xTB {t['h_mae_mev']:.3f} meV on {t['n_structures']} test cells (on-site blocks "
            f"{t['h_mae_mev_onsite']:.2f}, in-plane pairs {t['h_mae_mev_intra']:.2f}, interlayer pairs "
            f"{t['h_mae_mev_inter']:.3f} meV) and {held['h_mae_mev']:.3f} meV on the {held['n_structures']} "
            f"held-out cells") in text


def test_gap_anchor_rows_are_the_materials_results():
    """docs/physics.md's mlepi rows of the gap anchors are assets/results/materials.json."""
    text = " ".join((ROOT / "docs" / "physics.md").read_text().split())
    rows = {r["material"]: r for r in json.loads((ROOT / "assets" / "results" / "materials.json").read_text())}
    z = rows["hBN"]["gap_zpr_mev"]
    def signed(x):
        return f"{x:+.1f}".replace("-", "−")

    assert f"**{signed(z['reference'])} ± {z['reference_se']:.1f} meV** (static {rows['hBN']['gap_static_ev']:.4f} eV)" in text
    assert f"{signed(z['ml'])} ± {z['ml_se']:.1f} meV (static {rows['hBN']['gap_static_ev_ml']:.4f} eV)" in text
    assert f"(paired difference {signed(z['paired_difference'])} ± {z['paired_se']:.1f} meV)" in text
