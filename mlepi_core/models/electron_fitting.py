"""Training-time fitting of HedgeNet-Electron: output normalisation and two-centre tables.

Both are set once from the training targets before gradient descent starts
(``mlepi_core.training.electron_task``); the deployed network only reads the buffers
they fill.
"""

from __future__ import annotations

from typing import Iterable

import torch

from .electron import ONSITE, HedgeNetElectron, local_normals


@torch.no_grad()
def fit_normalisation(model: HedgeNetElectron, items: Iterable[tuple], floor: float = 1e-8,
                      radial_floor: float = 1e-4) -> dict:
    """Set ``model``'s output statistics from training targets; returns them as plain lists.

    ``items`` yields (atomic numbers (N,), {target: {"onsite": (N, n, n), relation:
    (E_r, n, n)}}, {relation: edge lengths (E_r,) in A}) per structure or batch (the
    lengths only matter with ``radial_scale_bins``). On-site 0e components are shifted by
    their per-element mean; each irrep copy is scaled by its RMS (on-site after the shift,
    hoppings per relation). An RMS below ``floor`` (eV or 1) sets the scale to 0: that
    component is then the constant shift (S_ii = 1, or the vanishing anisotropic
    on-site terms of GFN1-xTB). Radial scales: the RMS of each copy per length bin, at
    least ``radial_floor`` times the relation's RMS; an empty bin takes its nearest
    filled neighbour's.
    """
    bm = model.block_map
    dim, n_el, n_rel = bm.dim, len(model.elements), len(model.relations)
    bins = model.config.radial_scale_bins
    mat = bm.matrix.detach().to("cpu", torch.float64)
    # sums of (y - ref), ref = the first mean seen per element, so that the spread of
    # nearly constant targets (S_ii = 1) is not lost to cancellation
    acc = {t: {"s1": torch.zeros(n_el, dim, dtype=torch.float64),
               "s2": torch.zeros(n_el, dim, dtype=torch.float64),
               "ref": torch.zeros(n_el, dim, dtype=torch.float64),
               "n": torch.zeros(n_el, dtype=torch.float64),
               "e2": torch.zeros(n_rel, dim, dtype=torch.float64),
               "ne": torch.zeros(n_rel, dtype=torch.float64),
               "b2": torch.zeros(n_rel, max(bins, 1), dim, dtype=torch.float64),
               "nb": torch.zeros(n_rel, max(bins, 1), dtype=torch.float64)} for t in model.targets}
    z_to_index = model.z_to_index.cpu()
    for numbers, targets, *rest in items:
        lengths = rest[0] if rest else None
        if bins and lengths is None:
            raise ValueError("radial_scale_bins needs the edge lengths: items of (numbers, targets, lengths)")
        species = z_to_index[numbers.cpu()]
        if bool((species < 0).any()):
            model.species(numbers.to(model.z_to_index.device))  # raises with the element named
        for t in model.targets:
            a = acc[t]
            y = targets[t][ONSITE].detach().to("cpu", torch.float64).flatten(-2) @ mat.T
            count = torch.zeros(n_el, dtype=torch.float64).index_add_(
                0, species, torch.ones(len(species), dtype=torch.float64))
            new = (a["n"] == 0) & (count > 0)
            if bool(new.any()):
                mean = torch.zeros(n_el, dim, dtype=torch.float64).index_add_(0, species, y)
                a["ref"][new] = mean[new] / count[new, None]
            y = y - a["ref"][species]
            a["s1"].index_add_(0, species, y)
            a["s2"].index_add_(0, species, y * y)
            a["n"] += count
            for r, rel in enumerate(model.relations):
                ye = targets[t][rel].detach().to("cpu", torch.float64).flatten(-2) @ mat.T
                a["e2"][r] += (ye * ye).sum(0)
                a["ne"][r] += ye.shape[0]
                if bins:
                    k = model.normalisers[t].bin_of(r, lengths[rel].detach().cpu().to(torch.float64))
                    a["b2"][r].index_add_(0, k, ye * ye)
                    a["nb"][r].index_add_(0, k, torch.ones(len(k), dtype=torch.float64))
    copy_of = bm.copy_of_row.cpu()
    rows_per_copy = torch.zeros(bm.n_copies, dtype=torch.float64).index_add_(
        0, copy_of, torch.ones(dim, dtype=torch.float64))
    scalar = bm.scalar_row.cpu()

    def rms_per_copy(mean_sq: torch.Tensor) -> torch.Tensor:  # per row -> RMS of its copy, per row
        per = torch.zeros(bm.n_copies, dtype=torch.float64).index_add_(0, copy_of, mean_sq)
        rms = (per / rows_per_copy).sqrt()[copy_of]
        return torch.where(rms < floor, torch.zeros_like(rms), rms)

    stats = {}
    for t in model.targets:
        a, norm = acc[t], model.normalisers[t]
        total = float(a["n"].sum())
        if total == 0:
            raise ValueError("fit_normalisation got no structures")
        d = torch.where(scalar, a["s1"] / a["n"].clamp(min=1)[:, None], -a["ref"])  # shift - ref
        resid = (a["s2"] - 2 * d * a["s1"] + a["n"][:, None] * d ** 2).sum(0) / total
        shift = torch.where(scalar, a["ref"] + d, torch.zeros_like(d))
        onsite_scale = rms_per_copy(resid.clamp(min=0))
        edge_scale = torch.stack([rms_per_copy(a["e2"][r] / a["ne"][r].clamp(min=1)) for r in range(n_rel)])
        norm.onsite_shift.copy_(shift)
        norm.onsite_scale.copy_(onsite_scale)
        norm.edge_scale.copy_(edge_scale)
        stats[t] = {"onsite_shift": shift.tolist(), "onsite_scale": onsite_scale.tolist(),
                    "edge_scale": {rel: edge_scale[r].tolist() for r, rel in enumerate(model.relations)}}
        if bins:
            ratio = torch.ones(n_rel, bins, dim, dtype=torch.float64)
            for r in range(n_rel):
                filled = torch.nonzero(a["nb"][r] > 0).flatten()
                if len(filled) == 0:
                    continue
                nearest = filled[(torch.arange(bins)[:, None] - filled[None, :]).abs().argmin(1)]
                rms = torch.stack([rms_per_copy(a["b2"][r, k] / a["nb"][r, k]) for k in range(bins)])[nearest]
                on = edge_scale[r] > 0
                ratio[r][:, on] = (rms[:, on] / edge_scale[r][on]).clamp(min=radial_floor)
            norm.edge_log_ratio.copy_(ratio.log())
            stats[t]["edge_log_ratio"] = {rel: ratio[r].log().tolist() for r, rel in enumerate(model.relations)}
    return stats


@torch.no_grad()
def fit_two_centre(model: HedgeNetElectron, batches: Iterable, chunk: int = 4096,
                   smoothing: float = 1e-10) -> dict:
    """Least-squares two-centre tables of ``model`` (``TwoCentre``) on training batches.

    ``batches`` yields objects with ``graph``, ``reverse`` and ``targets`` (``ElectronBatch``).
    With the layers' hopping heads at zero (as a two-centre network is built) a hopping
    is linear in the tables, so the tables that minimise the training loss
    (``normalised_block_mse``, hoppings only) solve normal equations, accumulated batch by
    batch in float64 with a curvature penalty: ``smoothing`` (relative to the data's
    weight) times the integral of each radial function's squared second derivative, so
    that between neighbour shells and beyond the lengths seen a table continues smoothly
    (nearly linearly) instead of oscillating; solved by pseudo-inverse. Call
    after ``fit_normalisation``, whose scales are the loss's weights. Returns the RMS of
    the normalised residual left per target and relation (1 = no better than zero).
    """
    if model.two_centre is None:
        raise ValueError("the model has no two-centre term (two_centre: 0)")
    f64 = torch.float64
    bm_matrix = model.block_map.matrix.to(f64)
    n = model.block_map.n_orbitals
    acc = {}
    for batch in batches:
        graph = batch.graph.to(dtype=f64)
        species = model.species(graph.numbers)
        normals = None
        if model.frame_map is not None:
            normals = local_normals(graph, model.relations, model.config.frame_cut)[:, model.frame_order]
        for t in model.targets:
            norm = model.normalisers[t]
            for r, rel in enumerate(model.relations):
                tc = model.two_centre[t][rel]
                scale = norm.edge_scale[r].to(f64)
                keep = scale > 0
                vectors = graph.edge_vectors(rel)
                i, j = graph.edges[rel].index
                rev = batch.reverse[rel]
                columns = tc.n_pairs * tc.basis.centres.numel() * tc.n_weights
                a = acc.setdefault((t, rel), {"A": torch.zeros(columns, columns, dtype=f64),
                                              "b": torch.zeros(columns, dtype=f64), "yy": 0.0, "n": 0})
                target = batch.targets[t][rel].to(f64)
                for lo in range(0, len(vectors), chunk):
                    sel = torch.arange(lo, min(lo + chunk, len(vectors)))
                    both = torch.cat([sel, rev[sel]])  # the chunk's edges and their reverses
                    lengths = vectors[both].norm(dim=-1)
                    unit = tc.harmonics(model.sh(vectors[both]).to(f64))  # (2e, Q, rows)
                    if normals is not None:
                        p = unit @ model.frame_map.matrix.to(f64)
                        p = p.view(*p.shape[:2], 3, 3)
                        unit = torch.einsum("ea,eqac,ec->eq", normals[i[both]], p, normals[j[both]])[..., None]
                    raw = ((unit * norm.edge_scales(r, lengths).to(f64)[:, None, :]) @ bm_matrix).view(
                        len(both), -1, n, n)
                    m = len(sel)
                    # the block is 0.5 (edge + reverse^T): each half reads its own pair's table
                    halves = [(0.5 * h.flatten(-2) @ bm_matrix.T)[..., keep] / scale[keep]  # (m, Q, K)
                              for h in (raw[:m], raw[m:].transpose(-1, -2))]
                    pairs = model.element_pairs(species, i[both], j[both]).view(2, m)
                    phi = tc.basis(lengths[:m])  # (m, G)
                    y = (target[sel].flatten(-2) @ bm_matrix.T)[:, keep] / scale[keep]  # (m, K)
                    for pf, pb in torch.unique(pairs, dim=1).T.tolist():
                        e = (pairs[0] == pf) & (pairs[1] == pb)
                        blocks = ([(pf, halves[0][e] + halves[1][e])] if pf == pb
                                  else [(pf, halves[0][e]), (pb, halves[1][e])])
                        _accumulate(a, tc, phi[e], y[e], blocks)
                    a["yy"] += float((y * y).sum())
                    a["n"] += y.numel()
    if not acc:
        raise ValueError("fit_two_centre got no batches")
    residual = {}
    for (t, rel), a in acc.items():
        tc = model.two_centre[t][rel]
        g_ = tc.basis.centres.numel()
        curvature = torch.kron(torch.eye(tc.n_pairs, dtype=f64),
                               torch.kron(tc.curvature(), torch.eye(tc.n_weights, dtype=f64)))  # (p, g, q)
        lam = smoothing * float(a["A"].diagonal().sum() / curvature.diagonal().sum())
        # pseudo-inverse: directions neither data nor curvature fix (e.g. the 0e and 2e tables
        # of in-plane pairs between flat layers, which only tilts tell apart; a pair of
        # elements the data never has) stay at zero
        w, v = torch.linalg.eigh(a["A"] + lam * curvature)
        good = w > 1e-12 * w.max()
        c = v[:, good] @ ((v[:, good].T @ a["b"]) / w[good])
        tc.table.weight.copy_(c.view(tc.n_pairs, g_, tc.n_weights).permute(0, 2, 1).reshape(-1, g_)
                              .to(tc.table.weight.dtype))
        left = (a["yy"] - 2 * float(c @ a["b"]) + float(c @ a["A"] @ c)) / max(a["n"], 1)
        residual.setdefault(t, {})[rel] = max(left, 0.0) ** 0.5
    return residual


def _accumulate(a: dict, tc, phi: torch.Tensor, y: torch.Tensor, blocks: list) -> None:
    """Add to the normal equations (``a["A"]``, ``a["b"]``, columns (pair, g, q)) the edges
    whose hopping is sum_b phi_g design_b,qk c[pair_b, g, q] with targets y (e, K): the design
    rows (edge, k), columns (g, b, q), with the Gram matrix from per-edge (bQ, bQ) products,
    G x cheaper than D^T D."""
    design = torch.cat([d for _, d in blocks], dim=1)  # (e, bQ, K)
    g_, q_ = phi.shape[1], design.shape[1]
    gram = design @ design.transpose(1, 2)  # (e, bQ, bQ)
    outer = (phi[:, :, None] * phi[:, None, :]).reshape(len(phi), -1)  # (e, G G)
    local = (outer.T @ gram.reshape(len(phi), -1)).view(g_, g_, q_, q_).permute(0, 2, 1, 3).reshape(
        g_ * q_, g_ * q_)
    rhs = torch.einsum("eg,eq->gq", phi, (design @ y[:, :, None])[..., 0]).reshape(-1)
    g = torch.arange(g_)[:, None, None]
    q = torch.arange(tc.n_weights)[None, None, :]
    p = torch.tensor([pair for pair, _ in blocks])[None, :, None]
    cols = (p * g_ * tc.n_weights + g * tc.n_weights + q).reshape(-1)  # (g, b, q) -> global
    a["A"][cols[:, None], cols[None, :]] += local
    a["b"][cols] += rhs
