"""Layer-resolved electronic views in the non-orthogonal basis (Mulliken-style).

A state c (normalised c^H S c = 1) is shared between layers by the Mulliken populations
of its orbitals,

    w_L = sum_{mu in layer L} Re[conj(c_mu) (S c)_mu],      sum_L w_L = c^H S c = 1,

and the unfolding weight W(k + G) of ``electrons.Unfolder`` (a sum over orbitals m) by
keeping the orbitals m of layer L: the primitive translations map every layer onto
itself, so the layer parts sum to W, and over the N vectors k + G that fold together
they sum to the Mulliken weights. With S = 1 every part is >= 0.

Orbitals are in the compact layout of ``seams.Blocks``: atom i's ``norb[i]`` orbitals
one after the other, atoms in order.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from .electrons import BlockTensors, Unfolder, bloch_pair, solve_generalized, translation_chunks
from .seams import Blocks, HamiltonianModel


def atom_layers(atoms: Atoms) -> np.ndarray:
    """Layer index (0 = lowest) of each atom: its "layer" array, else detected from z."""
    if "layer" in atoms.arrays:
        return np.asarray(atoms.arrays["layer"], dtype=int)
    from .structures import detect_layers

    return detect_layers(atoms)


def orbital_layers(atoms_or_layer: Atoms | np.ndarray, norb: Blocks | np.ndarray) -> np.ndarray:
    """Layer index (M,) of each orbital in the compact orbital layout, from the atoms (or
    their per-atom layer array) and the orbitals per atom (or the Blocks that hold them)."""
    layer = atom_layers(atoms_or_layer) if isinstance(atoms_or_layer, Atoms) else np.asarray(atoms_or_layer)
    counts = norb.norb if isinstance(norb, Blocks) else np.asarray(norb)
    if len(layer) != len(counts):
        raise ValueError(f"{len(layer)} atoms' layers but {len(counts)} atoms' orbital counts")
    return np.repeat(layer.astype(int), counts.astype(int))


def _one_hot(orbital_layer, n_layers: int, like: torch.Tensor) -> torch.Tensor:
    idx = torch.as_tensor(np.asarray(orbital_layer), dtype=torch.long, device=like.device)
    return torch.nn.functional.one_hot(idx, n_layers).to(like.real.dtype)  # (M, L)


def mulliken_layer_weights(c, s, orbital_layer, n_layers: int):
    """Mulliken layer weights (..., n_states, n_layers) of states c (..., M, n_states) with
    overlap s (..., M, M): sum over orbitals mu of layer L of Re[conj(c_mu) (S c)_mu].
    They sum to c^H S c (1 for ``solve_generalized``'s states). numpy in, numpy out."""
    is_numpy = isinstance(c, np.ndarray)
    c_t, s_t = torch.as_tensor(c), torch.as_tensor(s)
    dtype = torch.promote_types(c_t.dtype, s_t.dtype)
    c_t, s_t = c_t.to(dtype), s_t.to(dtype)
    q = (c_t.conj() * (s_t @ c_t)).real  # (..., M, n)
    w = q.transpose(-1, -2) @ _one_hot(orbital_layer, n_layers, q)
    return w.numpy() if is_numpy else w


def unfolded_layer_weights(unfolder: Unfolder, c: torch.Tensor, s: torch.Tensor, g_cart: np.ndarray,
                           orbital_layer, n_layers: int, k_index: np.ndarray | None = None) -> torch.Tensor:
    """Layer parts of the unfolding weights of ``Unfolder.weights``:

        W_L(k + G) = Re (1/N) sum_l exp(i G . l) sum_{m in layer L} c_m conj[(S c)_{perm_l(m)}],

    so sum_L W_L = W. States c (K, M, nb) at the folded k with overlaps s (K, M, M).
    Without ``k_index``: (K, G, nb, n_layers) for every k and every g in ``g_cart`` (G, 3),
    like ``Unfolder.weights``. With ``k_index`` (G,): (G, nb, n_layers), g[i] paired with
    the states of k[k_index[i]] only (a path, where each point folds onto one k).
    One k and a few translations at a time (``translation_chunks``): bounded memory.
    """
    perm = torch.as_tensor(unfolder.orbital_perm, device=c.device)  # (N, M)
    onehot = _one_hot(orbital_layer, n_layers, c).to(c.dtype)  # (M, L)
    g = torch.as_tensor(np.asarray(g_cart, dtype=float), dtype=c.real.dtype, device=c.device)
    t = torch.as_tensor(unfolder.translations, dtype=c.real.dtype, device=c.device)
    phase = (torch.exp(1j * (g @ t.T)) / unfolder.n_cells).to(c.dtype)  # (G, N)
    sc = s @ c  # (K, M, nb)
    nb = c.shape[2]
    if k_index is None:
        out = torch.zeros(c.shape[0], len(g), nb, n_layers, dtype=c.real.dtype, device=c.device)
    else:
        k_index = np.asarray(k_index)
        out = torch.zeros(len(g), nb, n_layers, dtype=c.real.dtype, device=c.device)
    for k in range(c.shape[0]):
        rows = np.flatnonzero(k_index == k) if k_index is not None else None
        if rows is not None and not len(rows):
            continue
        # overlap[l, n, L] = sum_{m in L} c[m, n] conj(sc[perm_l(m), n]), in chunks of l
        overlap = c.new_empty(perm.shape[0], nb, n_layers)
        for ls in translation_chunks(perm.shape[0], c[k].numel() * c.element_size()):
            prod = c[k][None] * sc[k][perm[ls]].conj()  # (chunk, M, nb)
            overlap[ls] = torch.einsum("lmn,mL->lnL", prod, onehot)
        if rows is None:
            out[k] = torch.einsum("gl,lnL->gnL", phase, overlap).real
        else:
            idx = torch.as_tensor(rows, device=c.device)
            out[idx] = torch.einsum("gl,lnL->gnL", phase[idx], overlap).real
    return out


def projected_dos(energies, weights, grid: np.ndarray, broadening: float = 0.05) -> np.ndarray:
    """Gaussian-broadened projected DOS (n_layers, n_E) in states/eV: sum over states
    (every leading axis of ``energies`` (..., n) eV and ``weights`` (..., n, n_layers)) of
    w_L g(E - E_n) on ``grid`` (n_E,) eV, g a normalised Gaussian of width ``broadening``
    eV. Divide by the number of k-points for a per-cell DOS."""
    e = np.asarray(energies, dtype=float).reshape(-1)
    w = np.asarray(weights, dtype=float).reshape(len(e), -1)
    grid = np.asarray(grid, dtype=float)
    out = np.zeros((w.shape[1], len(grid)))
    for start in range(0, len(e), 4096):  # bounded memory for fine meshes
        x = (grid[None, :] - e[start:start + 4096, None]) / broadening
        gauss = np.exp(-0.5 * x ** 2) / (np.sqrt(2 * np.pi) * broadening)
        out += w[start:start + 4096].T @ gauss
    return out


def _auto_supercell(model: HamiltonianModel, primitive: Atoms) -> int:
    """Smallest n such that the n x n cell's in-plane vectors are >= 2 r_c + 1 A (what
    tblite's minimal-image split needs); 1 for models without an ``r_c``."""
    r_c = getattr(model, "r_c", None)
    if r_c is None:
        return 1
    shortest = min(np.linalg.norm(np.asarray(primitive.cell)[:2], axis=1))
    return int(np.ceil((2 * float(r_c) + 1.0) / shortest))


def layer_dos(model: HamiltonianModel, primitive: Atoms, mesh: int = 24, energies: np.ndarray | None = None,
              broadening: float = 0.05, supercell: int | None = None, device: str | None = None) -> dict:
    """Layer-projected electronic DOS of the static lattice (states/eV per primitive cell,
    one spin), Mulliken layer weights, on a Gamma-centred ``mesh`` x ``mesh`` k-mesh of the
    primitive cell (3 | mesh puts K on it), Gaussian broadening ``broadening`` eV.

    The blocks come from an n x n supercell (``supercell``; default the smallest that fits
    the model's ``r_c``, 1 without one) sampled on the (mesh / n)^2 supercell mesh that
    folds onto the primitive one (mesh is rounded up to a multiple of n); the DOS is
    divided by n^2. E_F is charge neutrality on the mesh: the midpoint between the
    highest occupied and the lowest empty level with the blocks' valence electrons.

    Returns {"energies_ev": (n_E,) about E_F (default -3 .. 3 eV), "dos": (n_layers, n_E),
    "total": (n_E,), "e_fermi_ev", "mesh", "supercell"}.
    """
    from .structures import supercell as make_supercell

    n = int(supercell or _auto_supercell(model, primitive))
    mesh = n * int(np.ceil(mesh / n))
    cell_atoms = make_supercell(primitive, n) if n > 1 else primitive.copy()
    if "layer" not in cell_atoms.arrays:
        cell_atoms.arrays["layer"] = atom_layers(cell_atoms)
    (blocks,) = model.blocks([cell_atoms])
    layer = orbital_layers(cell_atoms, blocks)
    n_layers = int(layer.max()) + 1
    m = mesh // n
    frac = np.array([(a / m, b / m, 0.0) for a in range(m) for b in range(m)])
    k_cart = frac @ (2 * np.pi * np.linalg.inv(np.asarray(cell_atoms.cell)).T)
    bt = BlockTensors.from_blocks(blocks, cell_atoms.positions, cell_atoms.cell, device=device)
    k = torch.as_tensor(k_cart, device=bt.h.device)
    h, s = bloch_pair(bt, k)
    e, c, _ = solve_generalized(h, s)
    w = mulliken_layer_weights(c, s, layer, n_layers).cpu().numpy()  # (K, M, L)
    e = e.cpu().numpy()
    from .observables import BandProbe

    electrons = blocks.meta.get("valence_electrons", BandProbe.valence_electrons(cell_atoms))
    n_occ = int(round(electrons / 2)) * len(k_cart)
    levels = np.sort(e.reshape(-1))
    e_fermi = float(0.5 * (levels[n_occ - 1] + levels[n_occ]))
    grid = np.linspace(-3.0, 3.0, 601) if energies is None else np.asarray(energies, dtype=float)
    dos = projected_dos(e - e_fermi, w, grid, broadening) / (len(k_cart) * n * n)
    return {"energies_ev": grid, "dos": dos, "total": dos.sum(axis=0), "e_fermi_ev": e_fermi,
            "mesh": mesh, "supercell": n}
