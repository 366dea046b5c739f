"""Layered structures: builders, loading, layer detection and input validation.

Every structure is an `ase.Atoms` in Angstrom with in-plane lattice vectors in the
xy plane, the stacking direction along z, vacuum along z, and an integer array
``atoms.arrays["layer"]`` (0 = lowest layer) that the heterogeneous graph reads.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
from ase import Atoms

from .neighbours import periodic_pairs
from .units import (BILAYER_D, GRAPHENE_A, GRAPHENE_HBN_A, GRAPHENE_HBN_D, HBN_A, HBN_D, MOS2_A, MOS2_D,
                    MOS2_THICKNESS)

VACUUM_A = 20.0  # Angstrom of vacuum the builders put along z (>= 15 by design)
BOND_SCALE = 1.2  # two atoms are bonded when closer than this times the sum of their covalent radii
MIN_VACUUM_A = 8.0  # Angstrom: a loaded cell needs at least this much empty z
MIN_DISTANCE_A = 0.5  # Angstrom: closer atoms count as overlapping

# Shifts of layer 2 in units of the primitive vectors (a1, a2) for named stackings.
# With A at 0 and B at (a1 + a2)/3, AB puts layer 2's A over layer 1's B.
STACKING_SHIFTS = {
    "AA": (0.0, 0.0),
    "AB": (1 / 3, 1 / 3),
    "BA": (2 / 3, 2 / 3),
    "SP": (1 / 2, 1 / 2),
}


class StructureError(ValueError):
    """A structure mlepi cannot use, with a message that names the problem."""


def _primitive_vectors(a: float) -> np.ndarray:
    """Graphene's in-plane primitive vectors a1, a2 (rows, Angstrom), 60 degrees apart."""
    return a * np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2]])


def _layer_basis(a: float) -> np.ndarray:
    """Cartesian in-plane positions of the A and B sites of a graphene layer."""
    a12 = _primitive_vectors(a)
    return np.array([[0.0, 0.0], (a12[0] + a12[1]) / 3])


def _stack(layers_xy: list[np.ndarray], cell_xy: np.ndarray, d: float, vacuum: float) -> Atoms:
    """Stack 2D layers (lists of xy positions) along z, centred in a cell with vacuum."""
    n_layers = len(layers_xy)
    height = d * (n_layers - 1) + vacuum
    z0 = vacuum / 2
    pos, tags = [], []
    for ell, xy in enumerate(layers_xy):
        pos.append(np.column_stack([xy, np.full(len(xy), z0 + ell * d)]))
        tags.append(np.full(len(xy), ell))
    cell = np.zeros((3, 3))
    cell[:2, :2] = cell_xy
    cell[2, 2] = height
    atoms = Atoms("C" * sum(len(x) for x in layers_xy), positions=np.concatenate(pos),
                  cell=cell, pbc=[True, True, True])
    atoms.arrays["layer"] = np.concatenate(tags).astype(int)
    atoms.wrap()
    return atoms


def monolayer(a: float = GRAPHENE_A, vacuum: float = VACUUM_A) -> Atoms:
    """Primitive cell of monolayer graphene (2 atoms)."""
    return _stack([_layer_basis(a)], _primitive_vectors(a), 0.0, vacuum)


def bilayer(stacking: str | tuple[float, float] = "AB", d: float = BILAYER_D,
            a: float = GRAPHENE_A, vacuum: float = VACUUM_A) -> Atoms:
    """Primitive cell of bilayer graphene (4 atoms).

    ``stacking`` is "AA", "AB", "BA", "SP" or a general in-plane shift of layer 2
    given as fractional coordinates (s1, s2) of the primitive vectors; ``d`` is the
    interlayer distance in Angstrom.
    """
    if isinstance(stacking, str):
        key = stacking.upper()
        if key not in STACKING_SHIFTS:
            raise StructureError(f"unknown stacking {stacking!r}; use one of "
                                 f"{sorted(STACKING_SHIFTS)} or a shift (s1, s2)")
        shift = STACKING_SHIFTS[key]
    else:
        shift = tuple(float(s) for s in stacking)
        if len(shift) != 2:
            raise StructureError("a stacking shift is two fractional coordinates (s1, s2)")
    if d <= 0:
        raise StructureError(f"interlayer distance must be positive, got {d} A")
    a12 = _primitive_vectors(a)
    basis = _layer_basis(a)
    top = basis + shift[0] * a12[0] + shift[1] * a12[1]
    return _stack([basis, top], a12, d, vacuum)


def hbn_bilayer(d: float = HBN_D, a: float = HBN_A, vacuum: float = VACUUM_A) -> Atoms:
    """Primitive cell of the AA' hBN bilayer (4 atoms; bulk h-BN's stacking): each B above an
    N and each N above a B, ``d`` Angstrom apart."""
    if d <= 0:
        raise StructureError(f"interlayer distance must be positive, got {d} A")
    a12 = _primitive_vectors(a)
    basis = _layer_basis(a)
    atoms = _stack([basis, basis], a12, d, vacuum)
    atoms.set_chemical_symbols(["B", "N", "N", "B"])
    return atoms


def graphene_on_hbn(d: float = GRAPHENE_HBN_D, a: float = GRAPHENE_HBN_A, vacuum: float = VACUUM_A) -> Atoms:
    """Primitive cell of graphene on an hBN sheet (4 atoms), both at the lattice constant ``a``
    (default the mean of the two: each sheet strained 0.9 %): hBN below (layer 0), graphene
    ``d`` Angstrom above with one carbon above B and the other above a BN hexagon's centre,
    the lowest of the commensurate stackings."""
    if d <= 0:
        raise StructureError(f"interlayer distance must be positive, got {d} A")
    a12 = _primitive_vectors(a)
    hbn = _layer_basis(a)  # B at 0, N at (a1 + a2) / 3; hexagon centres at 2 (a1 + a2) / 3
    graphene = np.array([[0.0, 0.0], 2 * (a12[0] + a12[1]) / 3])
    atoms = _stack([hbn, graphene], a12, d, vacuum)
    atoms.set_chemical_symbols(["B", "N", "C", "C"])
    return atoms


def tmd_bilayer(formula: str = "MoS2", a: float = MOS2_A, thickness: float = MOS2_THICKNESS,
                d: float = MOS2_D, vacuum: float = VACUUM_A) -> Atoms:
    """Primitive cell of a 2H transition-metal-dichalcogenide bilayer (6 atoms).

    Each sheet is metal between two chalcogen planes ``thickness`` Angstrom apart; the top
    sheet is the bottom one turned by 180 degrees (2H: metal above chalcogen), its metal
    plane ``d`` Angstrom above the bottom one's (half of bulk c).
    """
    metal, chalcogen = _tmd_elements(formula)
    if d <= thickness:
        raise StructureError(f"the metal planes ({d} A apart) must be further apart than a sheet is "
                             f"thick ({thickness} A)")
    a12 = _primitive_vectors(a)
    m_site, x_site = (a12[0] + a12[1]) / 3, 2 * (a12[0] + a12[1]) / 3
    z0 = vacuum / 2 + thickness / 2
    pos, tags = [], []
    for layer, (m, x) in enumerate(((m_site, x_site), (x_site, m_site))):
        z = z0 + layer * d
        pos += [[*m, z], [*x, z - thickness / 2], [*x, z + thickness / 2]]
        tags += [layer] * 3
    cell = np.array([[*a12[0], 0.0], [*a12[1], 0.0], [0.0, 0.0, d + thickness + vacuum]])
    atoms = Atoms([metal, chalcogen, chalcogen] * 2, positions=pos, cell=cell, pbc=True)
    atoms.arrays["layer"] = np.array(tags)
    atoms.wrap()
    return atoms


def _tmd_elements(formula: str) -> tuple[str, str]:
    from ase.formula import Formula

    counts = Formula(formula).count()
    metals = [e for e in counts if e in ("Mo", "W")]
    if len(counts) != 2 or len(metals) != 1 or counts[metals[0]] != 1 or \
            [n for e, n in counts.items() if e != metals[0]] != [2]:
        raise StructureError(f"{formula!r} is not a dichalcogenide MX2 with M = Mo or W")
    return metals[0], next(e for e in counts if e != metals[0])


def twist_angle(m: int, n: int) -> float:
    """Twist angle in degrees of the commensurate bilayer (m, n).

    cos(theta) = (m^2 + 4mn + n^2) / (2 (m^2 + mn + n^2)); (m, m+1) gives the
    familiar series 21.79, 13.17, 9.43, ..., (30, 31) = 1.08 degrees.
    """
    c = (m * m + 4 * m * n + n * n) / (2.0 * (m * m + m * n + n * n))
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def _lattice_sites(a12: np.ndarray, basis: np.ndarray, cell_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All sites of the lattice (a12, basis) inside the supercell cell_xy (rows): their xy
    positions and the index of the basis site (sublattice) each one is a copy of."""
    inv = np.linalg.inv(cell_xy)
    # Corners of the supercell in lattice coordinates bound the integer range needed.
    corners = np.array([[0, 0], cell_xy[0], cell_xy[1], cell_xy[0] + cell_xy[1]]) @ np.linalg.inv(a12)
    lo = np.floor(corners.min(axis=0)).astype(int) - 1
    hi = np.ceil(corners.max(axis=0)).astype(int) + 1
    i, j = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    points = np.stack([i.ravel(), j.ravel()], axis=1) @ a12
    sites = (points[:, None, :] + basis[None, :, :]).reshape(-1, 2)
    sublattice = np.tile(np.arange(len(basis)), len(points))
    frac = sites @ inv
    eps = 1e-8
    inside = np.all((frac >= -eps) & (frac < 1 - eps), axis=1)
    frac = np.mod(frac[inside] + eps, 1.0) - eps
    return np.clip(frac, 0.0, None) @ cell_xy, sublattice[inside]


# Species of the two sublattices of each layer of a twisted bilayer, bottom then top: at zero
# twist graphene is AA and hBN AA' (each B over an N), the stackings the rotation starts from.
TWISTED_SPECIES = {"graphene": (("C", "C"), ("C", "C")), "hBN": (("B", "N"), ("N", "B"))}


def twisted_bilayer(m: int, n: int, d: float | None = None, a: float | None = None,
                    vacuum: float = VACUUM_A, material: str = "graphene") -> Atoms:
    """Commensurate twisted bilayer (m, n) of graphene or hBN (``material``), AA-aligned at the
    origin (AA' for hBN: B over N); ``d`` and ``a`` default to the material's own.

    Layer 1 is unrotated with superlattice vectors T1 = m a1 + n a2,
    T2 = -n a1 + (m + n) a2; layer 2 is layer 1 rotated by ``twist_angle(m, n)``,
    which maps its lattice vector n a1 + m a2 onto T1. The cell holds
    4 (m^2 + mn + n^2) atoms when gcd(m, n) = 1 and m - n is not a multiple of 3
    (11,164 for (30, 31), 1.08 degrees). When m - n = 3k, (T1 + T2)/3 = k a1 + (k + n) a2
    is already a coincidence vector, and the primitive cell it spans with its
    60-degree rotation holds a third of that.
    """
    if material not in TWISTED_SPECIES:
        raise StructureError(f"twisted bilayers are built of {sorted(TWISTED_SPECIES)}, got {material!r}")
    d = (BILAYER_D if material == "graphene" else HBN_D) if d is None else d
    a = (GRAPHENE_A if material == "graphene" else HBN_A) if a is None else a
    if m < 1 or n < 1 or m == n:
        raise StructureError(f"twisted bilayer needs positive m != n, got ({m}, {n})")
    if gcd(m, n) != 1:
        raise StructureError(f"(m, n) = ({m}, {n}) share a factor; use the coprime pair")
    a12 = _primitive_vectors(a)
    basis = _layer_basis(a)
    cell_xy = np.array([m * a12[0] + n * a12[1], -n * a12[0] + (m + n) * a12[1]])
    if (m - n) % 3 == 0:
        # T1, T2 span three primitive moire cells here; (T1 + T2)/3 is a lattice vector
        # of both layers, and T2' is T1' turned by 60 degrees (a1 -> a2, a2 -> a2 - a1).
        k = (m - n) // 3
        cell_xy = np.array([k * a12[0] + (k + n) * a12[1],
                            -(k + n) * a12[0] + (2 * k + n) * a12[1]])
    theta = np.radians(twist_angle(m, n))
    # Rotate so that layer 2's vector n a1 + m a2 lands on T1 (sign fixed by construction).
    v = n * a12[0] + m * a12[1]
    t1 = cell_xy[0]
    sign = np.sign(v[0] * t1[1] - v[1] * t1[0]) or 1.0
    c, s = np.cos(sign * theta), np.sin(sign * theta)
    rot = np.array([[c, -s], [s, c]])
    bottom, bottom_sub = _lattice_sites(a12, basis, cell_xy)
    top, top_sub = _lattice_sites(a12 @ rot.T, basis @ rot.T, cell_xy)
    n_expected = 2 * (m * m + m * n + n * n)
    if (m - n) % 3 == 0:
        n_expected //= 3
    if len(bottom) != n_expected or len(top) != n_expected:
        raise StructureError(f"twisted ({m}, {n}): found {len(bottom)}/{len(top)} sites per "
                             f"layer, expected {n_expected}")
    atoms = _stack([bottom, top], cell_xy, d, vacuum)
    species = TWISTED_SPECIES[material]
    atoms.set_chemical_symbols([species[0][k] for k in bottom_sub] + [species[1][k] for k in top_sub])
    atoms.info["twist_mn"] = (m, n)
    atoms.info["twist_deg"] = twist_angle(m, n)
    return atoms


def supercell(atoms: Atoms, n1: int, n2: int | None = None) -> Atoms:
    """In-plane n1 x n2 x 1 supercell, keeping layer labels (ordered as ASE repeats)."""
    n2 = n1 if n2 is None else n2
    if n1 < 1 or n2 < 1:
        raise StructureError(f"supercell sizes must be >= 1, got {n1} x {n2}")
    return atoms.repeat((n1, n2, 1))


def build(name: str, size: int = 1, **kwargs) -> Atoms:
    """Build a named structure: graphene's 'monolayer', 'AA', 'AB', 'BA', 'SP' or 'tbg:m,n',
    the AA' hBN bilayer 'hBN', twisted hBN 'thbn:m,n', graphene on hBN 'GhBN', or a 2H TMD
    bilayer 'MoS2' (also 'WSe2', ...).

    ``size`` gives an n x n x 1 supercell.
    """
    key = name.strip()
    if key.lower() == "monolayer":
        atoms = monolayer(**kwargs)
    elif key.lower() == "hbn":
        atoms = hbn_bilayer(**kwargs)
    elif key.lower() in ("ghbn", "graphene/hbn"):
        atoms = graphene_on_hbn(**kwargs)
    elif key[:2] == "Mo" or key[:1] == "W":
        atoms = tmd_bilayer(key, **kwargs)
    elif key.lower().startswith(("tbg:", "thbn:")):
        prefix, _, mn = key.partition(":")
        try:
            m, n = (int(x) for x in mn.split(","))
        except ValueError:
            raise StructureError(f"twisted bilayer is written '{prefix}:m,n', got {name!r}") from None
        atoms = twisted_bilayer(m, n, material="hBN" if prefix.lower() == "thbn" else "graphene", **kwargs)
    else:
        atoms = bilayer(key, **kwargs)
    return supercell(atoms, size) if size > 1 else atoms


# --- layers -----------------------------------------------------------------------

def _unwrapped_z(atoms: Atoms) -> np.ndarray:
    """z of every atom (Angstrom) unwrapped across the periodic z boundary.

    The widest empty z-gap is taken as the vacuum; heights are measured upwards from
    its middle, so a layer that straddles the cell's z boundary stays contiguous and
    the lowest layer is the one just above the vacuum.
    """
    height = atoms.cell[2, 2]
    z = np.mod(atoms.positions[:, 2], height)
    zs = np.sort(z)
    gaps = np.diff(np.append(zs, zs[0] + height))  # last one wraps around the cell
    k = int(np.argmax(gaps))
    middle = zs[k] + gaps[k] / 2
    return np.mod(z - middle, height)


def dirac_bands(atoms: Atoms) -> int:
    """Bands that cross E_F at K per valley, for the v_F probe: two per graphene sheet (a sheet
    of carbon alone), at least two (a structure without graphene observes its gap instead)."""
    layer = atoms.arrays["layer"]
    symbols = np.asarray(atoms.get_chemical_symbols())
    sheets = sum(1 for k in np.unique(layer) if set(symbols[layer == k]) == {"C"})
    return 2 * max(1, sheets)


def detect_layers(atoms: Atoms, bond_scale: float = BOND_SCALE) -> np.ndarray:
    """Layer index of every atom (0 = lowest layer): the covalently bonded sheets.

    Two atoms are bonded when closer than ``bond_scale`` times the sum of their covalent
    radii (``ase.data.covalent_radii``; periodic images included), so a graphene sheet, an
    S-Mo-S sheet or an hBN sheet is one connected piece of the bond graph while the van
    der Waals gap between sheets (3-3.5 A) bonds nothing. Pieces whose height ranges
    overlap (a sheet cut into ribbons by the cell, a pore) count as one layer; layers are
    numbered by height above the vacuum.
    """
    if len(atoms) == 0:
        return np.zeros(0, dtype=int)
    from ase.data import covalent_radii
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    radii = covalent_radii[atoms.numbers] * bond_scale
    i, j, _, d = periodic_pairs(atoms.positions, np.asarray(atoms.cell), atoms.pbc, 2.0 * radii.max())
    bonded = d < radii[i] + radii[j]
    n = len(atoms)
    graph = coo_matrix((np.ones(int(bonded.sum())), (i[bonded], j[bonded])), shape=(n, n))
    _, piece = connected_components(graph, directed=False)
    z = _unwrapped_z(atoms)
    low = np.full(piece.max() + 1, np.inf)
    high = np.full(piece.max() + 1, -np.inf)
    np.minimum.at(low, piece, z)
    np.maximum.at(high, piece, z)
    order = np.argsort(low, kind="stable")
    # sweep the pieces upwards: one that starts below the running top of a layer joins it
    layer_of_piece = np.empty(len(low), dtype=int)
    layer, top = -1, -np.inf
    for k in order:
        if low[k] > top:
            layer += 1
            top = high[k]
        else:
            top = max(top, high[k])
        layer_of_piece[k] = layer
    return layer_of_piece[piece]


def assign_layers(atoms: Atoms) -> Atoms:
    """Give ``atoms`` a "layer" array: explicit tags if present, else the bonded sheets
    (``detect_layers``).

    Explicit tags are an existing "layer" array or, in files that carry them,
    non-trivial ASE tags; they are renumbered 0, 1, ... in order of height.
    """
    if "layer" in atoms.arrays:
        raw = np.asarray(atoms.arrays["layer"]).astype(int)
    elif len(np.unique(atoms.get_tags())) > 1:
        raw = atoms.get_tags().astype(int)
    else:
        atoms.arrays["layer"] = detect_layers(atoms)
        return atoms
    labels, which = np.unique(raw, return_inverse=True)
    z = _unwrapped_z(atoms)  # so that a layer across the z boundary ranks by its true height
    heights = np.bincount(which, weights=z) / np.bincount(which)
    rank = np.empty(len(labels), dtype=int)
    rank[np.argsort(heights, kind="stable")] = np.arange(len(labels))
    atoms.arrays["layer"] = rank[which.ravel()]
    return atoms


# --- validation and loading ---------------------------------------------------------

def validate(atoms: Atoms, elements: set[str] | None = None,
             min_vacuum: float = MIN_VACUUM_A, min_distance: float = MIN_DISTANCE_A) -> Atoms:
    """Check that ``atoms`` is a layered slab mlepi can use; raise StructureError if not.

    Checks: periodic in-plane with the in-plane vectors in the xy plane and the third
    along z, at least ``min_vacuum`` Angstrom of empty space along z, no two atoms (or
    periodic images, along z too) closer than ``min_distance``, and (if given) only the
    elements a model knows. The overlap search is a k-d tree (``neighbours.periodic_pairs``):
    it works at any cell size.
    """
    if len(atoms) == 0:
        raise StructureError("the structure has no atoms")
    cell = np.asarray(atoms.cell)
    if not (np.all(np.isfinite(cell)) and np.all(np.isfinite(atoms.positions))):
        raise StructureError("the cell or the positions hold non-finite numbers (nan or inf)")
    if not (atoms.pbc[0] and atoms.pbc[1]) or np.linalg.norm(cell[0]) < 1e-6 \
            or np.linalg.norm(cell[1]) < 1e-6:
        raise StructureError("no in-plane periodicity: the cell needs two periodic in-plane "
                             "lattice vectors (a1, a2)")
    if abs(cell[0, 2]) > 1e-6 or abs(cell[1, 2]) > 1e-6 or np.linalg.norm(cell[2, :2]) > 1e-6 \
            or cell[2, 2] <= 0:
        raise StructureError("the in-plane lattice vectors must lie in the xy plane and the "
                             "third along +z (the stacking direction)")
    if abs(cell[0, 0] * cell[1, 1] - cell[0, 1] * cell[1, 0]) < 1e-6:
        raise StructureError("the in-plane lattice vectors a1, a2 are parallel: the cell has no area")
    if elements is not None:
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(elements))
        if unknown:
            raise StructureError(f"element(s) {', '.join(unknown)} not known to this model "
                                 f"(it knows {', '.join(sorted(elements))})")
    height = cell[2, 2]
    zs = np.sort(np.mod(atoms.positions[:, 2], height))
    vacuum = np.max(np.diff(np.append(zs, zs[0] + height)))
    if vacuum < min_vacuum:
        raise StructureError(f"no vacuum: the widest empty z-gap is {vacuum:.2f} A, need at "
                             f"least {min_vacuum} A along z (is this a bulk crystal?)")
    i, j, _, d = periodic_pairs(atoms.positions, cell, (True, True, True), min_distance)
    if len(i):
        k = int(np.argmin(d))
        first, second = sorted((int(i[k]), int(j[k])))
        raise StructureError(f"overlapping atoms: {first} and {second} are "
                             f"{d[k]:.3f} A apart (minimum {min_distance} A)")
    return atoms


def load(path: str | Path, index: int | str = 0, elements: set[str] | None = None,
         limits=None) -> Atoms:
    """Read a structure from any file ASE reads, validate it and assign layers.

    The file size is checked before parsing and the atom count right after it, against
    ``limits`` (``mlepi_core.limits.LIMITS`` by default). ``load_isolated`` does the
    same in a child process with a time and memory bound.
    """
    from .limits import LIMITS, check_atoms, check_structure_file

    from ase.io import read  # ~1 s of imports: only loading needs it

    limits = limits or LIMITS
    path = check_structure_file(path, limits)
    try:
        atoms = read(path, index=index)
    except Exception as err:  # ASE raises many types; the user needs the file named
        reason = _cif_reason(path) if path.suffix.lower() == ".cif" else None
        if reason is None:
            reason = ("it holds no structure (the reader found nothing)" if isinstance(err, StopIteration)
                      else _reason(err))
        raise StructureError(f"cannot read {path} as a structure: {reason}") from None
    if isinstance(atoms, list):
        raise StructureError(f"{path} holds several structures; pick one with an index")
    check_atoms(len(atoms), "load", limits, what=str(path))
    validate(atoms, elements=elements)
    return assign_layers(atoms)


def _cif_reason(path: Path) -> str | None:
    """What a CIF lacks for a structure (a data block, a cell, atom sites), or None."""
    from ase.io.cif import parse_cif

    try:
        blocks = list(parse_cif(str(path)))
    except Exception:
        return "not a CIF file (no data_ block could be parsed)"
    if not blocks:
        return "not a CIF file (no data_ block)"
    for block in blocks:
        tags = {tag.lower() for tag in block._tags}  # noqa: SLF001 (ASE's CIFBlock keeps them here)
        missing_cell = [t for t in ("_cell_length_a", "_cell_length_b", "_cell_length_c") if t not in tags]
        sites = any({f"_atom_site_{kind}_{x}" for x in "xyz"} <= tags for kind in ("fract", "cartn"))
        if sites and not missing_cell:
            return None
        lacks = (["atom positions (_atom_site_fract_x/y/z or _atom_site_Cartn_x/y/z)"] if not sites else []) \
            + ([f"cell ({', '.join(missing_cell)})"] if missing_cell else [])
        return f"its data block data_{block.name} has no {' and no '.join(lacks)}"
    return None


def _reason(err: BaseException) -> str:
    """One line on why a reader failed: the error's first line, else its cause's, else its type."""
    for e in (err, err.__cause__, err.__context__):
        if e is not None and str(e).strip():
            return f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
    return f"{type(err).__name__}, no message from the reader"


def stacking_name(atoms: Atoms, tol: float = 0.1) -> str:
    """A readable stacking of a (layer-labelled) structure: "single layer", "AA", "AA'",
    "AB (Bernal)", "twisted m,n (theta)", or "other" from the fraction of top-layer atoms
    sitting over bottom-layer atoms (1: AA, 1/2: Bernal), in-plane, periodic."""
    if "twist_deg" in atoms.info:
        m, n = atoms.info.get("twist_mn", ("?", "?"))
        return f"twisted {m},{n} ({float(atoms.info['twist_deg']):.2f}°)"
    layers = np.asarray(atoms.arrays["layer"])
    if layers.max() == 0:
        return "single layer"
    if layers.max() > 1:
        return f"{layers.max() + 1} layers"
    cell = np.asarray(atoms.cell)[:2, :2]
    frac = lambda p: np.mod(np.linalg.solve(cell.T, p[:, :2].T).T, 1.0)
    bottom, top = frac(atoms.positions[layers == 0]), frac(atoms.positions[layers == 1])
    d = top[:, None, :] - bottom[None, :, :]
    d = np.linalg.norm((d - np.round(d)) @ cell, axis=-1)
    over = d.min(axis=1) < tol
    share = over.mean()
    if share > 0.99:  # AA': each atom over one of another element (hBN's natural stacking)
        symbols = np.asarray(atoms.get_chemical_symbols())
        below = symbols[layers == 0][d.argmin(axis=1)]
        return "AA" if np.all(below == symbols[layers == 1]) else "AA'"
    if abs(share - 0.5) < 0.01:
        return "AB (Bernal)"
    return "other (shifted)"
