"""Single phonon modes: character, names and animation frames for the dashboard.

Frequencies are in THz inside (phonopy's convention: negative = imaginary),
lengths in Angstrom, masses in amu. Eigenvectors are phonopy's: unit norm, in the
convention whose phase uses the atom positions, so that the displacement of any
atom of sublattice k at position x is

    u(x, t) = A Re[e_k / sqrt(M_k) exp(i (q . x - omega t))]

(phonopy's DynamicalMatrix and Modulation; q . x = 2 pi q_frac . x_frac).
The stacking axis is z, as everywhere in mlepi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from phonopy import Phonopy

from .units import THZ_TO_CM1

DEGENERACY_TOL_THZ = 1e-3  # bands closer than this form one degenerate set (0.03 cm^-1)
NEAR_GAMMA_FRAC = 0.02  # |q_i| (fractional, in-plane) up to which Gamma names are used
PURE = 0.9  # in-plane (out-of-plane) fraction above which a mode counts as purely so
SYMMETRY_COS = 0.9  # |cos| of the two layers' patterns above which a mode is (anti)symmetric
RIGID_LAYER_MAX_CM1 = 300.0  # rigid-layer optical modes below this are shear / breathing
ZO_RANGE_CM1 = (300.0, 1200.0)  # graphene's out-of-plane optical mode at Gamma
G_MIN_CM1 = 1200.0  # graphene's in-plane optical (G) mode at Gamma lies above this
MATCH_TOL_A = 0.05  # in-plane distance under which a translated atom sits on another
MAX_MATCH_ATOMS = 256  # larger layers are not searched for a layer-to-layer translation
GAMMA_NAMES = ("ZA", "TA", "LA", "shear", "breathing", "ZO", "G")


@dataclass(frozen=True, eq=False)
class ModeCharacter:
    """What a mode does: fractions of its eigenvector's norm, and a name.

    ``in_plane`` + ``out_of_plane`` = 1 and ``layer_weights`` (one per layer) sum
    to 1. ``translation`` is the weight on a uniform translation of the cell
    (the Bloch-wave sense away from Gamma), ``rigid_layer`` the weight on rigid
    translations of whole layers. ``layer_symmetry`` is "symmetric",
    "antisymmetric" or "mixed" (also for a mode living on one layer) for
    bilayers, None otherwise.
    """

    in_plane: float
    out_of_plane: float
    layer_weights: tuple[float, ...]
    layer_symmetry: str | None
    acoustic: bool
    translation: float
    rigid_layer: float
    name: str


@dataclass(frozen=True, eq=False)
class Mode:
    """One phonon mode: q (fractional, primitive cell), band index (0 = lowest),
    frequency (THz, negative = imaginary), eigenvector (n_atoms, 3) and character."""

    q_frac: np.ndarray
    band: int
    frequency_thz: float
    eigenvector: np.ndarray
    character: ModeCharacter

    @property
    def frequency_cm1(self) -> float:
        return self.frequency_thz * THZ_TO_CM1

    def describe(self) -> str:
        """One line for a person, e.g. "G mode: 1582 cm^-1, in-plane, layer-symmetric"."""
        c = self.character
        f = self.frequency_cm1
        parts = [f"{-f:.0f}i cm^-1 (imaginary)" if f < -0.5 else f"{abs(f):.0f} cm^-1"]
        if c.in_plane > PURE:
            parts.append("in-plane")
        elif c.out_of_plane > PURE:
            parts.append("out-of-plane")
        else:
            parts.append(f"{c.in_plane:.0%} in-plane")
        shares = " / ".join(f"{w:.0%}" for w in c.layer_weights)
        if len(c.layer_weights) > 1 and max(c.layer_weights) > PURE:
            top = int(np.argmax(c.layer_weights))
            parts.append(f"on layer {top} ({c.layer_weights[top]:.0%})")
        elif c.layer_symmetry in ("symmetric", "antisymmetric"):
            parts.append(f"layer-{c.layer_symmetry}")
        elif c.layer_symmetry == "mixed":
            parts.append(f"layers mixed ({shares})")
        elif len(c.layer_weights) > 2:
            parts.append(f"layers {shares}")
        if c.name in GAMMA_NAMES:
            head = f"{c.name} mode"
        else:
            q = ", ".join(f"{x:.3f}" for x in self.q_frac[:2])
            head = f"Band {self.band} at q = ({q})" + (f", {c.name}" if c.name else "")
        return f"{head}: {', '.join(parts)}"


# --- checks and helpers ---------------------------------------------------------------

def _check_primitive(phonon: Phonopy, primitive: Atoms) -> np.ndarray:
    """Layer index of each primitive atom, after checking that ``primitive`` is
    phonopy's primitive cell (same cell, same atoms in the same order, up to
    lattice vectors)."""
    if phonon.force_constants is None:
        raise ValueError("phonopy object has no force constants; produce them first")
    if "layer" not in primitive.arrays:
        raise ValueError("primitive has no 'layer' array (structures.assign_layers gives one)")
    cell = np.asarray(primitive.cell)
    pcell = phonon.primitive
    same = (len(primitive) == len(pcell) and np.allclose(cell, pcell.cell, atol=1e-6)
            and list(primitive.get_chemical_symbols()) == list(pcell.symbols))
    if same:
        d = (primitive.positions - pcell.positions) @ np.linalg.inv(cell)
        same = np.allclose(d, np.round(d), atol=1e-6)
    if not same:
        raise ValueError("primitive is not the phonopy object's primitive cell (cell, "
                         "species, atom order and positions must agree)")
    return np.unique(np.asarray(primitive.arrays["layer"]), return_inverse=True)[1].ravel()


def _degenerate_groups(freq_thz: np.ndarray) -> np.ndarray:
    """Label of the degenerate set of each band along the last axis (bands sorted)."""
    step = np.diff(freq_thz, axis=-1) > DEGENERACY_TOL_THZ
    zero = np.zeros(freq_thz.shape[:-1] + (1,), dtype=int)
    return np.concatenate([zero, np.cumsum(step, axis=-1)], axis=-1)


def _modes(phonon: Phonopy, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (n_bands,) THz and eigenvectors (n_bands, n_atoms, 3) at q.

    Within a degenerate set the basis is rotated to diagonalise the out-of-plane
    projector (plus 1e-3 of the x projector to fix in-plane pairs), vectors sorted
    from most out-of-plane down: at Gamma the three acoustic modes become the z, x
    and y translations instead of the solver's arbitrary mixture. Each vector's
    largest component is made real and positive (a global phase).
    """
    result = phonon.run_qpoints([q], with_eigenvectors=True)
    freq = np.asarray(result.frequencies[0], dtype=float)
    vecs = np.array(result.eigenvectors[0]).T.copy()  # (band, 3n), columns were bands
    n_bands = len(freq)
    weights = np.zeros(n_bands)  # diagonal of the projector, components atom-major x, y, z
    weights[2::3], weights[0::3] = 1.0, 1e-3
    groups = _degenerate_groups(freq)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) < 2:
            continue
        v = vecs[idx]  # (g, 3n)
        _, rot = np.linalg.eigh((v.conj() * weights) @ v.T)
        vecs[idx] = (rot[:, ::-1].T @ v)
    big = vecs[np.arange(n_bands), np.argmax(np.abs(vecs), axis=1)]
    vecs *= (np.abs(big) / big)[:, None]
    return freq, vecs.reshape(n_bands, -1, 3)


def _layer_translation(primitive: Atoms, layers: np.ndarray):
    """For a bilayer whose top layer is the bottom one translated in-plane (AA, AB, SP,
    any shift): (bottom indices, matching top indices, Cartesian offsets top - bottom),
    for the shortest such translation; None otherwise (twisted, different layers)."""
    bottom, top = np.flatnonzero(layers == 0), np.flatnonzero(layers == 1)
    if len(bottom) != len(top) or len(bottom) > MAX_MATCH_ATOMS:
        return None
    cell = np.asarray(primitive.cell)
    inv = np.linalg.inv(cell[:2, :2])
    pos, sym = primitive.positions, np.asarray(primitive.get_chemical_symbols())
    best = None
    for t in pos[top[0], :2] - pos[bottom, :2]:  # one candidate per bottom atom
        d = (pos[bottom, None, :2] + t - pos[None, top, :2]) @ inv
        d = (d - np.round(d)) @ cell[:2, :2]
        hit = (np.linalg.norm(d, axis=-1) < MATCH_TOL_A) & (sym[bottom, None] == sym[None, top])
        if not (np.all(hit.sum(axis=1) == 1) and np.all(hit.sum(axis=0) == 1)):
            continue
        tf = t @ inv
        images = (tf - np.round(tf) + np.array([[i, j] for i in (-1, 0, 1) for j in (-1, 0, 1)]))
        t_short = images[np.argmin(np.linalg.norm(images @ cell[:2, :2], axis=1))] @ cell[:2, :2]
        if best is None or np.linalg.norm(t_short) < np.linalg.norm(best):
            best = t_short
            match = top[np.argmax(hit, axis=1)]
    if best is None:
        return None
    offsets = pos[match] - pos[bottom]
    frac = offsets[:, :2] @ inv
    # in-plane part of every offset made equal to the chosen shortest translation
    offsets[:, :2] = (frac - np.round(frac - best @ inv)) @ cell[:2, :2]
    return bottom, match, offsets


def _characters(primitive: Atoms, layers: np.ndarray, q: np.ndarray, freq: np.ndarray,
                vecs: np.ndarray) -> list[ModeCharacter]:
    """Characters and names of all bands at q (see ``mode_at`` for the rules)."""
    masses = primitive.get_masses()
    n_layers = int(layers.max()) + 1
    onehot = np.eye(n_layers)[layers]  # (n_atoms, n_layers)
    sq = np.abs(vecs) ** 2  # (band, atom, xyz)
    out_of_plane = sq[..., 2].sum(axis=1)
    in_plane = sq[..., :2].sum(axis=(1, 2))
    layer_w = sq.sum(axis=2) @ onehot  # (band, layer)
    mw = vecs * np.sqrt(masses)[None, :, None]  # sqrt(M) e: mass-weighted displacement
    total = mw.sum(axis=1)  # (band, 3)
    translation = (np.abs(total) ** 2).sum(axis=1) / masses.sum()
    per_layer = np.einsum("bax,al->blx", mw, onehot)  # (band, layer, 3)
    rigid = ((np.abs(per_layer) ** 2).sum(axis=2) / (masses @ onehot)).sum(axis=1)

    cos = np.full(len(freq), np.nan)
    if n_layers == 2:
        match = _layer_translation(primitive, layers)
        if match is not None:
            bottom, top, offsets = match
            phase = np.exp(2j * np.pi * (offsets @ np.linalg.inv(primitive.cell)) @ q)
            overlap = np.einsum("bax,bax,a->b", vecs[:, bottom].conj(), vecs[:, top], phase)
            cos = overlap.real / np.sqrt(layer_w[:, 0] * layer_w[:, 1] + 1e-300)
        else:  # no translation maps one layer on the other: compare rigid-layer motions
            s0, s1 = per_layer[:, 0], per_layer[:, 1]
            norm = np.linalg.norm(s0, axis=1) * np.linalg.norm(s1, axis=1) + 1e-300
            cos = np.where(rigid > 0.5, np.einsum("bx,bx->b", s0.conj(), s1).real / norm, np.nan)

    qf = np.asarray(q[:2], dtype=float)
    at_gamma = np.abs(qf - np.round(qf)).max() < 1e-9
    near_gamma = np.abs(qf - np.round(qf)).max() < NEAR_GAMMA_FRAC
    q_cart = (qf - np.round(qf)) @ (np.linalg.inv(primitive.cell).T[:2, :2])
    carbon = set(primitive.get_chemical_symbols()) == {"C"}
    acoustic = translation > 0.5
    f_cm1 = freq * THZ_TO_CM1
    in_plane_acoustic = np.flatnonzero(acoustic & (out_of_plane <= 0.5))

    out = []
    for b in range(len(freq)):
        if n_layers != 2:
            symmetry = None
        elif np.isnan(cos[b]) or layer_w[b].min() < 0.05:
            symmetry = "mixed"
        else:
            symmetry = ("symmetric" if cos[b] > SYMMETRY_COS
                        else "antisymmetric" if cos[b] < -SYMMETRY_COS else "mixed")
        if near_gamma:
            name = ""
            if acoustic[b]:
                if out_of_plane[b] > 0.5:
                    name = "ZA"
                elif at_gamma:  # no q direction: the lower in-plane acoustic band is TA
                    name = "TA" if b == in_plane_acoustic.min() else "LA"
                else:
                    t = total[b, :2]
                    along = np.abs(t @ q_cart) ** 2 / (q_cart @ q_cart) / ((np.abs(t) ** 2).sum())
                    name = "LA" if along > 0.5 else "TA"
            elif n_layers > 1 and rigid[b] > 0.5 and f_cm1[b] < RIGID_LAYER_MAX_CM1:
                name = "shear" if in_plane[b] > 0.5 else "breathing"
            elif carbon and out_of_plane[b] > PURE and ZO_RANGE_CM1[0] < f_cm1[b] < ZO_RANGE_CM1[1]:
                name = "ZO"
            elif carbon and in_plane[b] > PURE and f_cm1[b] > G_MIN_CM1:
                name = "G"
        else:
            pol = ("in-plane" if in_plane[b] > PURE else
                   "out-of-plane" if out_of_plane[b] > PURE else "mixed")
            name = f"{pol} {'acoustic' if acoustic[b] else 'optical'}-like"
        out.append(ModeCharacter(
            in_plane=float(in_plane[b]), out_of_plane=float(out_of_plane[b]),
            layer_weights=tuple(float(w) for w in layer_w[b]), layer_symmetry=symmetry,
            acoustic=bool(acoustic[b]), translation=float(translation[b]),
            rigid_layer=float(rigid[b]), name=name))
    return out


# --- public API -----------------------------------------------------------------------

def mode_at(phonon: Phonopy, primitive: Atoms, q_frac, band: int) -> Mode:
    """Mode ``band`` (0 = lowest) at ``q_frac`` (fractional, of ``primitive``, the
    layer-labelled ASE cell the phonopy object was built from).

    Character: ``in_plane``/``out_of_plane`` and ``layer_weights`` are shares of
    |e|^2. Layer symmetry (bilayers): when a translation t maps the bottom layer on
    the top one (any shifted stacking; the shortest t is used), the cosine
    Re[sum_k e*_k . e_k' exp(i q . (x_k' - x_k))] / sqrt(w_bottom w_top) between the
    layers' patterns; otherwise (twisted) the cosine between the layers' mass-weighted
    displacement sums sum_k sqrt(M_k) e_k, for rigid-layer modes only. Above
    ``SYMMETRY_COS`` it is "symmetric", below its negative "antisymmetric", else (or
    with under 5 % on a layer) "mixed". At Gamma both measures agree for rigid-layer
    modes; away from Gamma the sign depends on the choice of t and is a guide only.
    Acoustic: weight on a uniform translation > 1/2.

    Names, within ``NEAR_GAMMA_FRAC`` of Gamma: acoustic modes are ZA (mostly
    out-of-plane), else LA/TA by the share of the in-plane motion along q (at Gamma
    itself the lower in-plane acoustic band is TA); non-acoustic rigid-layer modes
    (weight > 1/2) under 300 cm^-1 are "shear" (in-plane) or "breathing"
    (out-of-plane); for carbon, pure out-of-plane modes at 300-1200 cm^-1 are "ZO"
    and pure in-plane modes above 1200 cm^-1 "G". Other modes there stay unnamed
    (""). Away from Gamma the name is descriptive: "<in-plane|out-of-plane|mixed>
    <acoustic|optical>-like".
    """
    layers = _check_primitive(phonon, primitive)
    q = np.array(q_frac, dtype=float).reshape(3)  # a copy: it is made read-only below
    n_bands = 3 * len(primitive)
    if not 0 <= band < n_bands:
        raise ValueError(f"band must be in 0..{n_bands - 1}, got {band}")
    freq, vecs = _modes(phonon, q)
    character = _characters(primitive, layers, q, freq, vecs)[band]
    q.flags.writeable = False
    vec = vecs[band].copy()
    vec.flags.writeable = False
    return Mode(q_frac=q, band=int(band), frequency_thz=float(freq[band]), eigenvector=vec,
                character=character)


def branch_layer_character(phonon: Phonopy, primitive: Atoms, q_frac_path) -> np.ndarray:
    """Weight of every branch on every layer, (n_q, n_bands, n_layers), summing to 1
    per mode, for colouring a dispersion (bands sorted by frequency, as phonopy's).

    Bands of a degenerate set (within ``DEGENERACY_TOL_THZ``) get the set's mean
    weights, so the colour does not depend on the solver's arbitrary basis there.
    """
    layers = _check_primitive(phonon, primitive)
    q = np.atleast_2d(np.asarray(q_frac_path, dtype=float))
    result = phonon.run_qpoints(q, with_eigenvectors=True)
    freq = np.asarray(result.frequencies)
    vecs = np.asarray(result.eigenvectors)  # (n_q, 3n, band)
    n_q, n_bands = freq.shape
    sq = (np.abs(vecs) ** 2).reshape(n_q, len(primitive), 3, n_bands).sum(axis=2)
    onehot = np.eye(int(layers.max()) + 1)[layers]
    weights = np.einsum("qab,al->qbl", sq, onehot)
    gid = (_degenerate_groups(freq) + n_bands * np.arange(n_q)[:, None]).ravel()
    sums = np.zeros((n_q * n_bands, onehot.shape[1]))
    np.add.at(sums, gid, weights.reshape(-1, onehot.shape[1]))
    counts = np.bincount(gid, minlength=n_q * n_bands)
    return (sums[gid] / counts[gid, None]).reshape(weights.shape)


def commensurate_supercell(q_frac, max_n: int = 12, tol: float = 1e-6) -> tuple[int, int]:
    """Smallest (n1, n2), each <= max_n, with n_i q_i integer: the in-plane supercell
    that holds one full period of a wave at ``q_frac`` (Gamma (1, 1), M (2, 1), K (3, 3)).

    q_z is ignored (slabs are not repeated along z). For a q with no such n up to
    ``max_n`` the n with the smallest |n q_i - round(n q_i)| is returned (the
    smallest of ties): the wave then jumps slightly across the supercell boundary.
    """
    q = np.asarray(q_frac, dtype=float).ravel()[:2]
    n = np.arange(1, max_n + 1)
    resid = np.abs(np.outer(n, q) - np.round(np.outer(n, q)))  # (max_n, 2)
    exact = resid < tol
    pick = np.where(exact.any(axis=0), np.argmax(exact, axis=0), np.argmin(resid, axis=0))
    return int(n[pick[0]]), int(n[pick[1]])


def mode_frames(primitive: Atoms, mode: Mode, amplitude_a: float = 0.3, n_frames: int = 16,
                supercell: tuple[int, int] | None = None) -> tuple[Atoms, np.ndarray]:
    """One period of ``mode`` on a supercell: (ideal supercell, positions (n_frames, N, 3)).

    The supercell is ``primitive`` repeated (n1, n2, 1) (default
    ``commensurate_supercell(mode.q_frac)``), with its layer labels. Frame t holds
    x + A Re[e_k / sqrt(M_k) exp(i (2 pi q . x - 2 pi t / n_frames))] (module
    docstring), A chosen so that the largest displacement over all frames is
    ``amplitude_a`` Angstrom; frame n_frames would repeat frame 0.
    """
    if amplitude_a <= 0 or n_frames < 1:
        raise ValueError("amplitude_a must be positive and n_frames >= 1")
    if mode.eigenvector.shape != (len(primitive), 3):
        raise ValueError(f"mode has {len(mode.eigenvector)} atoms, primitive {len(primitive)}")
    n1, n2 = supercell or commensurate_supercell(mode.q_frac)
    ideal = primitive.repeat((n1, n2, 1))  # cell-major order: atom i is primitive atom i % n
    unit = np.arange(len(ideal)) % len(primitive)
    frac = ideal.positions @ np.linalg.inv(np.asarray(primitive.cell))
    bloch = (mode.eigenvector[unit] / np.sqrt(primitive.get_masses()[unit])[:, None]
             * np.exp(2j * np.pi * frac @ mode.q_frac)[:, None])
    clock = np.exp(-2j * np.pi * np.arange(n_frames) / n_frames)
    u = (bloch[None] * clock[:, None, None]).real
    largest = np.linalg.norm(u, axis=-1).max()
    if largest == 0:
        raise ValueError("the mode has no displacement on this supercell")
    return ideal, ideal.positions[None] + (amplitude_a / largest) * u


def displacement_frames(ideal, displacements: np.ndarray, exaggeration: float = 10.0,
                        n_frames: int = 16) -> np.ndarray:
    """Frames x + exaggeration sin(2 pi t / n_frames) u, (n_frames, N, 3) Angstrom: a
    sample's displacements ``u`` (N, 3) shown swinging about the ideal positions
    (``ideal``: ASE atoms or an (N, 3) array), magnified by the stated factor."""
    x = np.asarray(ideal.positions if isinstance(ideal, Atoms) else ideal, dtype=float)
    u = np.asarray(displacements, dtype=float)
    if u.shape != x.shape:
        raise ValueError(f"displacements {u.shape} do not match positions {x.shape}")
    swing = np.sin(2 * np.pi * np.arange(n_frames) / n_frames)
    return x[None] + exaggeration * swing[:, None, None] * u[None]
