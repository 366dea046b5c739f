"""Interlayer physics of a force model: rigid-layer sliding and breathing (docs/physics.md#phonons).

The interlayer interaction of a layered crystal is seen by moving whole layers: the
stacking-energy surface E(s) of rigid layers against the in-plane shift s of one layer,
the binding curve E(d) against the interlayer distance, and the interlayer force constants
(the curvature of E against a rigid relative displacement u of two layers, in-plane for
shear, along z for breathing). A linear chain of layers of areal mass rho (amu/A^2) held by
springs of K per unit area (eV/A^4) has the Gamma frequencies

    omega_n^2 = (2 K / rho) (1 - cos(n pi / N)),   n = 1 .. N - 1,

(the two-mass model omega^2 = 2 K / rho for a bilayer). Energies are in meV per atom,
lengths in Angstrom, frequencies in cm^-1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from .seams import ForceModel
from .structures import VACUUM_A, StructureError, _layer_basis, _primitive_vectors, _stack, bilayer
from .units import BILAYER_D, GRAPHENE_A, OMEGA2_SI_PER_EV_A2_AMU, THZ_TO_CM1

SPEED_OF_LIGHT_CM_S = 2.99792458e10
LOW_FREQUENCY_CM1 = 150.0  # cm^-1: the acoustic and interlayer branches lie below this at Gamma
FD_STEP_A = 0.01  # Angstrom: rigid-layer displacement of the finite differences

# Fractional shifts of layer 2 (units of a1, a2) along the long diagonal s = (t, t):
# AA at t = 0 and 1, AB at 1/3, SP (the saddle) at 1/2, BA at 2/3.
STACKING_PATH_POINTS = {"AA": 0.0, "AB": 1 / 3, "SP": 1 / 2, "BA": 2 / 3, "AA'": 1.0}


def validation_cells() -> dict[str, tuple[Atoms, int]]:
    """The cells whose Gamma modes are compared (name -> primitive cell, phonopy supercell n):
    the trained AB stacking and four the phonon set never holds."""
    from .structures import twisted_bilayer

    return {"AB_bilayer": (bilayer("AB"), 6),
            "ABA_trilayer": (trilayer("ABA"), 6),
            "AB_bilayer_strained_1.5pct": (strained(bilayer("AB"), 0.015), 6),
            "ABC_trilayer": (trilayer("ABC"), 6),
            "twisted_21.8deg": (twisted_bilayer(1, 2), 2)}


def omega_to_cm1(omega2_si: np.ndarray) -> np.ndarray:
    """Angular frequency squared (rad^2/s^2) -> frequency in cm^-1 (negative if omega^2 < 0)."""
    omega2_si = np.asarray(omega2_si, dtype=float)
    return np.sign(omega2_si) * np.sqrt(np.abs(omega2_si)) / (2 * np.pi * SPEED_OF_LIGHT_CM_S)


def layers_of(atoms: Atoms) -> np.ndarray:
    """The layer label of each atom (``arrays["layer"]``, else detected from z)."""
    if "layer" in atoms.arrays:
        return np.asarray(atoms.arrays["layer"], dtype=int)
    from .structures import detect_layers

    return detect_layers(atoms)


def rigid_shift(atoms: Atoms, displacement_a: Sequence[float], layers: Sequence[int] | None = None) -> Atoms:
    """Copy of ``atoms`` with every atom of ``layers`` (default: the top layer) moved by the
    Cartesian vector ``displacement_a`` (Angstrom); the layer labels are kept."""
    out = atoms.copy()
    labels = layers_of(atoms)
    chosen = [labels.max()] if layers is None else list(layers)
    mask = np.isin(labels, chosen)
    out.positions[mask] += np.asarray(displacement_a, dtype=float)
    out.arrays["layer"] = labels.copy()
    return out


def trilayer(stacking: str = "ABA", d: float = BILAYER_D, a: float = GRAPHENE_A,
             vacuum: float = VACUUM_A) -> Atoms:
    """Primitive cell of trilayer graphene (6 atoms), "ABA" (Bernal) or "ABC" (rhombohedral),
    interlayer distance ``d`` (Angstrom); layer labels 0, 1, 2 from the bottom."""
    shifts = {"A": 0.0, "B": 1 / 3, "C": 2 / 3}
    if len(stacking) != 3 or set(stacking.upper()) - set(shifts):
        raise ValueError(f"a trilayer stacking is three of A, B, C (e.g. 'ABA'), got {stacking!r}")
    a12 = _primitive_vectors(a)
    basis = _layer_basis(a)
    layers = [basis + shifts[c] * (a12[0] + a12[1]) for c in stacking.upper()]
    return _stack(layers, a12, d, vacuum)


def strained(atoms: Atoms, strain: float) -> Atoms:
    """Copy with the in-plane cell and positions scaled by 1 + ``strain`` (biaxial)."""
    out = atoms.copy()
    scale = np.diag([1 + strain, 1 + strain, 1.0])
    out.set_cell(np.asarray(atoms.cell) @ scale, scale_atoms=False)
    out.positions = atoms.positions @ scale
    return out


def energy_per_atom_mev(model: ForceModel, structures: Sequence[Atoms]) -> np.ndarray:
    """Total energies of ``structures`` divided by their atom counts, in meV/atom."""
    energies, _ = model.energies_forces(list(structures))
    return 1e3 * np.asarray(energies) / np.array([len(a) for a in structures])


def stacking_path(points_per_segment: int = 6) -> np.ndarray:
    """Fractional shifts t along s = (t, t), t in [0, 1], with AA, AB, SP, BA, AA' on the grid."""
    marks = sorted(STACKING_PATH_POINTS.values())
    parts = [np.linspace(a, b, points_per_segment + 1)[:-1] for a, b in zip(marks[:-1], marks[1:])]
    return np.concatenate([*parts, [marks[-1]]])


def stacking_energies(model: ForceModel, t: Sequence[float], d: float = BILAYER_D,
                      a: float = GRAPHENE_A) -> np.ndarray:
    """Rigid flat bilayer at distance ``d``: energy per atom (meV) at the shifts s = (t, t)
    relative to AB stacking."""
    cells = [bilayer((float(x), float(x)), d=d, a=a) for x in t] + [bilayer("AB", d=d, a=a)]
    e = energy_per_atom_mev(model, cells)
    return e[:-1] - e[-1]


def binding_curve(model: ForceModel, distances: Sequence[float], stacking: str = "AB",
                  a: float = GRAPHENE_A) -> np.ndarray:
    """Rigid flat bilayer: energy per atom (meV) at each interlayer distance (Angstrom)."""
    return energy_per_atom_mev(model, [bilayer(stacking, d=float(d), a=a) for d in distances])


def equilibrium_distance(distances: Sequence[float], energies: Sequence[float]) -> float:
    """Minimum (Angstrom) of a quartic fitted to the five grid points around the lowest one."""
    d, e = np.asarray(distances, float), np.asarray(energies, float)
    k = int(np.clip(np.argmin(e), 2, len(d) - 3))
    sl = slice(k - 2, k + 3)
    p = np.polynomial.Polynomial.fit(d[sl], e[sl], 4)
    roots = [r.real for r in p.deriv().roots() if abs(r.imag) < 1e-9 and d[sl][0] <= r.real <= d[sl][-1]]
    if not roots:
        raise ValueError("no minimum inside the fitted window; widen the distance grid")
    return float(min(roots, key=p))


def layer_forces(forces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Sum of the forces on each layer, (n_layers, 3) eV/A: the intralayer forces cancel in it,
    so it is the interlayer force on each layer."""
    labels = np.asarray(labels, dtype=int)
    out = np.zeros((labels.max() + 1, 3))
    np.add.at(out, labels, np.asarray(forces))
    return out


def interlayer_force_constants(model: ForceModel, atoms: Atoms, step_a: float = FD_STEP_A,
                               lower: int | None = None) -> dict:
    """Shear (x, y) and breathing (z) force constants between layer ``lower`` (default: the
    second from the top) and the layer above it, from central differences of the layer-summed
    force on the upper layer under its rigid displacement by +-``step_a`` Angstrom:

        K_a = -(F_a(+h) - F_a(-h)) / (2 h)   (eV/A^2 per cell),  k_a = K_a / A   (eV/A^4).

    Also returns the one-sided values (+h and -h) and the two-mass frequencies
    omega^2 = K (1/M_lower + 1/M_upper) (cm^-1) of the two layers alone.
    """
    labels = layers_of(atoms)
    upper = labels.max() if lower is None else lower + 1
    lower = upper - 1
    area = float(np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1])))
    cells, keys = [atoms], []
    for axis in range(3):
        for sign in (1, -1):
            u = np.zeros(3)
            u[axis] = sign * step_a
            cells.append(rigid_shift(atoms, u, [upper]))
            keys.append((axis, sign))
    _, forces = model.energies_forces(cells)
    f_up = [layer_forces(f, labels)[upper] for f in forces]
    f0 = f_up[0]
    k = np.zeros(3)
    one_sided = np.zeros((3, 2))
    for (axis, sign), f in zip(keys, f_up[1:]):
        one_sided[axis, 0 if sign > 0 else 1] = -(f[axis] - f0[axis]) / (sign * step_a)
        k[axis] += -sign * f[axis] / (2 * step_a)
    masses = atoms.get_masses()
    m_low, m_up = masses[labels == lower].sum(), masses[labels == upper].sum()
    omega2 = k * (1 / m_low + 1 / m_up) * OMEGA2_SI_PER_EV_A2_AMU
    return {"area_a2": area, "step_a": step_a,
            "shear_ev_per_a2": float(k[:2].mean()), "breathing_ev_per_a2": float(k[2]),
            "shear_ev_per_a4": float(k[:2].mean() / area), "breathing_ev_per_a4": float(k[2] / area),
            "k_xyz_ev_per_a2": k.tolist(), "one_sided_ev_per_a2": one_sided.tolist(),
            "residual_force_ev_per_a": f0.tolist(),
            "shear_cm1": float(omega_to_cm1(omega2[:2].mean())), "breathing_cm1": float(omega_to_cm1(omega2[2]))}


def layer_chain_frequencies(k_ev_per_a4: float, areal_mass_amu_per_a2: float, n_layers: int) -> np.ndarray:
    """Gamma frequencies (cm^-1) of the nearest-layer linear chain of ``n_layers`` equal layers:
    omega_n^2 = (2 K / rho)(1 - cos(n pi / N)), n = 1 .. N - 1 (module docstring)."""
    n = np.arange(1, n_layers)
    omega2 = 2 * k_ev_per_a4 / areal_mass_amu_per_a2 * (1 - np.cos(n * np.pi / n_layers))
    return omega_to_cm1(omega2 * OMEGA2_SI_PER_EV_A2_AMU)


def mode_character(eigenvector: np.ndarray, atoms: Atoms) -> str:
    """'acoustic', 'shear', 'breathing' or 'intralayer' for a Gamma eigenvector (phonopy's,
    mass-weighted, shape (3N,)): its weight on whole-layer translations decides (> 1/2), the
    in-plane or out-of-plane direction which interlayer mode it is."""
    labels = layers_of(atoms)
    m = atoms.get_masses()
    e = np.asarray(eigenvector).reshape(-1, 3)
    acoustic, layered = np.zeros(3), np.zeros(3)
    for axis in range(3):
        basis = []
        for ell in np.unique(labels):
            v = np.zeros_like(m)
            v[labels == ell] = np.sqrt(m[labels == ell])
            basis.append(v / np.linalg.norm(v))
        uniform = np.sqrt(m) / np.linalg.norm(np.sqrt(m))
        layered[axis] = sum(abs(np.vdot(b, e[:, axis])) ** 2 for b in basis)
        acoustic[axis] = abs(np.vdot(uniform, e[:, axis])) ** 2
    if acoustic.sum() > 0.5:
        return "acoustic"
    if layered.sum() - acoustic.sum() > 0.5:
        return "shear" if layered[:2].sum() > layered[2] else "breathing"
    return "intralayer"


def gamma_modes(phonon, below_cm1: float = LOW_FREQUENCY_CM1) -> tuple[np.ndarray, list[str]]:
    """Gamma frequencies (cm^-1, ascending) below ``below_cm1`` of a phonopy object with force
    constants, and the character of each (``mode_character``)."""
    from .phonons import from_phonopy

    res = phonon.run_qpoints([[0.0, 0.0, 0.0]], with_eigenvectors=True)
    freq = np.asarray(res.frequencies[0]) * THZ_TO_CM1
    vecs = np.asarray(res.eigenvectors[0])
    prim = phonon.primitive
    atoms = Atoms(prim.symbols, positions=prim.positions, cell=prim.cell, pbc=True, masses=prim.masses)
    atoms.arrays["layer"] = _primitive_layers(phonon)
    keep = np.flatnonzero(freq < below_cm1)
    return freq[keep], [mode_character(vecs[:, k], atoms) for k in keep]


def _primitive_layers(phonon) -> np.ndarray:
    from .structures import detect_layers

    prim = phonon.primitive
    return detect_layers(Atoms(prim.symbols, positions=prim.positions, cell=prim.cell, pbc=True))


def compare_modes(ml_cm1: Sequence[float], ref_cm1: Sequence[float], characters: Sequence[str],
                  rel_tol: float = 0.10, abs_tol_cm1: float = 2.0) -> list[dict]:
    """Mode-by-mode comparison of ascending Gamma frequencies (cm^-1): each mode's ML and
    reference frequency, difference, relative error (None for acoustic modes, whose
    frequency is zero) and whether it is within ``rel_tol`` or ``abs_tol_cm1``, whichever is
    larger (issue 28's acceptance)."""
    if len(ml_cm1) != len(ref_cm1):
        raise ValueError(f"{len(ml_cm1)} ML modes against {len(ref_cm1)} reference modes below the limit")
    rows = []
    for f_ml, f_ref, ch in zip(ml_cm1, ref_cm1, characters):
        diff = float(f_ml - f_ref)
        rel = None if ch == "acoustic" or abs(f_ref) < abs_tol_cm1 else diff / abs(f_ref)
        rows.append({"character": ch, "ml_cm1": float(f_ml), "reference_cm1": float(f_ref),
                     "diff_cm1": diff, "rel_error": rel,
                     "ok": bool(abs(diff) <= max(abs_tol_cm1, rel_tol * abs(f_ref)))})
    return rows


def low_branch_rms(ml_thz: np.ndarray, ref_thz: np.ndarray, below_cm1: float = LOW_FREQUENCY_CM1) -> float:
    """RMS difference (cm^-1) of two dispersions (q, band; bands ascending, THz) over the points
    whose reference frequency lies below ``below_cm1``: the acoustic and interlayer branches
    where they are soft, which the full RMS, dominated by the optical branches, hides."""
    ml, ref = np.asarray(ml_thz) * THZ_TO_CM1, np.asarray(ref_thz) * THZ_TO_CM1
    mask = ref < below_cm1
    return float(np.sqrt(np.mean((ml[mask] - ref[mask]) ** 2)))


def gamma_comparison(primitive: Atoms, model: ForceModel, reference: ForceModel, size: int = 6,
                     below_cm1: float = LOW_FREQUENCY_CM1, relax: bool = True) -> dict:
    """Gamma modes below ``below_cm1`` of ``primitive`` with each model (each relaxes the
    positions for itself, ``phonons.relax_positions``), compared mode by mode
    (``compare_modes``), with the RMS of the low branches along Gamma-M-K-Gamma
    (``low_branch_rms``) when the cell is hexagonal, the full RMS and the imaginary modes."""
    from .phonons import dispersion, harmonic_phonons, imaginary_frequencies, relax_positions

    out: dict = {"n_atoms": len(primitive), "supercell": size}
    freqs, chars, curves = {}, {}, {}
    for name, m in (("ml", model), ("reference", reference)):
        cell = relax_positions(primitive, m) if relax else primitive
        phonon = harmonic_phonons(cell, m, size)
        freqs[name], chars[name] = gamma_modes(phonon, np.inf)
        try:
            curves[name] = dispersion(phonon, 21)
        except ValueError:
            curves[name] = None
        imag = imaginary_frequencies(curves[name].freq_thz if curves[name] is not None
                                     else freqs[name] / THZ_TO_CM1)
        out[f"{name}_n_imaginary"] = int(len(imag))
        out[f"{name}_max_imaginary_cm1"] = float(-imag.min() * THZ_TO_CM1) if len(imag) else 0.0
    low = freqs["reference"] < below_cm1
    n = int(low.sum())
    out["gamma_modes_cm1"] = {"ml": freqs["ml"][:n].tolist(), "reference": freqs["reference"][:n].tolist()}
    out["modes"] = compare_modes(freqs["ml"][:n], freqs["reference"][:n], chars["reference"][:n])
    if curves["ml"] is not None:
        out["low_branch_rms_cm1"] = low_branch_rms(curves["ml"].freq_thz, curves["reference"].freq_thz, below_cm1)
        out["rms_cm1"] = float(np.sqrt(np.mean((curves["ml"].freq_thz - curves["reference"].freq_thz) ** 2))
                               * THZ_TO_CM1)
    return out


def interlayer_metrics(model: ForceModel, reference: ForceModel, cells: Sequence[str] | None = None) -> dict:
    """What ``mlepi evaluate phonon --phonons`` records of the interlayer physics: the Gamma
    modes below 150 cm^-1 of each validation cell (``gamma_comparison``; ``gamma_modes_cm1``,
    ``low_branch_rms_cm1``, mode by mode in ``gamma_mode_errors``) and the MAE of the rigid
    stacking-energy surface along AA-AB-SP-BA-AA (``stacking_energy_mae_mev_per_atom``)."""
    all_cells = validation_cells()
    out: dict = {"gamma_modes_cm1": {}, "low_branch_rms_cm1": {}, "rms_cm1": {}, "gamma_mode_errors": {},
                 "imaginary_modes": {}, "failed_cells": {}}
    for name in cells or all_cells:
        atoms, size = all_cells[name]
        try:
            g = gamma_comparison(atoms, model, reference, size=size)
        except (StructureError, RuntimeError) as err:  # e.g. a poor model relaxes a cell into overlap
            out["failed_cells"][name] = str(err).splitlines()[0]
            continue
        out["gamma_modes_cm1"][name] = g["gamma_modes_cm1"]
        out["low_branch_rms_cm1"][name] = g.get("low_branch_rms_cm1")
        out["rms_cm1"][name] = g.get("rms_cm1")
        out["gamma_mode_errors"][name] = g["modes"]
        out["imaginary_modes"][name] = {"ml": g["ml_n_imaginary"], "reference": g["reference_n_imaginary"]}
    t = stacking_path(6)
    surface = stacking_energies(model, t) - stacking_energies(reference, t)
    out["stacking_energy_mae_mev_per_atom"] = float(np.mean(np.abs(surface)))
    return out


def inter_pair_features(structures: Sequence[Atoms], basis, cutoff_a: float) -> np.ndarray:
    """Per atom, the sum over interlayer pairs (i, j) within ``cutoff_a`` of ``basis(r_ij)``:
    (n_structures, n_basis). ``basis`` maps (E,) lengths in Angstrom to (E, n_basis)."""
    from ase.neighborlist import neighbor_list

    rows = []
    for atoms in structures:
        labels = layers_of(atoms)
        i, j, r = neighbor_list("ijd", atoms, cutoff_a)
        inter = labels[i] != labels[j]
        rows.append(basis(r[inter]).sum(axis=0) / len(atoms))
    return np.array(rows)


def pair_resolution_fit(energies_mev: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of energies (meV/atom) by a constant plus a pair sum over the
    features' basis functions: the best any interlayer pair term E = sum_ij f(r_ij) with f
    in that basis can do. Returns (fitted energies, coefficients)."""
    design = np.hstack([features, np.ones((len(features), 1))])
    coef, *_ = np.linalg.lstsq(design, energies_mev, rcond=None)
    return design @ coef, coef
