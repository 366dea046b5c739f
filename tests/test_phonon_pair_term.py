"""HedgeNet-Phonon with an explicit pair energy on the inter edges (``pair_relations``).

Tiny float64 models (as in test_phonon_model.py) on trilayers and bilayers of 2x2 cells. The
pair term's point is physics: a stack's interfaces couple independently, so the interlayer
energy of a trilayer is the sum of its two interfaces' (inclusion-exclusion over the layers),
which the message-passing inter relation does not give.
"""

import numpy as np
import pytest
import torch

from mlepi_core.graph import build_graph
from mlepi_core.interlayer import trilayer
from mlepi_core.models import HedgeNetPhonon, HedgeNetPhononConfig, load_model, save_model
from mlepi_core.models.pair import PairEnergy, normal_projectors
from mlepi_core.training.pair_fit import interlayer_fit_cells
from mlepi_core.structures import bilayer, supercell

CUTOFFS = {"intra": 3.0, "inter": 4.5}
TINY = dict(hidden_irreps="4x0e+4x1o", max_ell=2, num_layers=2, correlation=3, num_bessel=4,
            radial_hidden=(8,), readout_hidden=4, atomic_energies_ev={"C": -7.3}, energy_scale_ev=0.5,
            avg_num_neighbors={"intra": 8.0, "inter": 8.0})


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(pair: bool, seed: int = 0) -> HedgeNetPhonon:
    torch.manual_seed(seed)
    cfg = HedgeNetPhononConfig(cutoffs=CUTOFFS, pair_relations=("inter",) if pair else (),
                               pair_basis=12, pair_r_min=2.8, **TINY)
    model = HedgeNetPhonon(cfg).to(torch.float64)
    if pair:  # a non-trivial pair function: random coefficients of 1-10 meV
        with torch.no_grad():
            model.pair_terms["inter"].radial.normal_(0.0, 0.005)
            model.pair_terms["inter"].registry.normal_(0.0, 0.002)
    return model


def energy(model: HedgeNetPhonon, atoms) -> float:
    return float(model(build_graph(atoms, CUTOFFS), compute_forces=False)["energy"][0].detach())


def layers(atoms, keep: set[int]):
    """The atoms of the layers in ``keep``, at their positions in the stack."""
    return atoms[[k for k, l in enumerate(atoms.arrays["layer"]) if int(l) in keep]]


def interface_excess(model, stack) -> float:
    """E(123) - E(12) - E(23) + E(2), eV: zero when the outer layers interact only through
    the middle one's interfaces, each on its own."""
    return (energy(model, stack) - energy(model, layers(stack, {0, 1})) - energy(model, layers(stack, {1, 2}))
            + energy(model, layers(stack, {1})))


def shaken_trilayer(stacking: str, seed: int = 1):
    t = supercell(trilayer(stacking, d=3.0), 2)  # outer layers 6 A apart: beyond the 4.5 A cutoff
    t.positions += np.random.default_rng(seed).normal(0.0, 0.05, t.positions.shape)
    return t


@pytest.mark.parametrize("stacking", ["ABA", "ABC"])
def test_a_pair_term_couples_each_interface_on_its_own(stacking):
    stack = shaken_trilayer(stacking)
    with_pair = interface_excess(tiny(pair=True), stack)
    assert abs(with_pair) < 1e-10  # eV, rounding of energies of ~-90 eV
    # the message-passing inter relation lets the middle layer carry one interface's
    # state to the other: the same test fails by far more than rounding
    assert abs(interface_excess(tiny(pair=False), stack)) > 1e-6


def test_pair_forces_are_minus_the_gradient():
    model = tiny(pair=True)
    atoms = shaken_trilayer("ABA", seed=2)
    graph = build_graph(atoms, CUTOFFS)
    forces = model(graph)["forces"].detach().numpy()
    h, rng = 1e-4, np.random.default_rng(3)
    for a in rng.choice(len(atoms), 4, replace=False):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, c] += h
            minus.positions[a, c] -= h
            fd = -(energy(model, plus) - energy(model, minus)) / (2 * h)
            assert forces[a, c] == pytest.approx(fd, abs=1e-8)


def test_pair_energy_is_half_of_each_pair_on_each_atom():
    """Two atoms of different elements and layers, flat layers (normals along z): e_ij from its
    definition with rho^2 the in-plane distance squared, split evenly between the two atoms."""
    term = PairEnergy(n_elements=2, r_max=4.5, num_basis=12, r_min=2.8, registry_basis=4).to(torch.float64)
    with torch.no_grad():
        term.radial.normal_(0.0, 0.01)
        term.registry.normal_(0.0, 0.01)
    r_vec = torch.tensor([0.3, -0.2, 3.3], dtype=torch.float64)
    vectors = torch.stack([r_vec, -r_vec])
    index = torch.tensor([[0, 1], [1, 0]])
    species = torch.tensor([0, 1])
    zz = torch.zeros(2, 3, 3, dtype=torch.float64)
    zz[:, 2, 2] = 1.0
    per_atom = term(species, vectors, index, zz)
    phi = term.basis(r_vec.norm()[None])[0]
    chi = term.registry_basis(torch.tensor([0.3 ** 2 + 0.2 ** 2], dtype=torch.float64))[0]
    row = term.pair_row[0, 1]
    e = (phi * (term.radial[row] + term.registry[row] @ (2 * chi))).sum()
    torch.testing.assert_close(per_atom, torch.stack([e, e]) / 2)
    # one function per unordered pair: B-N is N-B, B-B another
    assert term.pair_row[1, 0] == row and term.pair_row[0, 0] != row
    # smooth at the cutoff
    far = torch.tensor([[0.0, 0.0, 4.5], [0.0, 0.0, -4.5]], dtype=torch.float64)
    assert torch.abs(term(species, far, index, zz)).max() < 1e-12


def test_normal_projectors_follow_a_tilted_sheet_and_have_finite_gradients():
    """A graphene sheet tilted by 25 degrees: each atom's projector is n n^T of the tilted
    normal; with three neighbours at 120 degrees the in-plane eigenvalues are degenerate, and
    the projector's gradient is finite there."""
    sheet = supercell(bilayer("AB", d=3.0), 2)
    sheet = sheet[[k for k, l in enumerate(sheet.arrays["layer"]) if l == 0]]
    sheet.rotate(25.0, "x", rotate_cell=True)
    graph = build_graph(sheet, {"intra": 2.0})
    pos = graph.positions.clone().requires_grad_(True)
    v = graph.edge_vectors("intra", pos)
    index = graph.edges["intra"].index
    p = normal_projectors(len(sheet), v, index, torch.ones(index.shape[1], dtype=torch.bool), 2.0)
    n = torch.tensor([0.0, -np.sin(np.radians(25.0)), np.cos(np.radians(25.0))], dtype=torch.float64)
    torch.testing.assert_close(p.detach(), (n[:, None] * n[None, :]).expand(len(sheet), 3, 3))
    (grad,) = torch.autograd.grad((p[:, 0, 2] ** 2 + p[:, 1, 1]).sum(), pos)
    assert torch.isfinite(grad).all()


def test_pair_term_is_invariant_and_survives_saving(tmp_path):
    model = tiny(pair=True)
    atoms = shaken_trilayer("ABC", seed=4)
    e0 = energy(model, atoms)
    turned = atoms.copy()
    turned.rotate(37.0, "z", rotate_cell=True)
    turned.translate([0.4, -1.1, 0.3])
    assert energy(model, turned) == pytest.approx(e0, abs=1e-10)
    again = load_model(save_model(tmp_path / "m", model), kind="phonon")
    assert again.network.config.pair_relations == ("inter",)
    energies, _ = again.energies_forces([atoms])
    assert energies[0] == pytest.approx(e0, abs=1e-9)


def test_pair_relations_are_checked():
    with pytest.raises(ValueError, match="no cutoff"):
        HedgeNetPhonon(HedgeNetPhononConfig(cutoffs=CUTOFFS, pair_relations=("between",), **TINY))
    with pytest.raises(ValueError, match="at least one must pass messages"):
        HedgeNetPhonon(HedgeNetPhononConfig(cutoffs={"inter": 4.5}, pair_relations=("inter",), **TINY))


def test_zero_pair_term_and_no_inter_messages_see_no_other_layer():
    """Before training the pair term is zero: a bilayer's energy is then its two layers'."""
    torch.manual_seed(0)
    model = HedgeNetPhonon(HedgeNetPhononConfig(cutoffs=CUTOFFS, pair_relations=("inter",), **TINY)).to(torch.float64)
    ab = supercell(bilayer("AB", d=3.0), 2)
    assert energy(model, ab) == pytest.approx(energy(model, layers(ab, {0})) + energy(model, layers(ab, {1})), abs=1e-10)


# --- the least-squares start ----------------------------------------------------------------

def small_fit_cells(bilayer_atoms, seed=0, **_):
    return interlayer_fit_cells(bilayer_atoms, seed=seed, shifts=3, distances=(-0.1, 0.0, 0.15),
                                near_ground=10, strained_shifts=2, noisy=40)


@pytest.fixture(scope="module")
def pair_reference(tmp_path_factory):
    """A 'reference' that is itself an intra-only network with a random pair term, saved."""
    from mlepi_core.models import save_model

    return save_model(tmp_path_factory.mktemp("ref") / "model", tiny(pair=True, seed=7))


def test_the_fit_recovers_a_pair_term_it_can_represent(pair_reference):
    """Least squares on the reference's interlayer energies and layer forces of 100 bilayers
    gives back its pair term: on other noisy cells the interlayer energy and force agree to
    rounding-level differences."""
    from mlepi_core.models import load_model
    from mlepi_core.training.pair_fit import fit_pair_term, interlayer_targets

    reference = load_model(pair_reference, kind="phonon")
    ab = bilayer("AB", d=3.0)
    fitted = HedgeNetPhonon(HedgeNetPhononConfig(cutoffs=CUTOFFS, pair_relations=("inter",), pair_basis=12,
                                                 pair_r_min=2.8, **TINY)).to(torch.float64)
    fit = fit_pair_term(fitted, reference, ab, ridge=1e-14, cells=small_fit_cells(ab))
    assert fit["energy_rmse_mev_per_atom"] < 1e-6 and fit["layer_force_rmse_mev_per_a"] < 1e-6
    from mlepi_core.models import MLForceModel

    held_out = small_fit_cells(ab, seed=5)[-10:]  # noisy 2x2 cells the fit never saw
    e_ref, f_ref = interlayer_targets(reference, held_out)
    e_fit, f_fit = interlayer_targets(MLForceModel(fitted), held_out)
    np.testing.assert_allclose(e_fit, e_ref, atol=1e-8)  # eV per atom (energies of ~1e-3 eV)
    np.testing.assert_allclose(f_fit, f_ref, atol=1e-7)


def test_training_starts_from_the_fit_and_keeps_it(tmp_path, pair_reference, monkeypatch):
    """``pair_fit_reference``: the new run's pair term is the fit, logged and recorded in the
    metrics, and stays as fitted while the rest trains (unless ``train_pair``)."""
    from ase.calculators.morse import MorsePotential

    from mlepi_core.data.extxyz import write_extxyz
    from mlepi_core.training import TrainConfig, Trainer
    from mlepi_core.training import pair_fit

    monkeypatch.setattr(pair_fit, "interlayer_fit_cells", small_fit_cells)
    rng, calc, frames = np.random.default_rng(0), MorsePotential(epsilon=1.0, r0=1.42, rho0=4.0, rcut1=1.8, rcut2=2.4), []
    for k in range(4):
        a = supercell(bilayer("AB", d=3.0), 2)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.calc = calc
        a.info["energy"], a.arrays["forces"] = a.get_potential_energy(), a.get_forces()
        a.calc = None
        a.info["split"] = ["train", "train", "val", "test"][k]
        frames.append(a)
    data = write_extxyz(tmp_path / "set.xyz", frames)
    model = {k: (list(v) if isinstance(v, tuple) else v) for k, v in TINY.items()
             if k not in ("atomic_energies_ev", "energy_scale_ev")}
    for train_pair in (False, True):
        cfg = TrainConfig.from_dict(dict(
            data=str(data), output_dir=str(tmp_path / f"run_{train_pair}"),
            model={**model, "cutoffs": CUTOFFS, "pair_relations": ["inter"], "pair_basis": 12, "pair_r_min": 2.8},
            dtype="float64", batch_size=1, max_steps=3, lr=0.05, progress=False, checkpoint_every_steps=1000,
            pair_fit_reference=str(pair_reference), train_pair=train_pair))
        trainer = Trainer(cfg)
        start = trainer.model.pair_terms["inter"].registry.detach().clone()
        assert start.abs().max() > 1e-4  # the fit, not the zero start
        assert "pair term on 'inter' fitted" in (tmp_path / f"run_{train_pair}" / "train.log").read_text()
        trainer.run()
        moved = (trainer.model.pair_terms["inter"].registry - start).abs().max()
        assert (moved > 0) == train_pair
        metrics = trainer.finish()
        assert metrics["pair_fit"]["inter"]["energy_rmse_mev_per_atom"] < 1e-3


@pytest.mark.parametrize("num_layers", [1, 2])
def test_tiles_of_a_large_structure_reach_the_partners_normals(num_layers):
    """Tile by tile (each tile's receptive subgraph) equals the whole structure: a pair term
    with normals needs its partner's in-layer neighbours, two edges out, even after one
    message-passing layer."""
    from mlepi_core.models import MLForceModel

    torch.manual_seed(0)
    cfg = HedgeNetPhononConfig(cutoffs={"intra": 2.0, "inter": 3.5}, pair_relations=("inter",), pair_basis=8,
                               pair_r_min=2.8, pair_registry=3, **{**TINY, "num_layers": num_layers})
    network = HedgeNetPhonon(cfg).to(torch.float64)
    with torch.no_grad():
        network.pair_terms["inter"].registry.normal_(0.0, 0.01)
    big = supercell(bilayer("AB", d=3.0), 12)
    big.positions += np.random.default_rng(5).normal(scale=0.05, size=big.positions.shape)
    (e_ref,), (f_ref,) = MLForceModel(network, max_batch_atoms=1024).energies_forces([big])
    (e_tiled,), (f_tiled,) = MLForceModel(network, max_batch_atoms=16).energies_forces([big])
    assert e_tiled == pytest.approx(e_ref, rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(f_tiled, f_ref, atol=1e-10)


def test_the_fit_cells_span_the_interlayer_distances_of_the_phonon_set():
    """A linear pair term is unconstrained where no fit cell puts a pair, so the rigid fit cells
    reach past both ends of the distances the phonon set draws (``PhononSetConfig.d_range``)
    about the reference's equilibrium distance."""
    from mlepi_core.data.generate import PhononSetConfig

    ab = bilayer("AB")
    cells = interlayer_fit_cells(ab, shifts=1, near_ground=0, strained_shifts=1, noisy=0)
    d0 = np.ptp(ab.positions[:, 2])
    gaps = np.array([np.ptp(c.positions[:, 2]) for c in cells])
    low, high = PhononSetConfig().d_range
    assert gaps.min() < low - 0.05 and gaps.max() > high + 0.05
    assert gaps.min() < d0 < gaps.max()
