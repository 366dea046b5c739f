"""The DFT electron reference: GPAW in LCAO mode (PBE, ``dzp`` basis) as real-space blocks.

GPAW converges the Kohn-Sham density in its atomic-orbital basis on a full
Gamma-centred k-mesh (1 x 1 for a supercell: the Gamma point only) and gives the
converged H(k), S(k) (``gpaw.lcao.tools.get_lcao_hamiltonian``, eV) with the Bloch
phase H(k) = sum_R H(R) exp(-2 pi i k.R). Their Fourier transform over the mesh,
H(R) = (1/N_k) sum_k H(k) exp(2 pi i k.R), holds for each atom pair (i, j) the sum
over all images of R modulo the mesh; each class is assigned to the one image of
atom j within r_c of atom i (minimal image in the mesh supercell), and a structure
in which two images of a pair fall within r_c of each other is refused rather than
split ambiguously. The basis functions' reach (``GPAWResult.reach_a``) bounds where blocks
are non-zero; ``benchmarks/gpaw_block_split.py`` measures what r_c reproduces GPAW's
own eigenvalues.

Orbitals: per atom the shells of the basis in GPAW's order (carbon dzp: s, p, s, p,
d = 13 orbitals), within a shell GPAW's real harmonics, which are mlepi's
m = -l..l order with the same signs (``mlepi_core.orbitals``); the shells' l go into
``Blocks.meta["orbital_types"]``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from ..orbitals import shell_names
from .block_split import OrbitalTable, pair_list
from ..seams import Blocks
from ..units import BOHR_A, KB_EV_PER_K

DEFAULT_RC = 7.0  # Angstrom, block cutoff for labels (benchmarks/results/gpaw_block_split.json)


def gpaw_data_path() -> Path:
    """Folder of the PAW setups and basis sets (the ``gpaw-data`` package)."""
    import gpaw_data

    return Path(gpaw_data.datapath())


def _import_gpaw():
    """Import GPAW with its data path set, so no environment variable is needed."""
    path = str(gpaw_data_path())
    os.environ.setdefault("GPAW_SETUP_PATH", path)
    import gpaw

    if path not in gpaw.setup_paths:
        gpaw.setup_paths.insert(0, path)
    from gpaw import FermiDirac
    from gpaw.lcao.tools import get_lcao_hamiltonian
    from gpaw.old.calculator import GPAW

    return GPAW, FermiDirac, get_lcao_hamiltonian


@dataclass(frozen=True)
class GPAWSettings:
    """One GPAW LCAO calculation's settings (lengths in Angstrom, temperature in K)."""

    basis: str = "dzp"
    xc: str = "PBE"
    h_a: float = 0.2  # real-space grid spacing
    cell_height_a: float = 18.0  # vacuum cell height the structure is placed in (centred)
    electronic_temperature_k: float = 300.0  # Fermi-Dirac smearing k_B T
    kpts: tuple[int, int] = (1, 1)  # Gamma-centred in-plane mesh
    density_convergence: float = 1e-4  # GPAW's "density" criterion (electrons per valence electron)
    r_c_a: float = DEFAULT_RC  # block cutoff


@dataclass
class GPAWResult:
    """One converged GPAW LCAO calculation, in eV."""

    energy: float  # eV
    mesh: tuple[int, int]  # the Gamma-centred in-plane k-mesh
    k_frac: np.ndarray  # (K, 3) fractional k-points of the full mesh
    h_k: np.ndarray  # (K, M, M) eV
    s_k: np.ndarray  # (K, M, M)
    eigenvalues: np.ndarray  # (K, M) eV, GPAW's own
    fermi_level: float  # eV
    norb: np.ndarray  # (N,) orbitals per atom
    orbital_types: list[list[int]]  # l of each shell, per atom
    iterations: int
    reach_a: float  # A, largest radius of any basis function
    calc: object = field(default=None, repr=False)  # the GPAW calculator (for non-SCF bands)


class GPAWReference:
    """GPAW LCAO (PBE, dzp by default) as a Hamiltonian model; deterministic, single-threaded."""

    def __init__(self, settings: GPAWSettings = GPAWSettings(), **overrides):
        self.settings = GPAWSettings(**{**asdict(settings), **overrides})
        self.elements = self._known_elements()

    def __repr__(self) -> str:
        return f"GPAWReference({self.settings})"

    def _basis_file(self) -> str:
        b = self.settings.basis
        return b[b.index("(") + 1:-1] if "(" in b else b  # "szp(dzp)" is cut from the dzp file

    def _known_elements(self) -> frozenset[str]:
        files = {p.name for p in gpaw_data_path().iterdir()}
        return frozenset(s for s in chemical_symbols[1:]
                         if f"{s}.{self._basis_file()}.basis.gz" in files
                         and f"{s}.{self.settings.xc}.gz" in files)

    def check(self, atoms: Atoms) -> None:
        """Raise ValueError for an element without setup and basis, or a cell that is not layered."""
        bad = sorted(set(atoms.get_chemical_symbols()) - self.elements)
        if bad:
            raise ValueError(f"GPAW reference: no {self.settings.xc} setup with a "
                             f"{self._basis_file()!r} basis for {', '.join(bad)} in gpaw-data")
        cell = np.asarray(atoms.cell)
        if abs(cell[:2, 2]).max() > 1e-9 or abs(cell[2, :2]).max() > 1e-9:
            raise ValueError("GPAW reference: needs a layered cell (a1, a2 in-plane, a3 along z)")
        span = np.ptp(atoms.positions[:, 2])
        if span + 8.0 > self.settings.cell_height_a:
            raise ValueError(f"GPAW reference: the structure spans {span:.1f} A in z; the cell "
                             f"height {self.settings.cell_height_a} A leaves under 4 A of vacuum")

    def _prepared(self, atoms: Atoms) -> Atoms:
        self.check(atoms)
        work = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
        cell = np.array(work.cell)
        cell[2] = [0.0, 0.0, self.settings.cell_height_a]
        work.set_cell(cell)
        work.center(axis=2)
        return work

    def _calculator(self, kpts):
        GPAW, FermiDirac, _ = _import_gpaw()
        st = self.settings
        return GPAW(mode="lcao", basis=st.basis, xc=st.xc, h=st.h_a, txt=None, nbands="nao",
                    kpts={"size": (*kpts, 1), "gamma": True},
                    occupations=FermiDirac(st.electronic_temperature_k * KB_EV_PER_K),
                    symmetry={"point_group": False, "time_reversal": False},
                    convergence={"density": st.density_convergence})

    def solve(self, atoms: Atoms, kpts: tuple[int, int] | None = None) -> GPAWResult:
        """One self-consistent GPAW LCAO calculation of ``atoms`` on the in-plane k-mesh."""
        _, _, get_lcao_hamiltonian = _import_gpaw()
        work = self._prepared(atoms)
        mesh = tuple(int(n) for n in (kpts or self.settings.kpts))
        work.calc = calc = self._calculator(mesh)
        energy = work.get_potential_energy()
        h_skmm, s_kmm = get_lcao_hamiltonian(calc)
        k_frac = np.array(calc.wfs.kd.ibzk_kc)
        types = [[int(bf.l) for bf in calc.wfs.setups[a].basis_functions_J] for a in range(len(work))]
        norb = np.array([calc.wfs.setups[a].nao for a in range(len(work))], dtype=np.int64)
        reach = max(bf.get_cutoff() for a in range(len(work))
                    for bf in calc.wfs.setups[a].basis_functions_J) * BOHR_A
        real = np.allclose(k_frac, 0.0)
        h_k = h_skmm[0].real.copy() if real else h_skmm[0]
        s_k = s_kmm.real.copy() if real else s_kmm
        eig = np.array([calc.get_eigenvalues(kpt=k) for k in range(len(k_frac))])
        return GPAWResult(energy=float(energy), mesh=mesh, k_frac=k_frac, h_k=0.5 * (h_k + np.conj(np.swapaxes(h_k, 1, 2))),
                          s_k=0.5 * (s_k + np.conj(np.swapaxes(s_k, 1, 2))), eigenvalues=eig,
                          fermi_level=float(calc.get_fermi_level()), norb=norb, orbital_types=types,
                          iterations=int(calc.scf.niter), reach_a=float(reach), calc=calc)

    def band_energies(self, result: GPAWResult, k_frac: np.ndarray) -> np.ndarray:
        """GPAW's own eigenvalues (K, M) in eV at fractional ``k_frac`` (non-self-consistent, fixed density)."""
        k = np.atleast_2d(np.asarray(k_frac, dtype=float))
        k = np.hstack([k[:, :2], np.zeros((len(k), 1))])
        bands = result.calc.fixed_density(kpts=k, symmetry="off", txt=None, nbands="nao")
        return np.array([bands.get_eigenvalues(kpt=n) for n in range(len(k))])

    def split_blocks(self, atoms: Atoms, result: GPAWResult, r_c: float | None = None) -> Blocks:
        """Blocks H_ij(R) (eV), S_ij(R) of all pairs within ``r_c`` (A) by minimal image in the mesh supercell."""
        r_c = self.settings.r_c_a if r_c is None else r_c
        i, j, shift = pair_list(atoms, r_c)
        mesh = np.asarray(result.mesh, dtype=np.int64)
        klass = np.mod(shift[:, :2], mesh)
        _, count = np.unique(np.column_stack([i, j, klass]), axis=0, return_counts=True)
        if count.max() > 1:
            raise ValueError(f"GPAW reference: two images of an atom pair lie within r_c = {r_c} A in "
                             f"this cell with a {mesh[0]}x{mesh[1]} k-mesh; use a larger cell or k-mesh")
        norb = result.norb
        table = OrbitalTable(norb)
        h = np.zeros((len(i), table.nmax, table.nmax))
        s = np.zeros((len(i), table.nmax, table.nmax))
        uniq, inverse = np.unique(shift, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        for u, R in enumerate(uniq):
            phase = np.exp(2j * np.pi * result.k_frac @ R) / len(result.k_frac)
            h_r = np.einsum("k,kab->ab", phase, result.h_k)
            s_r = np.einsum("k,kab->ab", phase, result.s_k)
            if np.iscomplexobj(h_r):
                if max(abs(h_r.imag).max(), abs(s_r.imag).max()) > 1e-6:
                    raise RuntimeError("GPAW reference: H(R) is not real; is the k-mesh complete?")
                h_r, s_r = h_r.real, s_r.real
            p = np.flatnonzero(inverse == u)
            h[p], s[p] = table.gather(h_r, i[p], j[p]), table.gather(s_r, i[p], j[p])
        types = result.orbital_types
        order_name = shell_names(types[0]) if all(t == types[0] for t in types) else "wiki"
        st = self.settings
        return Blocks(i=i, j=j, R=shift, h=h, s=s, norb=norb.copy(), orbital_order=order_name,
                      meta={"source": f"GPAW LCAO {st.xc} {st.basis}", "r_c_A": r_c, "units": "H: eV",
                            "orbital_types": types, "fermi_level": result.fermi_level,
                            "electronic_temperature_K": st.electronic_temperature_k,
                            "grid_spacing_A": st.h_a, "kpts": list(st.kpts),
                            "scf_iterations": result.iterations, "energy_eV": result.energy})

    def blocks(self, structures: Sequence[Atoms]) -> list[Blocks]:
        """Hamiltonian-model seam: real-space blocks of every structure."""
        return [self.split_blocks(a, self.solve(a)) for a in structures]

