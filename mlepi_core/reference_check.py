"""One Monte Carlo sample's unfolded bands from the engine's Hamiltonian model and from a
reference, side by side (the check of Fig. 4d of the MLEPI paper).

The sample's displaced supercell is rebuilt from its keyed random stream
(``MonteCarloEngine.sample_atoms``), both models' blocks go through the same code
(``SpectralMap.unfolded_bands``, the engine's path), and the bands are compared state
by state near E_F.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .observables import BandProbe
from .seams import HamiltonianModel


class Cancelled(Exception):
    """Raised by ``check_sample`` when its ``cancelled`` callback returns True."""


def _occupied(blocks, atoms) -> int:
    electrons = blocks.meta.get("valence_electrons", BandProbe.valence_electrons(atoms))
    return int(round(electrons / 2))


def check_sample(engine, temperature: float, sample_index: int, reference_model: HamiltonianModel,
                 window_ev: float = 1.0, cancelled: Callable[[], bool] = lambda: False,
                 reference_e_fermi: float | None = None) -> dict:
    """Unfolded bands of Monte Carlo sample ``sample_index`` at ``temperature`` (K) from the
    engine's Hamiltonian model ("ml") and ``reference_model`` ("reference").

    Energies are relative to each model's own pristine E_F (``BandProbe`` definition:
    the engine's ``probe.sigma``; the reference's from its blocks of the ideal supercell,
    or ``reference_e_fermi`` if given, e.g. from an earlier call's "e_fermi_reference_ev").
    States are matched by band index counted from charge neutrality (the n_occ-th state
    of each model, n_occ from its valence electrons, is band 0 above E_F): at each k both
    lists are sorted, and pairing sorted lists in order minimises the largest difference,
    with no threshold on weights and for models with different bases. A pair is compared
    when either energy is within ``window_ev`` of E_F:

        max_abs_diff_mev = max over such pairs and path points of |E_ml - E_ref| (meV),

    and "max_abs_diff_visible_mev" the same over pairs whose ml state has unfolded
    weight > 0.5 at that path point (the bands one sees in A(k, E)).

    ``cancelled`` is polled before each expensive step; when it returns True, ``Cancelled``
    is raised. Returns a dict: "k_distances" (P,) 1/A, "k_labels", "label_distances",
    "energies_ev" (n_E,); per model ("ml", "reference"): {"energies_ev" (P, nb) about E_F,
    "weights" (P, nb), "band_index" (nb,), "spectral" (P, n_E) states/eV}; "pairs"
    {"offset" (n_pairs,) band index from neutrality, "ml", "reference" (P, n_pairs) eV,
    "compared" (P, n_pairs) bool}; "max_abs_diff_mev", "max_abs_diff_visible_mev",
    "n_compared", "e_fermi_ml_ev", "e_fermi_reference_ev", "seconds" per step.
    """
    def step(name: str, start: float) -> None:
        seconds[name] = time.perf_counter() - start
        if cancelled():
            raise Cancelled(f"reference check of sample {sample_index} at {temperature:g} K cancelled "
                            f"after {name}")

    seconds: dict[str, float] = {}
    t_all = time.perf_counter()
    if cancelled():
        raise Cancelled(f"reference check of sample {sample_index} at {temperature:g} K cancelled")
    t = time.perf_counter()
    atoms = engine.sample_atoms(temperature, sample_index)
    ideal = engine.sampler.ideal
    step("sampling", t)
    t = time.perf_counter()
    (ml_blocks,) = engine.hamiltonian_model.blocks([atoms])
    step("hamiltonian_ml", t)
    t = time.perf_counter()
    if reference_e_fermi is None:
        ref_blocks, ref_pristine = reference_model.blocks([atoms, ideal])
    else:
        (ref_blocks,) = reference_model.blocks([atoms])
    step("hamiltonian_reference", t)
    t = time.perf_counter()
    if reference_e_fermi is None:
        reference_e_fermi = engine.probe.fermi_level(ref_pristine)
        step("e_fermi_reference", t)
    sm = engine.spectral
    wide = (min(sm.window[0], -window_ev) - 4 * sm.broadening, max(sm.window[1], window_ev) + 4 * sm.broadening)
    out = {}
    for name, blocks, ef in (("ml", ml_blocks, engine.probe.sigma), ("reference", ref_blocks, reference_e_fermi)):
        t = time.perf_counter()
        bands = sm.unfolded_bands(engine.probe.tensors(blocks), e_fermi=ef, window=wide)
        bands["spectral"] = sm.spectrum_from_bands(bands["energies_ev"], bands["weights"])
        bands["n_occupied"] = _occupied(blocks, atoms)
        out[name] = bands
        step(f"bands_{name}", t)
    ml, ref = out["ml"], out["reference"]
    off_ml = ml["band_index"] - ml["n_occupied"]
    off_ref = ref["band_index"] - ref["n_occupied"]
    common, i_ml, i_ref = np.intersect1d(off_ml, off_ref, return_indices=True)
    e_ml, e_ref = ml["energies_ev"][:, i_ml], ref["energies_ev"][:, i_ref]
    compared = (np.abs(e_ml) <= window_ev) | (np.abs(e_ref) <= window_ev)
    diff = np.abs(e_ml - e_ref)
    visible = compared & (ml["weights"][:, i_ml] > 0.5)
    seconds["total"] = time.perf_counter() - t_all
    return {"temperature": float(temperature), "sample_index": int(sample_index), "window_ev": float(window_ev),
            "k_distances": sm.distances, "k_labels": list(sm.labels), "label_distances": sm.label_distances,
            "energies_ev": sm.energies, "ml": ml, "reference": ref,
            "pairs": {"offset": common, "ml": e_ml, "reference": e_ref, "compared": compared},
            "max_abs_diff_mev": float(1e3 * diff[compared].max()) if compared.any() else float("nan"),
            "max_abs_diff_visible_mev": float(1e3 * diff[visible].max()) if visible.any() else float("nan"),
            "n_compared": int(compared.sum()), "e_fermi_ml_ev": float(engine.probe.sigma),
            "e_fermi_reference_ev": float(reference_e_fermi), "seconds": seconds}
