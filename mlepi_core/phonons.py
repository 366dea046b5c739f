"""Harmonic phonons through phonopy, with any force model as the calculator.

Finite displacements (0.01 A by default) in an n x n x 1 supercell of the
primitive cell give force constants (eV/A^2), symmetrized with the acoustic sum
rule. Frequencies leave phonopy in THz and are converted at the edge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.optimize import BFGS
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from .calculator import MLEPICalculator
from .seams import ForceModel
from .units import THZ_TO_CM1, THZ_TO_MEV

DISPLACEMENT_A = 0.01  # Angstrom, finite-displacement amplitude


def to_phonopy(atoms: Atoms) -> PhonopyAtoms:
    """ASE -> PhonopyAtoms (same cell, positions, masses)."""
    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.asarray(atoms.cell),
                        positions=atoms.positions, masses=atoms.get_masses())


def supercell_atoms(phonon: Phonopy, primitive: Atoms) -> Atoms:
    """Phonopy's supercell as ASE atoms, carrying the primitive cell's layer labels."""
    sc = phonon.supercell
    atoms = Atoms(sc.symbols, positions=sc.positions, cell=sc.cell, pbc=True, masses=sc.masses)
    layer = np.asarray(primitive.arrays["layer"])
    unit_index = np.array([sc.u2u_map[k] for k in sc.s2u_map])  # supercell atom -> unit-cell atom
    atoms.arrays["layer"] = layer[unit_index]
    return atoms


def from_phonopy(cell: PhonopyAtoms, like: Atoms) -> Atoms:
    """PhonopyAtoms -> ASE, copying the layer labels of ``like`` (same atom order)."""
    atoms = Atoms(cell.symbols, positions=cell.positions, cell=cell.cell, pbc=True,
                  masses=cell.masses)
    atoms.arrays["layer"] = np.asarray(like.arrays["layer"]).copy()
    return atoms


def relax_positions(atoms: Atoms, model: ForceModel, fmax: float = 1e-4, steps: int = 500) -> Atoms:
    """Copy of ``atoms`` with positions relaxed (fixed cell) until max |F| < fmax eV/A.

    Phonons need a force-free reference: flat AB layers carry +-0.05 eV/A from the
    interlayer potential, relieved by a ~0.003 A buckling.
    """
    relaxed = atoms.copy()
    relaxed.calc = MLEPICalculator(model)
    BFGS(relaxed, logfile=None).run(fmax=fmax, steps=steps)
    fmax_found = np.abs(relaxed.get_forces()).max()
    relaxed.calc = None
    if fmax_found > 10 * fmax:
        raise RuntimeError(f"relaxation did not converge (max force {fmax_found:.2e} eV/A)")
    return relaxed


def harmonic_phonons(primitive: Atoms, model: ForceModel, size: int | tuple[int, int] = 6,
                     displacement: float = DISPLACEMENT_A, symmetrize: bool = True) -> Phonopy:
    """Phonopy object with force constants of ``primitive`` from ``model``.

    ``size`` is the in-plane supercell n (or (n1, n2)); the stacking axis is
    never repeated. Force constants are symmetrized (acoustic sum rule,
    index permutation) unless ``symmetrize`` is False.
    """
    n1, n2 = (size, size) if np.isscalar(size) else size
    phonon = Phonopy(to_phonopy(primitive), supercell_matrix=np.diag([n1, n2, 1]),
                     primitive_matrix="P")
    phonon.generate_displacements(distance=displacement)
    ideal = supercell_atoms(phonon, primitive)
    cells = [from_phonopy(c, ideal) for c in phonon.supercells_with_displacements]
    _, forces = model.energies_forces(cells)
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    if symmetrize:
        phonon.symmetrize_force_constants()
    return phonon


# --- dispersion, DOS, outputs --------------------------------------------------------

FREQUENCY_UNITS = {"cm1": THZ_TO_CM1, "thz": 1.0, "mev": THZ_TO_MEV}
UNIT_LABELS = {"cm1": "cm$^{-1}$", "thz": "THz", "mev": "meV"}


def convert_frequencies(freq_thz: np.ndarray, unit: str) -> np.ndarray:
    """THz (phonopy) -> ``unit`` ('cm1', 'thz' or 'mev'); imaginary modes stay negative."""
    try:
        return np.asarray(freq_thz) * FREQUENCY_UNITS[unit.lower()]
    except KeyError:
        raise ValueError(f"unknown frequency unit {unit!r}; use cm1, thz or mev") from None


def hexagonal_path(cell: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Gamma-M-K-Gamma in fractional coordinates of a hexagonal in-plane cell.

    Works for 60- and 120-degree lattice vectors alike: K is the fractional point
    (1/3, 1/3), (2/3, 1/3) or (1/3, 2/3) that lies at |b|/sqrt(3), the zone corner.
    Raises ValueError if the in-plane cell is not hexagonal.
    """
    a1, a2 = np.asarray(cell)[:2, :2]
    cosang = a1 @ a2 / (np.linalg.norm(a1) * np.linalg.norm(a2))
    if abs(np.linalg.norm(a1) - np.linalg.norm(a2)) > 1e-6 or abs(abs(cosang) - 0.5) > 1e-6:
        raise ValueError("the in-plane cell is not hexagonal (|a1| = |a2|, 60 or 120 degrees)")
    recip = 2 * np.pi * np.linalg.inv(np.asarray(cell)).T  # rows b1, b2, b3 in 1/A
    corner = np.linalg.norm(recip[0]) / np.sqrt(3)
    k = next(np.array([x, y, 0.0]) for x, y in ((1 / 3, 1 / 3), (2 / 3, 1 / 3), (1 / 3, 2 / 3))
             if abs(np.linalg.norm(np.array([x, y, 0.0]) @ recip) - corner) < 1e-8)
    gamma, m = np.zeros(3), np.array([0.5, 0.0, 0.0])
    return [("Γ", gamma), ("M", m), ("K", k), ("Γ", gamma)]


@dataclass
class Dispersion:
    """Phonon bands along a path: frequencies in THz, distances in 1/A (2*pi included)."""

    labels: list[str]
    label_distances: np.ndarray  # (n_labels,)
    distances: np.ndarray  # (n_q,)
    q_frac: np.ndarray  # (n_q, 3)
    freq_thz: np.ndarray  # (n_q, n_bands)


def dispersion(phonon: Phonopy, points_per_segment: int = 51,
               path: list[tuple[str, np.ndarray]] | None = None) -> Dispersion:
    """Bands along ``path`` (default Gamma-M-K-Gamma of the primitive cell)."""
    path = path or hexagonal_path(phonon.primitive.cell)
    segments = [np.linspace(a[1], b[1], points_per_segment) for a, b in zip(path[:-1], path[1:])]
    phonon.run_band_structure(segments, labels=[p[0] for p in path])
    recip = 2 * np.pi * np.linalg.inv(phonon.primitive.cell).T
    q = np.concatenate(segments)
    steps = np.linalg.norm(np.diff(q @ recip, axis=0), axis=1)
    dist = np.concatenate([[0.0], np.cumsum(steps)])
    # segments share their end points: zero-length steps keep the label positions right
    ends = np.cumsum([len(s) for s in segments]) - 1
    return Dispersion(labels=[p[0] for p in path],
                      label_distances=np.concatenate([[0.0], dist[ends]]),
                      distances=dist, q_frac=q,
                      freq_thz=np.concatenate(phonon.band_structure.frequencies))


def density_of_states(phonon: Phonopy, mesh: int = 48, sigma_thz: float = 0.25,
                      pitch_thz: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Total phonon DOS on a mesh x mesh x 1 grid: (frequencies THz, states per THz per cell)."""
    phonon.run_mesh([mesh, mesh, 1], is_gamma_center=True)
    phonon.run_total_dos(sigma=sigma_thz, freq_pitch=pitch_thz, use_tetrahedron_method=False)
    dos = phonon.total_dos
    return np.asarray(dos.frequency_points), np.asarray(dos.dos)


def supercell_modes(phonon: Phonopy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Modes of the force-constant supercell: its commensurate q-points (fractional, of the
    primitive cell), frequencies (THz) and eigenvectors (n_q, 3n, 3n) as phonopy defines them."""
    from phonopy.harmonic.dynmat_to_fc import get_commensurate_points

    q = get_commensurate_points(phonon.supercell_matrix)
    result = phonon.run_qpoints(q, with_eigenvectors=True)
    return q, result.frequencies, result.eigenvectors


def imaginary_frequencies(freq_thz: np.ndarray, tol_thz: float = 1e-3) -> np.ndarray:
    """The imaginary frequencies (as negative THz values) below -tol_thz; never dropped silently."""
    f = np.asarray(freq_thz).ravel()
    return f[f < -tol_thz]


def write_dispersion(folder: str | Path, curves: dict[str, Dispersion], unit: str = "cm1",
                     dos: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                     title: str = "") -> dict:
    """Write CSV + JSON (per model) and a PNG plot overlaying all ``curves``.

    Returns a summary: per model the lowest frequency, imaginary-mode count and the
    Gamma frequencies, in ``unit``; with two or more curves, the RMS difference of
    each to the first (same path and sampling).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary: dict = {"unit": unit, "models": {}}
    names = list(curves)
    for name, c in curves.items():
        f = convert_frequencies(c.freq_thz, unit)
        header = "distance_inv_A,qa,qb,qc," + ",".join(f"band{b}_{unit}" for b in range(f.shape[1]))
        rows = np.column_stack([c.distances, c.q_frac, f])
        np.savetxt(folder / f"dispersion_{name}.csv", rows, delimiter=",", header=header, comments="")
        imag = convert_frequencies(imaginary_frequencies(c.freq_thz), unit)
        summary["models"][name] = {
            "min_freq": float(f.min()), "n_imaginary": int(len(imag)),
            "max_imag": float(-imag.min()) if len(imag) else 0.0,
            "gamma_freqs": np.round(np.sort(f[0]), 2).tolist()}
    if len(names) > 1:
        ref = convert_frequencies(curves[names[0]].freq_thz, unit)
        for name in names[1:]:
            other = convert_frequencies(curves[name].freq_thz, unit)
            summary["models"][name]["rms_vs_" + names[0]] = float(np.sqrt(np.mean((other - ref) ** 2)))
    (folder / "dispersion.json").write_text(json.dumps(summary, indent=1))

    ncols = 2 if dos else 1
    fig, axes = plt.subplots(1, ncols, figsize=(7 if dos else 5, 4.5), sharey=True,
                             gridspec_kw={"width_ratios": [3, 1]} if dos else None, squeeze=False)
    ax = axes[0, 0]
    styles = [dict(color="k", lw=1.6), dict(color="tab:red", lw=1.0, ls="--"),
              dict(color="tab:blue", lw=1.0, ls=":")]
    for (name, c), style in zip(curves.items(), styles):
        f = convert_frequencies(c.freq_thz, unit)
        for b in range(f.shape[1]):
            ax.plot(c.distances, f[:, b], label=name if b == 0 else None, **style)
    first = curves[names[0]]
    for x in first.label_distances:
        ax.axvline(x, color="0.7", lw=0.6)
    ax.axhline(0, color="0.7", lw=0.6)
    ax.set_xticks(first.label_distances, first.labels)
    ax.set_xlim(first.distances[0], first.distances[-1])
    ax.set_ylabel(f"frequency ({UNIT_LABELS[unit]})")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    if dos:
        for (name, (freq, d)), style in zip(dos.items(), styles):
            axes[0, 1].plot(d / FREQUENCY_UNITS[unit], convert_frequencies(freq, unit), **style)
        axes[0, 1].set_xlabel("DOS")
        axes[0, 1].set_xticks([])
    fig.tight_layout()
    fig.savefig(folder / "dispersion.png", dpi=150)
    plt.close(fig)
    return summary


def compare_dispersions(primitive: Atoms, model: ForceModel, reference: ForceModel, size: int = 6,
                        points_per_segment: int = 51, relax: bool = True) -> dict:
    """ML-vs-reference phonons of ``primitive`` in an n x n x 1 supercell (the paper's Fig. 4b).

    Each model relaxes the positions for itself, then both dispersions are taken on the
    same path and sampling. Returns the RMS difference over all bands and q-points
    (cm^-1), the largest imaginary frequency of each (cm^-1, 0 if none beyond the
    numerical noise of the acoustic branch at Gamma, 1e-3 THz) and both
    ``Dispersion`` objects for plotting.
    """
    curves = {}
    for name, m in (("ML", model), ("reference", reference)):
        cell = relax_positions(primitive, m) if relax else primitive
        curves[name] = dispersion(harmonic_phonons(cell, m, size), points_per_segment)
    ml, ref = (convert_frequencies(curves[k].freq_thz, "cm1") for k in ("ML", "reference"))
    imag = {k: float(max(0.0, -convert_frequencies(imaginary_frequencies(c.freq_thz), "cm1").min(initial=0.0)))
            for k, c in curves.items()}
    return {"rms_cm1": float(np.sqrt(np.mean((ml - ref) ** 2))), "max_imag_cm1": imag["ML"],
            "reference_max_imag_cm1": imag["reference"], "supercell": size, "curves": curves}


def plot_dispersion_comparison(path: str | Path, comparison: dict, title: str) -> None:
    """The ML dispersion (dots) over the reference one (lines) of a ``compare_dispersions``
    result, in cm^-1, with its RMS difference in the title (the paper's Fig. 4b)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.2))
    for name, label, style in (("reference", "LCBOP + KC reference", dict(color="k", lw=1.2)),
                               ("ML", "HedgeNet-Phonon", dict(color="tab:red", lw=0, marker="o", ms=1.6))):
        c = comparison["curves"][name]
        f = convert_frequencies(c.freq_thz, "cm1")
        for band in range(f.shape[1]):
            ax.plot(c.distances, f[:, band], **style, label=None if band else label)
    c = comparison["curves"]["reference"]
    ax.set_xticks(c.label_distances, c.labels)
    for x in c.label_distances:
        ax.axvline(x, color="0.85", lw=0.6)
    ax.set_xlim(c.distances[0], c.distances[-1])
    ax.set_ylabel(f"frequency ({UNIT_LABELS['cm1']})")
    ax.set_title(f"{title}: RMS {comparison['rms_cm1']:.1f} cm$^{{-1}}$", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
