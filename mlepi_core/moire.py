"""Twisted bilayer graphene at commensurate angles: the moire cell, its high-symmetry
k-points, the bands nearest charge neutrality of large cells, flat-band width and gap.

For the magic-angle cell (30, 31) (1.08 degrees, 11,164 atoms) dense H(k) is out of
reach, so H(k) is built sparse (``electrons.sparse_bloch``) and solved by shift-invert
Lanczos about a shift sigma near charge neutrality, as ``electrons.sparse_eigs_near``
does. One sparse factorization of H - sigma S (MKL PARDISO's LDL^T where installed,
else SciPy's SuperLU) serves twice: as ARPACK's shift-invert operator and as an
eigenvalue *count*. With symmetric pivoting the factorization is a congruence
P (H - sigma S) P^T = L D L^H, so by Sylvester's law of inertia the number of negative
eigenvalues of D is the number of eigenvalues of H c = E S c below sigma (S is positive
definite). That labels every computed eigenvalue with its band index, so "the 8
states nearest neutrality" are bands n_occ - 4 ... n_occ + 3 exactly, with n_occ the
filled (spin-degenerate) bands of the neutral cell, and not merely the 8 eigenvalues
nearest a guessed energy.

Charge neutrality: the Slater-Koster p_z model has one electron per carbon (a GFN1
s,p model four), so half of the four central bands are filled and E_F lies where
central bands 2 and 3 meet, at the moire Dirac points at K. E_F here is the mean of
the four central eigenvalues at K (two valleys' Dirac points, split only by the tiny
intervalley coupling), i.e. the centre of the four central bands there.

Energies in eV (widths and gaps reported in meV by the callers), k fractional in the
moire cell's reciprocal vectors unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from ase import Atoms

from .structures import twist_angle

N_CENTRAL = 4  # flat bands of twisted bilayer graphene per spin (2 valleys x 2)
SINGULAR_EV = 1e-5  # eV: a shift this close to an eigenvalue makes the eigenvalue count unreliable
SHIFT_OFF_EV = 1.37e-3  # eV: the step off it (far below the central bands' spacing from the remote ones)


# --- cells and k-points -------------------------------------------------------------------

def commensurate_cell_for_angle(theta_deg: float, max_m: int = 400) -> tuple[int, int]:
    """The commensurate cell (m, m + 1) whose twist angle is nearest ``theta_deg`` degrees
    (1.08 -> (30, 31), 11,164 atoms; 21.8 -> (1, 2))."""
    if not 0 < theta_deg < 60:
        raise ValueError(f"twist angle must lie in (0, 60) degrees, got {theta_deg}")
    m = np.arange(1, max_m + 1)
    angles = np.array([twist_angle(int(k), int(k) + 1) for k in m])
    best = int(m[np.argmin(np.abs(angles - theta_deg))])
    return best, best + 1


def moire_k_points(cell: np.ndarray) -> dict[str, np.ndarray]:
    """Gamma, M and K of the hexagonal moire cell as fractional k (3,) of its reciprocal
    vectors b1, b2. K is the zone corner (2 b1 + b2)/3 when b1 and b2 are 120 degrees
    apart (a1, a2 at 60 degrees, as ``twisted_bilayer`` builds them), (b1 + b2)/3 when
    they are 60 degrees apart; M = b1 / 2."""
    a = np.asarray(cell, dtype=float)[:2, :2]
    la, lb = np.linalg.norm(a, axis=1)
    cos = a[0] @ a[1] / (la * lb)
    if abs(la - lb) > 1e-6 * la or min(abs(cos - 0.5), abs(cos + 0.5)) > 1e-6:
        raise ValueError("the in-plane cell is not hexagonal (|a1| = |a2| at 60 or 120 degrees)")
    k = np.array([2 / 3, 1 / 3, 0.0]) if cos > 0 else np.array([1 / 3, 1 / 3, 0.0])
    return {"Γ": np.zeros(3), "M": np.array([0.5, 0.0, 0.0]), "K": k}


def k_cartesian(cell: np.ndarray, k_frac: np.ndarray) -> np.ndarray:
    """Cartesian k (1/A, 2 pi included) of fractional k (K, 3) of ``cell``."""
    recip = 2 * np.pi * np.linalg.inv(np.asarray(cell, dtype=float)).T
    return np.atleast_2d(np.asarray(k_frac, dtype=float)) @ recip


def moire_path(cell: np.ndarray, points_per_segment: int) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Gamma - M - K - Gamma of the moire zone: fractional k (P, 3), path distance (P,) in
    1/A, the labels and their distances. ``points_per_segment`` = 1 gives the corners only."""
    pts = moire_k_points(cell)
    names = ["Γ", "M", "K", "Γ"]
    corners = [pts[n] for n in names]
    ks = []
    for a, b in zip(corners[:-1], corners[1:]):
        ks.extend(a + t * (b - a) for t in np.arange(points_per_segment) / points_per_segment)
    ks.append(corners[-1])
    ks = np.array(ks)
    kc = k_cartesian(cell, ks)
    dist = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(kc, axis=0), axis=1))])
    ticks = dist[::points_per_segment]
    return ks, dist, names, ticks


# --- the labelled sparse shift-invert solver ---------------------------------------------

# Oneapi MKL PARDISO's iparm (0-based) for A = H - sigma S, real symmetric indefinite:
# METIS nested dissection (1), pivot perturbation 1e-13 (9), symmetric scaling (10) and
# weighted matching (12) for indefinite matrices, up to 10 steps of iterative refinement (7).
# Its inertia (21, 22) counts eigenvalues when no pivot was perturbed (13). The complex
# Hermitian mode of the Python wrapper returned wrong solves on moire H(k) here, so a
# complex A goes in as the real symmetric [[Re A, -Im A], [Im A, Re A]] (each eigenvalue twice).
PARDISO_IPARM = {1: 2, 7: 10, 9: 13, 10: 1, 12: 1}


def shifted_factor(h, s, sigma: float, backend: str = "auto") -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """Factor A = H - sigma S (sparse, Hermitian; S positive definite or None for 1) once:
    (solve b -> A^-1 b, the number of eigenvalues of H c = E S c below sigma).

    With MKL PARDISO installed (``py-mkl-pardiso``: nested dissection, two threads) the
    factorization is LDL^T with the inertia read from the solver; otherwise SciPy's SuperLU
    in symmetric mode with diagonal pivoting, a congruence P A P^T = L D L^H whose negative
    pivots count the same (Sylvester's law of inertia; module docstring). PARDISO is ~60x
    faster on the 1.08-degree cell with s, p orbitals (44,656 x 44,656 at Gamma: 14 s
    against more than 15 minutes), which SuperLU cannot do in practice. ``backend``:
    "auto" (PARDISO if installed), "pardiso" or "superlu".
    """
    import scipy.sparse as sp

    if backend not in ("auto", "pardiso", "superlu"):
        raise ValueError(f"backend must be auto, pardiso or superlu, got {backend!r}")
    m = h.shape[0]
    a = (h - sigma * (sp.identity(m, format="csr") if s is None else s)).tocsr()
    try:
        if backend == "superlu":
            raise ImportError
        from pymklpardiso import MTYPE_REAL_SYM_INDEF, PardisoSolver
    except ImportError:
        if backend == "pardiso":
            raise
        return _superlu_factor(a)
    real = not np.iscomplexobj(a.data) or not np.any(a.data.imag)
    big = a.real if real else sp.bmat([[a.real, -a.imag], [a.imag, a.real]], format="csr")
    upper = sp.triu(big, format="csr")
    upper.sort_indices()
    solver = PardisoSolver(upper, MTYPE_REAL_SYM_INDEF, iparms=PARDISO_IPARM)
    iparm = solver.get_iparm()
    if iparm[13]:
        raise RuntimeError(f"PARDISO perturbed {iparm[13]} pivots: no eigenvalue count (sigma on an eigenvalue?)")
    negative = int(iparm[22])
    if real:
        return (lambda b: solver.solve(np.ascontiguousarray(b.real)) + 1j * solver.solve(np.ascontiguousarray(b.imag))), negative
    if negative % 2:
        raise RuntimeError("odd inertia of the doubled real matrix: the factorization is not exact")

    def solve(b):
        x = solver.solve(np.concatenate([b.real, b.imag]))
        return x[:m] + 1j * x[m:]
    return solve, negative // 2


def _superlu_factor(a) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    import scipy.sparse.linalg as sla

    lu = sla.splu(a.tocsc().astype(complex), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
    if not np.array_equal(lu.perm_r, lu.perm_c):
        raise RuntimeError("the LU pivoted off the diagonal: no eigenvalue count (sigma too close to an eigenvalue?)")
    return lu.solve, int(np.count_nonzero(lu.U.diagonal().real < 0))


def labelled_eigs_near(h, s, sigma: float, n_states: int) -> tuple[np.ndarray, int]:
    """The ``n_states`` eigenvalues (eV, ascending) of H c = E S c nearest ``sigma`` and the
    band index (0-based, over the whole spectrum) of the first of them.

    One factorization of H - sigma S (``shifted_factor``) gives both the shift-invert
    operator of ARPACK and the number of eigenvalues below sigma, which labels them.
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla

    m = h.shape[0]
    identity = s is None or (s - sp.identity(m, format="csr")).count_nonzero() == 0
    solve, n_below = shifted_factor(h, None if identity else s, sigma)
    op = sla.LinearOperator((m, m), matvec=solve, dtype=complex)
    vals = sla.eigsh(h.astype(complex), k=n_states, M=None if identity else s, sigma=sigma, which="LM",
                     OPinv=op, return_eigenvectors=False)
    vals = np.sort(vals.real)
    return vals, n_below - int(np.count_nonzero(vals < sigma))


def band_window(h, s, sigma: float, first_band: int, n_states: int, margin: int = 4,
                max_tries: int = 30) -> tuple[np.ndarray, float]:
    """Bands ``first_band`` ... ``first_band + n_states - 1`` of H(k) (eV): shift-invert about
    sigma, moving sigma until the labelled window covers them. Returns the energies and the
    sigma that worked (a good start for the next k-point)."""
    n_solve = n_states + margin
    for _ in range(max_tries):
        try:
            vals, first = labelled_eigs_near(h, s, sigma, n_solve)
        except RuntimeError:  # a pivot too small to count on: sigma sits on an eigenvalue
            sigma += SHIFT_OFF_EV
            continue
        if np.min(np.abs(vals - sigma)) < SINGULAR_EV:
            # sigma on an eigenvalue (the Dirac points at K sit exactly at E_F): H - sigma S is
            # singular and the sign of its smallest pivot, hence the count, is noise. Step off.
            sigma += SHIFT_OFF_EV
            continue
        lo = first_band - first
        if lo >= 0 and lo + n_states <= n_solve:
            return vals[lo:lo + n_states], sigma
        # Move by the index offset times the local level spacing (a secant step on the count).
        spacing = max((vals[-1] - vals[0]) / (n_solve - 1), 1e-4)
        offset = (first_band + n_states / 2) - (first + n_solve / 2)
        sigma = float(sigma + offset * spacing)
    raise RuntimeError(f"could not bracket bands {first_band}..{first_band + n_states - 1} "
                       f"in {max_tries} shift-invert solves")


@dataclass
class NeutralityBands:
    """The ``n_states`` bands nearest charge neutrality at each k (eV, absolute)."""

    k_frac: np.ndarray  # (K, 3)
    energies: np.ndarray  # (K, n_states) eV, bands n_occ - n/2 ... n_occ + n/2 - 1
    n_occ: int  # filled bands of the neutral cell (spin-degenerate)
    e_fermi: float  # eV, centre of the four central bands at K (module docstring)
    seconds: dict = field(default_factory=dict)

    def relative_mev(self) -> np.ndarray:
        """Energies (K, n_states) in meV from E_F."""
        return 1e3 * (self.energies - self.e_fermi)


def neutral_band_count(blocks, atoms: Atoms) -> int:
    """Filled (spin-degenerate) bands of the neutral cell: the blocks' valence electrons
    (one per carbon for the p_z model, four for GFN1's s, p) over two."""
    from .observables import BandProbe

    electrons = int(blocks.meta.get("valence_electrons", BandProbe.valence_electrons(atoms)))
    if electrons % 2:
        raise ValueError(f"{electrons} valence electrons: an odd count has no spin-degenerate neutral filling")
    return electrons // 2


def neutrality_guess(model, atoms: Atoms, dense_limit: int = 3000, blocks=None) -> float:
    """A first shift (eV) near charge neutrality: the exact mid-point of bands n_occ - 1 and
    n_occ at K from a dense solve of ``atoms`` when it has at most ``dense_limit`` orbitals,
    else of the small twisted cell (3, 4) at the same mean interlayer distance with the same
    model (the labelled solver corrects the remaining offset; (3, 4) is the smallest cell
    whose 15 A lattice vectors every model here can split into blocks). ``blocks``: the
    model's blocks of ``atoms`` if already computed."""
    import torch

    from .electrons import BlockTensors, bloch_sum, solve_generalized
    from .structures import twisted_bilayer

    if blocks is None:
        (blocks,) = model.blocks([atoms])
    if blocks.n_orbitals > dense_limit:
        layer = np.asarray(atoms.arrays["layer"])
        d = float(atoms.positions[layer == 1, 2].mean() - atoms.positions[layer == 0, 2].mean())
        atoms = twisted_bilayer(3, 4, d=d)
        (blocks,) = model.blocks([atoms])
    n_occ = neutral_band_count(blocks, atoms)
    bt = BlockTensors.from_blocks(blocks, atoms.positions, atoms.cell)
    kc = torch.as_tensor(k_cartesian(atoms.cell, moire_k_points(atoms.cell)["K"]))
    e = solve_generalized(bloch_sum(bt, kc, "h"), bloch_sum(bt, kc, "s"))[0].numpy()[0]
    return float(0.5 * (e[n_occ - 1] + e[n_occ]))


def bands_near_neutrality(model, atoms: Atoms, k_frac: np.ndarray, n_states: int = 8,
                          sigma: float | None = None, blocks=None,
                          progress: Callable[[str], None] | None = None) -> NeutralityBands:
    """Bands n_occ - n_states/2 ... n_occ + n_states/2 - 1 of a Hamiltonian model on
    ``atoms`` at fractional k (K, 3) of its cell, by the labelled sparse shift-invert solve.

    K of the moire cell (``moire_k_points``) must be among ``k_frac``: E_F is the centre of
    the four central bands there. ``sigma`` (eV) is a first shift (default
    ``neutrality_guess``); ``blocks`` the model's blocks if already computed.
    """
    import time

    from .electrons import sparse_bloch

    if n_states % 2 or n_states < N_CENTRAL:
        raise ValueError(f"n_states must be even and >= {N_CENTRAL}, got {n_states}")
    k_frac = np.atleast_2d(np.asarray(k_frac, dtype=float))
    k_point = moire_k_points(atoms.cell)["K"]
    at_k = np.flatnonzero(np.all(np.abs(k_frac - k_point) < 1e-9, axis=1))
    if not len(at_k):
        raise ValueError("k_frac must contain the moire K point (E_F is fixed there)")
    seconds = {}
    t0 = time.perf_counter()
    if blocks is None:
        (blocks,) = model.blocks([atoms])
    seconds["blocks"] = time.perf_counter() - t0
    n_occ = neutral_band_count(blocks, atoms)
    first = n_occ - n_states // 2
    t0 = time.perf_counter()
    sigma = neutrality_guess(model, atoms, blocks=blocks) if sigma is None else float(sigma)
    seconds["guess"] = time.perf_counter() - t0
    kc = k_cartesian(atoms.cell, k_frac)
    energies = np.empty((len(k_frac), n_states))
    order = [int(at_k[0])] + [i for i in range(len(k_frac)) if i != at_k[0]]  # K first: it fixes E_F
    t0 = time.perf_counter()
    for count, i in enumerate(order):
        h, s = sparse_bloch(blocks, atoms.positions, atoms.cell, kc[i])
        energies[i], _ = band_window(h, s, sigma, first, n_states)
        if count == 0:  # later k-points start from the neutrality point
            sigma = float(energies[i, n_states // 2 - 2: n_states // 2 + 2].mean())
        if progress is not None:
            progress(f"k {count + 1}/{len(k_frac)} ({k_frac[i, 0]:.3f}, {k_frac[i, 1]:.3f}) solved "
                     f"[{time.perf_counter() - t0:.1f} s]")
    seconds["solve"] = time.perf_counter() - t0
    e_fermi = float(energies[at_k[0], n_states // 2 - 2: n_states // 2 + 2].mean())
    return NeutralityBands(k_frac=k_frac, energies=energies, n_occ=n_occ, e_fermi=e_fermi, seconds=seconds)


# --- flat-band observables ---------------------------------------------------------------

def central_bands(energies: np.ndarray) -> np.ndarray:
    """The four central bands (K, 4) of an even (K, n_states) window centred on neutrality."""
    e = np.atleast_2d(energies)
    mid = e.shape[1] // 2
    return e[:, mid - 2: mid + 2]


def central_width(energies: np.ndarray) -> float:
    """Width of the four central (flat) bands over the given k-points: max - min (same unit)."""
    c = central_bands(energies)
    return float(c.max() - c.min())


def remote_gaps(energies: np.ndarray) -> tuple[float, float]:
    """(gap below, gap above) between the four central bands and the next band on each side
    over the given k-points (same unit); negative where they overlap."""
    e = np.atleast_2d(energies)
    mid = e.shape[1] // 2
    if e.shape[1] < N_CENTRAL + 2:
        raise ValueError("need at least one band beyond the central four on each side")
    c = central_bands(e)
    return float(c.min() - e[:, mid - 3].max()), float(e[:, mid + 2].min() - c.max())


# --- the continuum model at the same angle -----------------------------------------------

def continuum_bands(theta_deg: float, points_per_segment: int = 30, d: float | None = None, n_per_valley: int = 4
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bistritzer-MacDonald bands (``mlepi_core.continuum``, Slater-Koster parameters) of both
    valleys along Gamma - M - K - Gamma, the 2 ``n_per_valley`` of their union nearest the
    Dirac point (as many as a tight-binding window of that size holds): (path distance (P,)
    1/A, energies (P, 2 n_per_valley) eV from the continuum Dirac point, label distances (4,)). Valley K' follows from time reversal, E_K'(kappa) = E_K(-kappa)
    with kappa the moire crystal momentum from Gamma, so the merged set is what a
    commensurate tight-binding cell, where both valleys fold, shows at each k."""
    from .continuum import ContinuumModel
    from .reference import slater_koster as sk

    model = ContinuumModel.from_slater_koster(theta_deg, d=sk.D0 if d is None else d)
    kt = model.k_theta
    gamma, m_pt, k_pt = np.array([np.sqrt(3) / 2 * kt, kt / 2]), np.array([0.0, kt / 2]), np.zeros(2)
    corners = [gamma, m_pt, k_pt, gamma]
    ks = [a + t * (b - a) for a, b in zip(corners[:-1], corners[1:])
          for t in np.arange(points_per_segment) / points_per_segment] + [gamma]
    ks = np.array(ks)
    # Extra bands per valley, then the middle 2 n_per_valley of the union: where one valley's
    # second remote band dips below the other's first, the nearest states mix valleys.
    e = np.concatenate([model.bands(ks, n_per_valley + 4), model.bands(2 * gamma - ks, n_per_valley + 4)], axis=1)
    e = np.sort(e, axis=1)[:, 4:4 + 2 * n_per_valley]
    dist = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ks, axis=0), axis=1))])
    return dist, e, dist[::points_per_segment]


# --- relaxation ------------------------------------------------------------------------

def relax_twisted(atoms: Atoms, force_model, fmax: float = 0.01, steps: int = 400,
                  maxstep: float = 0.05, progress: Callable[[str], None] | None = None,
                  every: int = 20) -> tuple[Atoms, dict]:
    """Copy of a twisted cell with positions relaxed at fixed cell by L-BFGS (ASE) with a
    force model (e.g. the LCBOP+KC reference) until max |F| < ``fmax`` eV/A or ``steps``
    steps, no atom moving more than ``maxstep`` A per step; returns it and a record
    (steps, final max |F| in eV/A, the layers' corrugation in A, whether it converged).

    L-BFGS rather than the BFGS of ``phonons.relax_positions``: a dense 3N x 3N Hessian
    of the 11,164-atom cell would take 9 GB. ``fmax`` 0.01 eV/A is loose for phonons but
    ample for bands: the corrugation (AA 3.6 A, AB 3.4 A) and the in-plane twist of the
    domains are in place long before.
    """
    from ase.optimize import LBFGS

    from .calculator import MLEPICalculator

    relaxed = atoms.copy()
    relaxed.calc = MLEPICalculator(force_model)
    opt = LBFGS(relaxed, maxstep=maxstep, logfile=None)
    if progress is not None:
        def report():
            if opt.nsteps % every == 0:
                f = np.linalg.norm(relaxed.get_forces(), axis=1).max()
                progress(f"relax step {opt.nsteps}: max |F| {f:.4f} eV/A")
        opt.attach(report)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    f = float(np.linalg.norm(relaxed.get_forces(), axis=1).max())
    relaxed.calc = None
    layer = np.asarray(relaxed.arrays["layer"])
    z = relaxed.positions[:, 2]
    record = {"steps": int(opt.nsteps), "max_force_ev_a": f, "fmax_ev_a": fmax, "converged": converged,
              "optimizer": "L-BFGS (ASE)", "corrugation_a": [float(np.ptp(z[layer == k])) for k in (0, 1)],
              "mean_distance_a": float(z[layer == 1].mean() - z[layer == 0].mean())}
    return relaxed, record


def local_interlayer_distance(atoms: Atoms) -> tuple[float, float]:
    """(max, min) over bottom-layer atoms of the height of the nearest top-layer atom in
    the plane (A): the AA and AB interlayer distances of a relaxed cell."""
    from scipy.spatial import cKDTree

    layer = np.asarray(atoms.arrays["layer"])
    cell = np.asarray(atoms.cell)[:2, :2]
    def frac(p):  # in [0, 1): np.mod gives exactly 1.0 for a tiny negative coordinate
        f = np.mod(np.linalg.solve(cell.T, p[:, :2].T).T, 1.0)
        return np.where(f >= 1.0, 0.0, f)

    bottom, top = atoms.positions[layer == 0], atoms.positions[layer == 1]
    tree = cKDTree(frac(top), boxsize=1.0)
    _, idx = tree.query(frac(bottom))
    dz = top[idx, 2] - bottom[:, 2]
    return float(dz.max()), float(dz.min())
