"""From real-space blocks to bands: H(k), S(k), the generalized eigenproblem, unfolding.

Bloch sums use the *atomic* gauge,
    H_{ia, jb}(k) = sum_R H_ij(R)_{ab} exp(i k . (R + tau_j - tau_i)),
with k Cartesian in 1/A (2*pi included) and R, tau in Angstrom. Eigenvalues equal
the cell gauge's; eigenvectors differ by orbital phases that make unfolding simple:
a primitive translation l maps the Bloch orbital of atom i onto that of the atom at
tau_i + l times exp(-i k . l).

Everything is batched over k-points in torch (CPU or GPU); no loop over atoms, pairs
or orbitals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from .seams import Blocks


@dataclass
class BlockTensors:
    """A ``Blocks`` on a device: pair indices, Cartesian pair vectors, padded blocks."""

    i: torch.Tensor  # (P,)
    j: torch.Tensor  # (P,)
    vec: torch.Tensor  # (P, 3) A: R . cell + tau_j - tau_i
    h: torch.Tensor  # (P, nmax, nmax) eV
    s: torch.Tensor  # (P, nmax, nmax)
    flat: torch.Tensor  # (nnz,) index row * M + col in H(k) of each real block element
    valid: torch.Tensor  # (nmax, nmax) or (P, nmax, nmax) mask of real block elements
    n_orbitals: int
    overlap_floor: float = 0.0  # canonical orthogonalisation below this overlap eigenvalue (``bloch_pair``)

    @classmethod
    def from_blocks(cls, blocks: Blocks, positions: np.ndarray, cell: np.ndarray,
                    device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float64) -> "BlockTensors":
        pos = np.asarray(positions, dtype=float)
        vec = blocks.R @ np.asarray(cell) + pos[blocks.j] - pos[blocks.i]
        nmax = blocks.h.shape[1]
        m = blocks.n_orbitals
        start = blocks.offsets()
        sub = np.arange(nmax)
        rows = start[blocks.i][:, None, None] + sub[None, :, None]
        cols = start[blocks.j][:, None, None] + sub[None, None, :]
        atom_valid = sub[None, :] < blocks.norb[:, None]
        valid = atom_valid[blocks.i][:, :, None] & atom_valid[blocks.j][:, None, :]
        flat = np.broadcast_to(rows * m + cols, valid.shape)[valid]
        t = lambda x, dt=dtype: torch.as_tensor(np.ascontiguousarray(x), dtype=dt, device=device)
        return cls(i=t(blocks.i, torch.long), j=t(blocks.j, torch.long), vec=t(vec), h=t(blocks.h),
                   s=t(blocks.s), flat=t(flat, torch.long), valid=t(valid, torch.bool), n_orbitals=m,
                   overlap_floor=float(blocks.meta.get("overlap_floor", 0.0)))


def bloch_sum(bt: BlockTensors, k_cart: torch.Tensor, which: str = "h") -> torch.Tensor:
    """H(k) or S(k) (``which`` = "h" or "s") at Cartesian k-points (K, 3): (K, M, M) complex.

    Every real block element is scattered once into its (row, col) of the dense matrix;
    pairs with the same (i, j) but other R add up there, as a Bloch sum does.
    """
    x = bt.h if which == "h" else bt.s
    k = torch.as_tensor(k_cart, dtype=x.dtype, device=x.device).reshape(-1, 3)
    phase = torch.exp(1j * (k @ bt.vec.T))  # (K, P)
    vals = (phase[:, :, None, None] * x[None])[:, bt.valid]  # (K, nnz)
    m = bt.n_orbitals
    dense = torch.zeros(len(k), m * m, dtype=phase.dtype, device=x.device)
    dense.index_add_(1, bt.flat, vals)
    return dense.reshape(len(k), m, m)


DROPPED_EV = 1.0e3  # energy of the directions canonical orthogonalisation drops (``bloch_pair``)


def bloch_pair(bt: BlockTensors, k_cart: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """H(k) and S(k) (K, M, M) of ``bt`` at Cartesian k-points (K, 3), ready for the solvers.

    A basis that is nearly linearly dependent (GFN1-xTB's s, p, d on MoS2: smallest overlap
    eigenvalue 0.004 at Gamma) has directions in which the pair blocks, cut at r_c, leave S(k)
    slightly indefinite. With ``bt.overlap_floor`` > 0 these are removed by canonical
    orthogonalisation (Löwdin; Szabo & Ostlund, Modern Quantum Chemistry, section 3.4.5):
    with S = U diag(s) U^H and P the projector on the eigenvectors with s < floor,

        S' = U diag(s if s >= floor else 1) U^H,   H' = (1 - P) H (1 - P) + DROPPED_EV P,

    so H' c = E S' c has the kept space's eigenpairs exactly, with c^H S c = c^H S' c = 1,
    and the dropped directions at DROPPED_EV eV, with no weight on any state below it.
    """
    h, s = bloch_sum(bt, k_cart, "h"), bloch_sum(bt, k_cart, "s")
    if bt.overlap_floor <= 0.0:
        return h, s
    s = 0.5 * (s + s.mH)
    w, u = torch.linalg.eigh(s)
    drop = w < bt.overlap_floor
    ud = u * drop[:, None, :].to(u.dtype)
    p = ud @ ud.mH
    q = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device) - p
    s_kept = (u * torch.where(drop, torch.ones_like(w), w)[:, None, :].to(u.dtype)) @ u.mH
    h_kept = q @ h @ q + DROPPED_EV * p
    return 0.5 * (h_kept + h_kept.mH), 0.5 * (s_kept + s_kept.mH)


def solve_generalized(h: torch.Tensor, s: torch.Tensor, window: tuple[float, float] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve H c = E S c for a batch (K, M, M) by Cholesky reduction.

    Returns energies (K, nb), eigenvectors (K, M, nb) normalised as c^H S c = 1, and
    a mask (K, nb) of the states inside ``window`` = (emin, emax) eV (all if None).
    The returned nb is the largest count inside the window over the batch, so the
    arrays stay rectangular; states outside the window carry mask False. On a CPU a
    window is solved for its states alone (``_window_solve``).
    """
    if window is not None and h.device.type == "cpu":
        return _window_solve(h, s, window)
    chol = torch.linalg.cholesky(s)
    a = torch.linalg.solve_triangular(chol, h, upper=False)
    a = torch.linalg.solve_triangular(chol, a.mH, upper=False).mH
    a = 0.5 * (a + a.mH)
    e, y = torch.linalg.eigh(a)
    if window is not None:
        inside = (e >= window[0]) & (e <= window[1])
        lo = int(inside.float().argmax(dim=1).min())
        hi = int((inside.shape[1] - inside.flip(1).float().argmax(dim=1)).max())
        e, y, inside = e[:, lo:hi], y[:, :, lo:hi], inside[:, lo:hi]
    else:
        inside = torch.ones_like(e, dtype=torch.bool)
    c = torch.linalg.solve_triangular(chol.mH, y, upper=True)
    return e, c, inside


def _window_solve(h: torch.Tensor, s: torch.Tensor, window: tuple[float, float]):
    """``solve_generalized`` with a window, on a CPU, one k at a time in LAPACK: Cholesky
    (potrf), the reduction to a standard problem in one pass (hegst, half the work of two
    triangular solves), the eigenpairs inside the window alone (MRRR, heevr: half the time
    of a full decomposition at a spectral map's 15 % of the states) and the back-substitution
    of those. Padded to the largest count (energies at the window's top, vectors zero, mask False)."""
    import scipy.linalg
    from scipy.linalg import lapack

    hs, ss = h.numpy(), s.numpy()
    potrf, hegst = lapack.get_lapack_funcs(("potrf", "hegst" if np.iscomplexobj(hs) else "sygst"), dtype=hs.dtype)
    found = []
    for hk, sk in zip(hs, ss):  # one O(M^3) factorisation per k-point
        chol, info = potrf(sk, lower=1, clean=1)
        if info:
            raise np.linalg.LinAlgError(f"the overlap matrix is not positive definite (potrf info {info})")
        reduced, info = hegst(hk, chol, lower=1)
        ev, y = scipy.linalg.eigh(reduced, lower=True, subset_by_value=window, driver="evr", check_finite=False)
        found.append((ev, scipy.linalg.solve_triangular(chol, y, lower=True, trans="C", check_finite=False)))
    nb = max(1, max(len(ev) for ev, _ in found))
    k, m = hs.shape[0], hs.shape[1]
    e = np.full((k, nb), float(window[1]), dtype=found[0][0].dtype)
    c = np.zeros((k, m, nb), dtype=hs.dtype)
    inside = np.zeros((k, nb), dtype=bool)
    for i, (ev, vec) in enumerate(found):
        e[i, :len(ev)], c[i, :, :len(ev)], inside[i, :len(ev)] = ev, vec, True
    return torch.from_numpy(e), torch.from_numpy(c), torch.from_numpy(inside)


def _s_orthonormal(y: torch.Tensor, sy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, S q) with q = y r^-H S-orthonormal (q^H S q = 1), by Cholesky-QR; ``sy`` = S y."""
    gram = y.mH @ sy
    r = torch.linalg.cholesky(0.5 * (gram + gram.mH))
    right = lambda x: torch.linalg.solve_triangular(r, x.mH, upper=False).mH  # x r^-H
    return right(y), right(sy)


def lu_factor(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.lu_factor`` of a batch (K, M, M), one matrix at a time on a CPU: torch
    2.13's batched CPU LU (MKL) returns garbage pivots once ``torch.set_num_threads`` has
    set more than one thread (seen here; tests/test_electrons.py checks it). Each LU is
    O(M^3), so the loop over the batch costs nothing next to it."""
    if a.device.type != "cpu" or a.dim() == 2:
        return torch.linalg.lu_factor(a)
    factors = [torch.linalg.lu_factor(x) for x in a]
    return torch.stack([f[0] for f in factors]), torch.stack([f[1] for f in factors])


def solve_near(h: torch.Tensor, s: torch.Tensor, sigma: float, n_states: int,
               guess: torch.Tensor | None = None, tol: float = 1e-5,
               max_iter: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_states`` eigenpairs of H c = E S c closest to ``sigma`` (eV), batched over k.

    Shift-invert block subspace iteration: one LU of (H - sigma S) per k (2/3 M^3, far
    cheaper than a full eigendecomposition's ~9 M^3; in single precision), then a block of n + 8 vectors is
    iterated with the operator T = (H - sigma S)^-1 S and projected on T itself (Ritz
    values theta = 1 / (E - sigma), largest |theta| wanted): projecting H instead lets
    mixtures of remote states pose as interior eigenvalues. Each step costs one LU
    solve and one product with S (S q is carried along). Converged when every wanted
    residual |H c - E S c| is below ``tol`` (eV; eigenvalue errors ~ tol^2 / gap).
    ``guess`` (K, M, g), e.g. the undisplaced lattice's eigenvectors, starts the block
    (the rest, and any all-zero column of ``guess``, is random), so a thermal sample
    converges in a few steps. Returns
    energies (K, n) ascending and eigenvectors (K, M, n) with c^H S c = 1.
    """
    kk, m, _ = h.shape
    block = min(m, n_states + 8)
    # The LU is the cost (2/3 M^3 per k); in single precision it is about twice as fast.
    # Each solve with it gets one step of iterative refinement against H - sigma S in full
    # precision: without it the single-precision rounding, which depends on the basis of
    # the block, steers the iteration, and two engines that start from differently rotated
    # (degenerate) warm-start vectors stop at points 1e-8 eV apart; with it they agree to
    # 1e-13 eV (the Ritz values, Rayleigh quotients and the residual test use H and S in
    # full precision anyway).
    # If the residual stalls at single precision's floor (large cells), the LU is redone
    # in full precision and the iteration goes on from where it is.
    low = torch.complex64 if h.is_complex() else torch.float32
    shifted = h - sigma * s
    lu, piv = lu_factor(shifted.to(low))

    def apply_t(sq):  # T q = (H - sigma S)^-1 S q
        w = torch.linalg.lu_solve(lu, piv, sq.to(lu.dtype)).to(h.dtype)
        if lu.dtype != h.dtype:  # one step of iterative refinement: full-precision solves
            w = w + torch.linalg.lu_solve(lu, piv, (sq - shifted @ w).to(lu.dtype)).to(h.dtype)
        return w

    best, stalled = float("inf"), 0
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(kk, m, block, generator=gen, dtype=h.real.dtype).to(device=h.device, dtype=h.dtype)
    if guess is not None:
        g = min(guess.shape[2], block - 4)  # keep a few random directions
        given = guess[:, :, :g].to(x.dtype)
        x[:, :, :g] = torch.where(given.abs().sum(dim=1, keepdim=True) > 0, given, x[:, :, :g])
    q, sq = _s_orthonormal(x, s @ x)
    for it in range(max_iter):
        w = apply_t(sq)
        t = sq.mH @ w  # q^H S T q, Hermitian
        theta, z = torch.linalg.eigh(0.5 * (t + t.mH))
        wanted = torch.argsort(theta.abs(), dim=1, descending=True)[:, :n_states]
        pick = lambda x: torch.gather(x @ z, 2, wanted[:, None, :].expand(-1, m, -1))
        v, sv = pick(q), pick(sq)  # S-orthonormal Ritz vectors and S v
        hv = h @ v
        e = torch.einsum("kmn,kmn->kn", v.conj(), hv).real  # Rayleigh quotients
        resid = (hv - sv * e[:, None, :]).abs().amax()
        if resid < tol:
            solve_near.iterations = it + 1
            break
        if lu.dtype != h.dtype:
            stalled = stalled + 1 if resid > 0.9 * best else 0
            best = min(best, float(resid))
            if stalled >= 3:
                lu, piv = lu_factor(shifted)
        y = w @ z
        q, sq = _s_orthonormal(y, s @ y)
    else:
        raise RuntimeError(f"shift-invert iteration did not converge (residual {float(resid):.1e} eV)")
    order = torch.argsort(e, dim=1)
    return torch.gather(e, 1, order), torch.gather(v, 2, order[:, None, :].expand(-1, m, -1))


def bloch_matrices(blocks: Blocks, k_frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H(k), S(k) in the cell gauge for fractional k of the blocks' own cell (numpy, small jobs)."""
    zeros = np.zeros((blocks.n_atoms, 3))
    cell = np.eye(3)  # with tau = 0 and cell = 1, k . R is 2 pi k_frac . R
    bt = BlockTensors.from_blocks(blocks, zeros, cell)
    k = 2 * np.pi * np.atleast_2d(np.asarray(k_frac, dtype=float))
    h, s = bloch_pair(bt, torch.as_tensor(k))
    return h.numpy(), s.numpy()


def solve_bands(h_k: np.ndarray, s_k: np.ndarray) -> np.ndarray:
    """All eigenvalues (K, M) in eV of H(k) c = E S(k) c."""
    e, _, _ = solve_generalized(torch.as_tensor(h_k), torch.as_tensor(s_k))
    return e.numpy()


# --- unfolding ---------------------------------------------------------------------------

CHUNK_BYTES = 256 * 2 ** 20  # memory of one gathered chunk in the unfolding weights


def translation_chunks(n: int, bytes_per_translation: int, budget: int | None = None) -> list[slice]:
    """Slices of the n primitive translations, each gathering at most ``budget`` bytes
    (default ``CHUNK_BYTES``), one translation at least."""
    step = max(1, int((CHUNK_BYTES if budget is None else budget) // max(bytes_per_translation, 1)))
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]


class Unfolder:
    """Spectral weights of supercell states on primitive-cell wavevectors.

    For an n1 x n2 supercell of a primitive cell, the N = n1 n2 primitive translations
    l inside the supercell permute the (ideal) atoms. The weight of the supercell
    state c (solved at primitive k, atomic gauge) on the primitive wavevector k + G is

        W(k + G) = Re (1/N) sum_l exp(i G . l) sum_{ia} c_{ia} conj[(S c)_{perm_l(i), a}],

    i.e. <c| P_{k+G} |c> with the projector onto the k + G character of the primitive
    translations, in the non-orthogonal basis (the overlap S enters once). Weights over
    the N vectors k + G that fold onto the same supercell point sum to c^H S c = 1.
    The ideal mapping perm_l is used for displaced samples too (Popescu-Zunger).
    """

    def __init__(self, primitive_cell: np.ndarray, ideal_positions: np.ndarray,
                 supercell: np.ndarray, norb: np.ndarray, tol: float = 1e-3):
        prim = np.asarray(primitive_cell, dtype=float)
        sc = np.asarray(supercell, dtype=float)
        pos = np.asarray(ideal_positions, dtype=float)
        n_cells = abs(np.linalg.det(sc[:2, :2]) / np.linalg.det(prim[:2, :2]))
        if abs(n_cells - round(n_cells)) > 1e-6:
            raise ValueError("the supercell is not a multiple of the primitive cell")
        n_cells = int(round(n_cells))
        # primitive translations inside the supercell: integer combos with frac in [0, 1)
        m = int(np.ceil(np.sqrt(n_cells))) * 3
        grid = np.array([(a, b) for a in range(-m, m + 1) for b in range(-m, m + 1)])
        trans = grid @ prim[:2]
        frac = np.linalg.solve(sc[:2, :2].T, trans[:, :2].T).T
        keep = np.all((frac > -1e-8) & (frac < 1 - 1e-8), axis=1)
        self.translations = trans[keep]  # (N, 3) Cartesian, A
        if len(self.translations) != n_cells:
            raise ValueError(f"found {len(self.translations)} primitive translations, expected {n_cells}")
        # atom permutations: perm[l, i] = index of the atom at tau_i + l (periodic in-plane)
        inv = np.linalg.inv(sc[:2, :2])
        def key(p):
            f = np.mod(p[:, :2] @ inv, 1.0)
            f[f >= 1.0] = 0.0  # mod of a tiny negative number rounds to 1.0
            return np.column_stack([f, p[:, 2] / 100.0])
        tree = cKDTree(key(pos), boxsize=[1.0, 1.0, 1e6])
        perms = []
        for l in self.translations:
            d, idx = tree.query(key(pos + l))
            if np.max(d) > tol:
                raise ValueError("the ideal positions are not a supercell of the primitive cell")
            perms.append(idx)
        self.perm = np.array(perms)  # (N, n_atoms)
        if any(len(set(p)) != len(pos) for p in self.perm):
            raise ValueError("primitive translations do not permute the atoms")
        # orbital permutation in the compact orbital layout (norb per atom)
        start = np.concatenate([[0], np.cumsum(norb)[:-1]])
        atom_of = np.repeat(np.arange(len(pos)), norb)
        sub = np.arange(int(np.sum(norb))) - start[atom_of]
        self.orbital_perm = start[self.perm[:, atom_of]] + sub[None, :]  # (N, M)
        self.n_cells = n_cells

    def weights(self, c: torch.Tensor, s: torch.Tensor, g_cart: np.ndarray,
                k_index: np.ndarray | None = None) -> torch.Tensor:
        """Weights (K, G, nb) of states c (K, M, nb) solved at k with overlaps s (K, M, M)
        on the primitive wavevectors k + g for each Cartesian g in ``g_cart`` (G, 3). With
        ``k_index`` (G,): (G, nb), g[i] paired with the states of k[k_index[i]] only (a path)."""
        sc = s @ c  # (K, M, nb)
        perm = torch.as_tensor(self.orbital_perm, device=c.device)
        # overlap_l[k, l, n] = sum_m c[k, m, n] conj(sc[k, perm_l(m), n]), a few translations
        # l at a time: the gather sc[:, perm] of all N at once is (K, N, M, nb) (10 GB for
        # the band map of a 12x12 Monte Carlo cell)
        overlap_l = c.new_empty(c.shape[0], perm.shape[0], c.shape[2])
        for ls in translation_chunks(perm.shape[0], c[0].numel() * c.shape[0] * c.element_size()):
            overlap_l[:, ls] = torch.einsum("kmn,klmn->kln", c, sc[:, perm[ls]].conj())
        g = torch.as_tensor(np.asarray(g_cart, dtype=float), dtype=c.real.dtype, device=c.device)
        t = torch.as_tensor(self.translations, dtype=c.real.dtype, device=c.device)
        phase = (torch.exp(1j * (g @ t.T)) / self.n_cells).to(overlap_l.dtype)  # (G, N)
        if k_index is not None:
            return torch.einsum("gl,gln->gn", phase, overlap_l[torch.as_tensor(k_index, device=c.device)]).real
        return torch.einsum("gl,kln->kgn", phase, overlap_l).real


# --- large cells: sparse matrices and a sparse shift-invert solver ----------------------------

def sparse_bloch(blocks: Blocks, positions: np.ndarray, cell: np.ndarray, k_cart: np.ndarray):
    """H(k), S(k) as scipy.sparse CSR matrices (complex) at one Cartesian k (1/A), in the
    atomic gauge of ``bloch_sum`` (phases exp(i k . (R + tau_j - tau_i))): for cells whose
    dense M x M matrices do not fit (the 11,164-atom magic-angle cell)."""
    import scipy.sparse as sp

    pos = np.asarray(positions, dtype=float)
    vec = blocks.R @ np.asarray(cell) + pos[blocks.j] - pos[blocks.i]
    phase = np.exp(1j * (vec @ np.asarray(k_cart, dtype=float)))
    nmax, m = blocks.h.shape[1], blocks.n_orbitals
    start = blocks.offsets()
    sub = np.arange(nmax)
    atom_valid = sub[None, :] < blocks.norb[:, None]
    valid = atom_valid[blocks.i][:, :, None] & atom_valid[blocks.j][:, None, :]
    rows = np.broadcast_to(start[blocks.i][:, None, None] + sub[None, :, None], valid.shape)[valid]
    cols = np.broadcast_to(start[blocks.j][:, None, None] + sub[None, None, :], valid.shape)[valid]
    ph = np.broadcast_to(phase[:, None, None], valid.shape)[valid]
    out = []
    for x in (blocks.h, blocks.s):
        mat = sp.csr_matrix((x[valid] * ph, (rows, cols)), shape=(m, m))
        out.append(0.5 * (mat + mat.getH()))
    return out[0], out[1]


def sparse_eigs_near(h, s, sigma: float, n_states: int) -> np.ndarray:
    """The ``n_states`` eigenvalues (eV, ascending) of H c = E S c closest to ``sigma``:
    ARPACK's shift-invert Lanczos (one sparse LU of H - sigma S). An identity S (orthogonal
    models) is passed as the plain problem."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla

    identity = (s - sp.identity(s.shape[0], format="csr")).count_nonzero() == 0 if s is not None else True
    vals = sla.eigsh(h, k=n_states, M=None if identity else s, sigma=sigma, which="LM",
                     return_eigenvectors=False)
    return np.sort(vals.real)
