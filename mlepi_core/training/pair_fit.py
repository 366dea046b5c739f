"""The explicit interlayer pair term fitted by linear least squares to a force reference.

A pair term (``models.pair.PairEnergy``) is linear in its coefficients, and a layer-only
energy (the message-passing part on intra edges) exerts no net force on a rigid layer, so
the reference's interlayer energy and the force summed over the top layer determine it
alone. ``fit_pair_term`` labels bilayers with the reference, builds each one's features
(d E_pair / d coefficients, by autograd: exact for a linear term) and solves

    min_c  sum_cells [ (Phi_E c - E_inter / N)^2 + (w_F Phi_F c - w_F F_top / N_top)^2 ] + lambda |c|^2,

E_inter = E(bilayer) - E(layer 1) - E(layer 2) per atom and F_top the top layer's summed force
per atom of that layer, w_F = 10 A (a layer force of 1 meV/A counts as 10 meV of energy per
atom). The cells (``interlayer_fit_cells``) cover what the interlayer modes and the phonon set
visit: every stacking at distances d0 - 0.45 ... d0 + 0.65 A (the set's d spans 3.0 to 3.9 A;
a linear term is unconstrained where no cell puts a pair), small shifts about the ground stacking,
biaxial strain of up to 2 %, and 2x2 cells with 0.04 A atomic noise, whose pair lengths and
normals lie off the perfect lattice's. Units: eV, Angstrom.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from ..graph import build_graph
from ..interlayer import layers_of, rigid_shift, strained
from ..structures import supercell

FORCE_WEIGHT_A = 10.0
STRAINS = (-0.02, -0.01, 0.01, 0.02)


def interlayer_fit_cells(bilayer: Atoms, seed: int = 0,
                         shifts: int = 12, distances: Sequence[float] = tuple(np.linspace(-0.45, 0.65, 12)),
                         near_ground: int = 150, strained_shifts: int = 6, noisy: int = 200) -> list[Atoms]:
    """Rigid and noisy copies of the primitive ``bilayer`` (layer labels 0 and 1, in its ground
    stacking at its distance d0) for the fit: layer 1 moved by fractional in-plane shifts (of
    the cell vectors) and by distance changes (A)."""
    rng = np.random.default_rng(seed)
    cell = np.asarray(bilayer.cell)

    def moved(atoms, frac, dz):
        shift = frac[0] * cell[0] + frac[1] * cell[1] + np.array([0.0, 0.0, dz])
        return rigid_shift(atoms, shift, [1])

    grid = [np.array([a, b]) for a in np.arange(shifts) / shifts for b in np.arange(shifts) / shifts]
    cells = [moved(bilayer, s, dz) for dz in distances for s in grid]
    cells += [moved(bilayer, rng.normal(0.0, 0.03, 2), rng.normal(0.0, 0.07)) for _ in range(near_ground)]
    coarse = [np.array([a, b]) for a in np.arange(strained_shifts) / strained_shifts
              for b in np.arange(strained_shifts) / strained_shifts]
    for eps in STRAINS:
        cells += [strained(moved(bilayer, s, dz), eps) for dz in np.linspace(-0.4, 0.6, 6) for s in coarse]
    for _ in range(noisy):
        c = supercell(strained(moved(bilayer, rng.uniform(0.0, 1.0, 2), rng.normal(0.0, 0.08)),
                               rng.uniform(-0.02, 0.02)), 2)
        c.positions += rng.normal(0.0, 0.04, c.positions.shape)
        cells.append(c)
    return cells


def interlayer_targets(reference, cells: Sequence[Atoms]) -> tuple[np.ndarray, np.ndarray]:
    """Interlayer energy per atom (B,) eV and the top layer's summed force per atom of that
    layer (B, 3) eV/A, from the reference's energies of each bilayer and of its layers alone."""
    labels = [layers_of(a) for a in cells]
    energies, forces = reference.energies_forces(list(cells))
    alone = [a[lab == k] for a, lab in zip(cells, labels) for k in (0, 1)]
    e_layers, _ = reference.energies_forces(alone)
    e_layers = np.asarray(e_layers).reshape(-1, 2).sum(1)
    n = np.array([len(a) for a in cells])
    top = np.array([np.asarray(f)[lab == 1].sum(0) / (lab == 1).sum() for f, lab in zip(forces, labels)])
    return (np.asarray(energies) - e_layers) / n, top


def pair_features(network, cells: Sequence[Atoms], relation: str = "inter") -> tuple[np.ndarray, np.ndarray]:
    """Per cell, d(E_pair / N)/dc (B, P) and d(F_top / N_top)/dc (B, 3, P) of the network's
    pair term on ``relation``, c its coefficients flattened (radial, then registry)."""
    term = network.pair_terms[relation]
    params = [term.radial, term.registry] if term.uses_normals else [term.radial]
    rows_e, rows_f = [], []
    for atoms in cells:
        graph = build_graph(atoms, network.cutoffs, dtype=term.radial.dtype).to(term.radial.device)
        pos = graph.positions.clone().requires_grad_(True)
        vectors = {rel: graph.edge_vectors(rel, pos) for rel in network.relations}
        projectors = network.normal_projectors(graph, vectors)
        species = network.species(graph.numbers)
        e = term(species, vectors[relation], graph.edges[relation].index, projectors).sum() / len(atoms)
        fe = torch.cat([g.flatten() for g in torch.autograd.grad(e, params, retain_graph=True)])
        (grad,) = torch.autograd.grad(e, pos, create_graph=True)
        top = torch.as_tensor(layers_of(atoms) == 1, device=pos.device)
        f_top = -grad[top].sum(0) * len(atoms) / int(top.sum())
        ff = [torch.cat([g.flatten() for g in torch.autograd.grad(f_top[c], params, retain_graph=c < 2)])
              for c in range(3)]
        rows_e.append(fe.detach().cpu().numpy())
        rows_f.append(torch.stack(ff).detach().cpu().numpy())
    return np.array(rows_e), np.array(rows_f)


def fit_pair_term(network, reference, bilayer: Atoms, relation: str = "inter", ridge: float = 1e-8,
                  seed: int = 0, cells: Sequence[Atoms] | None = None) -> dict:
    """Set the network's pair term on ``relation`` to the least-squares fit (module docstring)
    on ``interlayer_fit_cells(bilayer)`` (or ``cells``); returns the fit's RMS errors."""
    cells = list(cells) if cells is not None else interlayer_fit_cells(bilayer, seed=seed)
    energies, top = interlayer_targets(reference, cells)
    phi_e, phi_f = pair_features(network, cells, relation)
    n, p = phi_e.shape
    # a constant per atom absorbs what the pair term's cutoff leaves out of the energy
    design = np.vstack([np.hstack([phi_e, np.ones((n, 1))]),
                        np.hstack([FORCE_WEIGHT_A * phi_f.reshape(3 * n, p), np.zeros((3 * n, 1))]),
                        np.sqrt(ridge) * np.eye(p, p + 1)])
    target = np.concatenate([energies, FORCE_WEIGHT_A * top.reshape(-1), np.zeros(p)])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    term = network.pair_terms[relation]
    with torch.no_grad():
        flat = torch.as_tensor(coef[:p], dtype=term.radial.dtype, device=term.radial.device)
        k = term.radial.numel()
        term.radial.copy_(flat[:k].view_as(term.radial))
        term.registry.copy_(flat[k:].view_as(term.registry))
    e_err = phi_e @ coef[:p] + coef[p] - energies
    f_err = phi_f @ coef[:p] - top
    return {"cells": n, "coefficients": p, "ridge": ridge,
            "energy_rmse_mev_per_atom": float(1e3 * np.sqrt(np.mean(e_err ** 2))),
            "layer_force_rmse_mev_per_a": float(1e3 * np.sqrt(np.mean(f_err ** 2))),
            "constant_mev_per_atom": float(1e3 * coef[p])}
