"""The dashboard's view-model against careless and hostile input (issue 32): links as
Panel hands them over, a mode link before any phonons, any number of layers, elements no
model knows, hBN's AA' stacking, and the bounded cache of uploaded structures."""

from __future__ import annotations

import io
from urllib.parse import urlencode

import ase.build
import holoviews as hv
import numpy as np
import pytest
from ase import Atoms
from ase.io import write
from panel.util import parse_query as panel_parse_query

from app import plots
from app.catalogue import CACHE, Cache, force_choices
from app.viewmodel import Session
from mlepi_core.structures import assign_layers, bilayer

hv.extension("bokeh")


def extxyz(atoms) -> bytes:
    buf = io.StringIO()
    write(buf, atoms, format="extxyz")
    return buf.getvalue().encode()


def mos2_bilayer() -> Atoms:
    """2H-MoS2, two layers 6.15 A apart with 24 A of vacuum."""
    one = ase.build.mx2("MoS2", kind="2H", a=3.18, thickness=3.19, vacuum=0.0)
    top = one.copy()
    top.positions += [*((one.cell[0, :2] + one.cell[1, :2]) / 3), 6.15]
    two = one + top
    two.cell[2, 2], two.pbc = 30.0, True
    two.center(axis=2)
    return two


def render(view) -> None:
    """Build the Bokeh models of a HoloViews view, as the server does (validates every property)."""
    hv.renderer("bokeh").get_plot(view)


def test_a_link_parses_as_panel_hands_it_over():
    a = Session(supercell=3, temperature=150, samples=6, seed=7, antithetic=True, unit="mev", show_reference=True,
                presentation=True, show_layers=True, mode=(10, 2))
    link = "?" + urlencode(a.to_query())
    given = panel_parse_query(link)  # what pn.state.location.query_params holds in the page
    assert isinstance(given["antithetic"], int) and isinstance(given["T"], int)
    b = Session()
    assert b.apply_query(given) == []
    for name in ("supercell", "temperature", "samples", "seed", "antithetic", "unit", "show_reference",
                 "presentation", "show_layers", "mode"):
        assert b.setting(name) == a.setting(name), name
    off = Session(antithetic=True, presentation=True)
    assert off.apply_query(panel_parse_query("?antithetic=0&presentation=0&reference=0&layers=0")) == []
    assert not (off.monte_carlo.antithetic or off.ctx.presentation or off.phonons.show_reference or off.ctx.show_layers)
    for bad in ("nan", "inf", "-inf"):
        assert Session.parse_query(panel_parse_query(f"?T={bad}"))[0] == {}
    assert Session.parse_query(panel_parse_query("?samples=4.5&antithetic=2"))[0] == {}
    for s in (a, b, off):
        s.close()


def test_a_mode_link_works_before_any_phonon_job():
    s = Session(supercell=3)
    assert s.apply_query({"mode": "10,2"}) == []  # no phonons computed yet
    s.phonons.mode_future.result(timeout=600)
    view = s.phonons.mode_view
    assert view["kind"] == "mode", view["text"]
    assert "cm^-1" in view["text"] and view["frames"].shape[0] == 24
    s.close()


@pytest.mark.parametrize("n_layers", [2, 5, 6, 9])
def test_any_number_of_layers_is_drawn(n_layers):
    layer = ase.build.graphene(a=2.46, vacuum=0.0)
    stack = Atoms(cell=[*layer.cell[:2], [0, 0, 3.35 * n_layers + 20]], pbc=True)
    for k in range(n_layers):
        shifted = layer.copy()
        shifted.positions += [1.23 * (k % 2), 0.71 * (k % 2), 10 + 3.35 * k]
        stack += shifted
    stack = assign_layers(stack)
    sizes = [plots.marker_size(k, n_layers, len(stack)) for k in range(n_layers)]
    assert min(sizes) > 0 and all(np.diff(sizes) < 0)
    for view in plots.structure_views(stack):
        render(view)


def test_a_mos2_bilayer_upload_gets_the_references_and_monte_carlo_only_in_a_wide_enough_cell():
    """The force model switches to the reference that knows Mo and S and draws the phonons
    (a clicked mode too); the electrons to GFN1-xTB, whose MoS2 blocks reach 8 A, so Monte
    Carlo asks for a supercell of at least 17 A (6x6) and runs in one."""
    s = Session(supercell=3)
    assert s.system.load_upload("mos2.extxyz", extxyz(mos2_bilayer())), s.ctx.message
    summary = s.system.summary()
    assert summary["formula"] == "Mo2S4" and summary["layers"] == 2
    for view in plots.structure_views(s.system.atoms):
        render(view)
    assert "reference" in s.system.forces
    s.wait(timeout=120)
    assert not s.phonons.failed and "force constants" in s.phonons.status, s.phonons.status
    ok, why = s.system.mc_allowed
    assert not ok and "cell too small for r_c = 8.0 A" in why and "supercell setting" in why
    s.system.supercell = 6
    assert s.system.mc_allowed == (True, "")
    s.system.supercell = 3
    s.phonons.mode = (1, 1)
    s.phonons.mode_future.result(timeout=60)
    assert s.phonons.mode_view["kind"] == "mode", s.phonons.mode_view["text"]
    render(plots.phonon_dispersion(s.phonons.curves, s.phonons.unit, empty="no phonons"))
    s.close()


def test_hbn_gets_models_that_know_it_and_is_labelled_aa_prime():
    from app.catalogue import HBN_ML

    hbn = bilayer("AA")
    hbn.set_chemical_symbols(["B", "N", "N", "B"])  # each B over an N: AA'
    s = Session(supercell=3)
    assert s.system.load_upload("hbn.extxyz", extxyz(hbn)), s.ctx.message
    assert s.system.summary()["stacking"] == "AA'"
    assert s.system.mc_allowed[0] and s.system.electrons == HBN_ML
    s.wait(timeout=120)
    assert not s.phonons.failed and "computing" not in s.phonons.status
    same = bilayer("AA")
    assert s.system.load_upload("aa.extxyz", extxyz(same)) and s.system.summary()["stacking"] == "AA"
    s.wait(timeout=120)
    s.close()


def test_the_cache_is_bounded_shared_and_released():
    cache = Cache(budget_bytes=3_000_000)
    mb = lambda: np.zeros(1_000_000 // 8)  # noqa: E731
    a, b = object(), object()
    cache.get("x", mb, owner=a)
    cache.get("x", lambda: pytest.fail("rebuilt"), owner=b)  # shared, not rebuilt
    cache.get("y", mb, owner=a)
    cache.get("z", mb, owner=a)
    assert cache.owned_bytes() == 3_000_000
    cache.get("x", mb, owner=a)  # x is now the most recently used
    cache.get("w", mb, owner=a)  # over the budget: y (least recently used) goes
    assert cache.owned_bytes() == 3_000_000 and len(cache) == 3
    cache.get("y", lambda: "rebuilt")
    cache.release(a)
    assert cache.owned_bytes() == 1_000_000  # only x, which b still uses
    cache.release(b, retire=True)
    assert cache.owned_bytes() == 0
    cache.get("v", mb, owner=b)  # a closed tab's late result is not kept
    assert cache.owned_bytes() == 0
    cache.get("g", mb)  # without an owner (models, the gallery): kept, not charged
    assert cache.owned_bytes() == 0 and len(cache) == 2


def test_an_upload_shared_by_two_tabs_is_released_when_both_close():
    before = CACHE.owned_bytes()
    mono = ase.build.graphene(a=2.46, vacuum=10.0)
    mono.positions[:, 2] += 0.123  # a structure no other test uploads
    tabs = [Session(supercell=3, forces=list(force_choices())[-1]) for _ in range(2)]
    for s in tabs:
        assert s.system.load_upload("mono.extxyz", extxyz(mono)), s.ctx.message
        s.wait(timeout=300)
        assert not s.phonons.failed, s.phonons.status
    held = CACHE.owned_bytes()
    assert held > before
    tabs[0].close()  # the phonons both tabs show stay (the lattice only the first tab asked for goes)
    assert before < CACHE.owned_bytes() <= held
    tabs[1].system.structure = "AB bilayer"  # the second tab moves on: no tab uses the upload
    assert CACHE.owned_bytes() == before
    tabs[1].close()


def test_a_cell_over_the_phonon_limit_gets_a_message_not_a_job():
    big = ase.build.graphene(a=2.46, size=(60, 60, 1), vacuum=10.0)  # 7,200 atoms, over 5,000
    s = Session(supercell=3)
    assert s.system.load_upload("big.extxyz", extxyz(big)), s.ctx.message
    assert s.phonons.failed and "atom limit" in s.phonons.status and "mlepi phonons" in s.phonons.status
    assert s.phonons.future is None or s.phonons.future.done()
    s.close()


def test_a_script_in_a_link_is_shown_as_text():
    s = Session()
    s.apply_query({"structure": "<script>alert(1)</script>", "electrons": "<img src=x onerror=alert(2)>"})
    assert "<script" not in s.ctx.message and "<img" not in s.ctx.message and "&lt;script&gt;" in s.ctx.message
    s.close()
