"""Heterogeneous periodic graphs: edge typing, counts against brute force, batching."""

import numpy as np
import pytest
import torch

from mlepi_core.graph import batch_graphs, build_batch, build_graph
from mlepi_core.structures import bilayer, monolayer, supercell, twisted_bilayer


def brute_force_edges(atoms, cutoff, images=2):
    """Ordered pairs (i, j, n1, n2) with |x_j + n1 a1 + n2 a2 - x_i| < cutoff, by explicit search."""
    pos, cell = atoms.positions, np.asarray(atoms.cell)
    n = np.arange(-images, images + 1)
    shifts = np.array([(a, b, 0) for a in n for b in n])
    vec = pos[None, :, None, :] + (shifts @ cell)[None, None] - pos[:, None, None, :]
    d = np.linalg.norm(vec, axis=-1)  # (N, N, S)
    i, j, s = np.nonzero((d < cutoff) & (d > 1e-8))
    return {(a, b, *shifts[c][:2]) for a, b, c in zip(i, j, s)}


def edge_set(graph, relation):
    i, j = graph.edges[relation].index.numpy()
    s = graph.edges[relation].shift.numpy()
    return set(zip(i.tolist(), j.tolist(), s[:, 0].tolist(), s[:, 1].tolist()))


def test_ab6_edge_counts_match_brute_force(displaced_ab6):
    atoms = displaced_ab6
    g = build_graph(atoms, {"intra": 6.0, "inter": 6.0})
    layer = atoms.arrays["layer"]
    expected = brute_force_edges(atoms, 6.0)
    intra = {e for e in expected if layer[e[0]] == layer[e[1]]}
    inter = expected - intra
    assert edge_set(g, "intra") == intra
    assert edge_set(g, "inter") == inter
    assert len(intra) > 0 and len(inter) > 0


def test_separate_cutoffs_per_relation():
    atoms = supercell(bilayer("AB"), 5)
    g = build_graph(atoms, {"intra": 3.0, "inter": 7.0})
    assert g.edge_vectors("intra").norm(dim=1).max() < 3.0
    assert g.edge_vectors("inter").norm(dim=1).max() < 7.0
    assert g.edge_vectors("inter").norm(dim=1).min() >= 3.38 - 1e-9
    layer = g.layer
    for rel, same in (("intra", True), ("inter", False)):
        i, j = g.edges[rel].index
        assert bool(((layer[i] == layer[j]) == same).all())
    # the homogeneous graph is the union of both relations at one cutoff
    het = build_graph(atoms, {"intra": 6.0, "inter": 6.0})
    hom = build_graph(atoms, {"all": 6.0})
    assert edge_set(hom, "all") == edge_set(het, "intra") | edge_set(het, "inter")


def test_every_edge_has_its_reverse(displaced_ab6):
    g = build_graph(displaced_ab6)
    for rel in ("intra", "inter"):
        edges = edge_set(g, rel)
        assert {(j, i, -a, -b) for i, j, a, b in edges} == edges


def test_monolayer_has_no_inter_edges():
    g = build_graph(supercell(monolayer(), 4))
    assert len(g.edges["inter"]) == 0 and len(g.edges["intra"]) > 0


def test_batching_offsets_atoms_and_keeps_vectors():
    a = supercell(bilayer("AB"), 4)
    b = twisted_bilayer(1, 2).repeat((2, 2, 1))
    ga, gb = build_graph(a), build_graph(b)
    batch = batch_graphs([ga, gb])
    assert batch.n_structures == 2 and batch.n_atoms == len(a) + len(b)
    assert torch.equal(batch.batch, torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).long())
    for rel in ("intra", "inter"):
        vec = batch.edge_vectors(rel)
        assert torch.allclose(vec, torch.cat([ga.edge_vectors(rel), gb.edge_vectors(rel)]))
        assert int(batch.edges[rel].index[:, len(ga.edges[rel]):].min()) >= len(a)


def test_edge_vectors_differentiable_and_dtype_device():
    g = build_batch([supercell(bilayer("AA"), 3)], dtype=torch.float32, device="cpu")
    assert g.positions.dtype == torch.float32
    pos = g.positions.clone().requires_grad_(True)
    g.edge_vectors("inter", pos).norm(dim=1).sum().backward()
    assert pos.grad is not None and torch.isfinite(pos.grad).all()


def test_needs_layers_and_known_relations():
    atoms = supercell(bilayer("AB"), 3)
    del atoms.arrays["layer"]
    with pytest.raises(ValueError, match="layer"):
        build_graph(atoms)
    with pytest.raises(ValueError, match="relation"):
        build_graph(supercell(bilayer("AB"), 3), {"intra": 6.0, "bogus": 3.0})
