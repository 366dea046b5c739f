"""Commands that look at a structure: demo, build, info, phonons, bands, the continuum model,
twisted bilayers near the magic angle, and the dashboard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..files import write_atomic, write_text_atomic
from ..limits import LIMITS, check_atoms, check_supercell
from ..model_names import (force_model_from_name, hamiltonian_model_from_name, model_identity,
                           relaxation_force_model)
from ..structures import StructureError
from .common import check_output_dir, check_output_file, structure_from_arg


def cmd_demo(args) -> int:
    """A short tour: build AB bilayer graphene, its graph, reference phonons and bands."""
    from ..electrons import bloch_matrices, solve_bands
    from ..graph import build_graph
    from ..phonons import harmonic_phonons, relax_positions
    from ..reference.lammps_forces import EmpiricalForceReference
    from ..reference.tblite_electrons import GFN1Reference
    from ..structures import bilayer, supercell
    from ..units import THZ_TO_CM1

    t0 = time.time()
    prim = bilayer("AB")
    cell = supercell(prim, 6)
    g = build_graph(cell)
    print(f"AB bilayer graphene 6x6x1: {len(cell)} atoms, "
          f"{len(g.edges['intra'])} intra-layer and {len(g.edges['inter'])} inter-layer edges (r_c 6 A)")
    forces = EmpiricalForceReference()
    phonon = harmonic_phonons(relax_positions(prim, forces), forces, 6)
    freqs = np.sort(phonon.run_qpoints([[0, 0, 0]]).frequencies[0]) * THZ_TO_CM1
    print(f"Gamma phonons, {forces.intralayer.upper()}+KC reference (cm^-1): "
          + " ".join(f"{f:.0f}" for f in freqs))
    ref = GFN1Reference()
    res = ref.solve(cell)
    blocks = ref.split_blocks(cell, res)
    e = solve_bands(*bloch_matrices(blocks, [[0, 0, 0]]))[0]
    n_occ = int(round(res.occupations.sum() / 2))
    mid = 0.5 * (e[n_occ - 1] + e[n_occ])
    near = e[(e > mid - 0.5) & (e < mid + 0.5)] - mid
    print("GFN1-xTB at Gamma of the 6x6 cell (K and K' fold here), levels within 0.5 eV of "
          "mid-gap (eV): " + " ".join(f"{x:+.3f}" for x in near))
    print(f"interlayer coupling gamma_1 = {near.max():.3f} eV (split-off bands at K; "
          f"GFN1-xTB underbinds it, DFT gives ~0.38 eV)")
    err = 1e3 * np.abs(e - res.orbital_energies)
    print(f"block split r_c 6 A: {len(blocks.i)} atom-pair blocks; eigenvalues vs tblite: "
          f"MAE {err.mean():.3f} meV, max {err.max():.3f} meV")
    from ..observables import BandProbe

    probe = BandProbe(prim, cell, n_bands=4).prepare(blocks)
    fit = probe.four_band_fit(probe.pristine_bands)
    print(f"static Fermi velocity (slope definition, K + q e, q 0.06-0.10 1/A, 12 directions): "
          f"{probe.static:.3f} x 10^6 m/s; four-band fit: v {fit['v_1e6_m_per_s']:.3f} x 10^6 m/s, "
          f"gamma_1 {fit['gamma1_ev']:.3f} eV (GFN1-xTB numbers, not graphene's)")
    print(f"done in {time.time() - t0:.1f} s")
    return 0


def cmd_build(args) -> int:
    """Build a named structure and write it (extxyz keeps the layer labels)."""
    from ase.io import write

    from ..structures import build

    check_output_file(args.output)
    check_supercell(len(build(args.name)), args.size, "load", LIMITS.raised(args.max_atoms), args.name)
    atoms = build(args.name, args.size)
    write_atomic(args.output, lambda tmp: write(tmp, atoms, format=_ase_format(args.output)))
    extra = f", twist {atoms.info['twist_deg']:.3f} deg" if "twist_deg" in atoms.info else ""
    print(f"{args.name} x{args.size}: {len(atoms)} atoms, "
          f"{len(set(atoms.arrays['layer']))} layers{extra} -> {args.output}")
    return 0


def cmd_info(args) -> int:
    """Load a structure file (in a child process: ``load_isolated``), validate it and report
    layers and edges."""
    from ..graph import build_graph
    from ..isolated_load import load_isolated

    atoms = load_isolated(args.file, elements=set(args.elements.split(",")) if args.elements else None,
                          limits=LIMITS.raised(args.max_atoms))
    layers = np.bincount(atoms.arrays["layer"])
    g = build_graph(atoms, {"intra": args.cutoff, "inter": args.cutoff})
    print(f"{args.file}: {len(atoms)} atoms ({atoms.get_chemical_formula()}), "
          f"{len(layers)} layer(s) of {', '.join(map(str, layers))} atoms; "
          f"{len(g.edges['intra'])} intra / {len(g.edges['inter'])} inter edges within {args.cutoff} A")
    return 0


def cmd_phonons(args) -> int:
    """Dispersion, DOS and supercell modes from a force model (and optionally a second one)."""
    from ..phonons import (density_of_states, dispersion, harmonic_phonons, relax_positions,
                          supercell_modes, write_dispersion)

    limits = LIMITS.raised(args.max_atoms)
    check_output_dir(args.out)
    atoms = structure_from_arg(args.structure, limits=limits)
    check_supercell(len(atoms), args.supercell, "phonons", limits, args.structure)
    curves, dos = {}, {}
    for name in [args.forces] + ([args.compare] if args.compare else []):
        model = force_model_from_name(name)
        name = "ML" if Path(name).is_dir() else name.replace(":", "_").replace("/", "_")
        main_model = not curves
        cell = atoms if args.no_relax else relax_positions(atoms, model)
        phonon = harmonic_phonons(cell, model, args.supercell)
        curves[name] = dispersion(phonon)
        dos[name] = density_of_states(phonon)
        if main_model:
            q, freqs, vecs = supercell_modes(phonon)
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            np.savez(out / f"supercell_modes_{args.supercell}x{args.supercell}.npz",
                     q_frac=q, freq_thz=freqs, eigenvectors=vecs)
    summary = write_dispersion(args.out, curves, unit=args.unit, dos=dos,
                               title=f"{args.structure}, {args.supercell}x{args.supercell}x1 force constants")
    for name, s in summary["models"].items():
        rms = {k: v for k, v in s.items() if k.startswith("rms")}
        print(f"{name}: Gamma ({args.unit}) {' '.join(f'{f:.1f}' for f in s['gamma_freqs'])}; "
              f"imaginary modes on the path: {s['n_imaginary']}"
              + (f" (largest {s['max_imag']:.1f})" if s["n_imaginary"] else "")
              + "".join(f"; {k} {v:.2f}" for k, v in rms.items()))
    print(f"wrote {args.out}/dispersion.png, dispersion.json, dispersion_*.csv, supercell_modes_*.npz")
    return 0


def cmd_bands(args) -> int:
    """Band structure (and DOS, and the unfolded spectral function of a supercell) from a
    Hamiltonian model; with --compare, a second model on the same plot and their difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ..electrons import BlockTensors, Unfolder, bloch_pair, solve_generalized
    from ..observables import BandProbe
    from ..spectral import SpectralMap
    from ..structures import supercell
    from ..validation import cell_bands, cell_path, compare_bands, fermi_level, plot_band_comparison

    limits = LIMITS.raised(args.max_atoms)
    check_output_dir(args.out)
    primitive = structure_from_arg(args.structure, limits=limits)
    check_supercell(len(primitive), args.supercell, "bands", limits, args.structure)
    atoms = supercell(primitive, args.supercell) if args.supercell > 1 else primitive
    model = hamiltonian_model_from_name(args.electrons)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (blocks,) = model.blocks([atoms])
    k, dist, labels, label_dist = cell_path(atoms.cell, args.points)
    e = cell_bands(blocks, atoms, k)
    ef = fermi_level(e, int(blocks.meta.get("valence_electrons", BandProbe.valence_electrons(atoms))))
    # DOS on a Gamma-centred mesh of the cell, Gaussian broadening
    m = args.mesh
    grid = np.array([(i / m, j / m, 0.0) for i in range(m) for j in range(m)])
    bt = BlockTensors.from_blocks(blocks, atoms.positions, atoms.cell)
    kc = torch.as_tensor(grid @ (2 * np.pi * np.linalg.inv(np.asarray(atoms.cell)).T))
    e_mesh = solve_generalized(*bloch_pair(bt, kc))[0].numpy() - ef
    energies = np.linspace(-args.window, args.window, 601)
    dos = np.exp(-0.5 * ((energies[:, None] - e_mesh.ravel()[None]) / 0.05) ** 2).sum(1) / (
        np.sqrt(2 * np.pi) * 0.05 * len(grid))
    result = {"structure": args.structure, "supercell": args.supercell, "electrons": args.electrons,
              "e_fermi_ev": ef, "labels": labels, "label_distances": label_dist.tolist(),
              "distances": dist.tolist(), "bands_ev_from_ef": (e - ef).tolist(),
              "dos": {"energies_ev": energies.tolist(), "states_per_ev_cell": dos.tolist()}}
    fig, (ax, ax_dos) = plt.subplots(1, 2, figsize=(7, 4.2), sharey=True, gridspec_kw={"width_ratios": [4, 1]})
    ax.plot(dist, e - ef, color="tab:blue", lw=1)
    ax.set_xticks(label_dist, labels)
    ax.set_ylim(-args.window, args.window)
    ax.set_xlim(dist[0], dist[-1])
    ax.set_ylabel("E - E$_F$ (eV)")
    ax.set_title(f"{args.structure} {args.supercell}x{args.supercell}: {Path(args.electrons).name}", fontsize=9)
    ax_dos.plot(dos, energies, color="tab:blue")
    ax_dos.set_xlabel("DOS (1/eV/cell)")
    fig.tight_layout()
    fig.savefig(out / "bands.png", dpi=150)
    plt.close(fig)
    if args.supercell > 1:  # unfold onto the primitive cell's path
        unfolder = Unfolder(primitive.cell, atoms.positions, atoms.cell, blocks.norb)
        sm = SpectralMap(primitive, atoms, unfolder, ef, grid=max(1, -(-30 // args.supercell)),
                         window=(-args.window, args.window))
        a = sm.spectral_function(bt)
        fig, ax = plt.subplots(figsize=(5, 4.2))
        ax.pcolormesh(sm.distances, sm.energies, a.T, shading="nearest", cmap="magma")
        ax.set_xticks(sm.label_distances, sm.labels)
        ax.set_ylabel("E - E$_F$ (eV)")
        ax.set_title("unfolded spectral function A(k, E)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "spectral.png", dpi=150)
        plt.close(fig)
        result["unfolded"] = {"distances": sm.distances.tolist(), "energies_ev": sm.energies.tolist(),
                              "labels": sm.labels, "spectral": a.tolist()}
    if args.compare:
        comparison = compare_bands(model, hamiltonian_model_from_name(args.compare), atoms,
                                   points_per_segment=args.points)
        plot_band_comparison(out / "bands_compare.png", comparison, f"{args.structure} {args.supercell}x{args.supercell}")
        result["compare"] = {"model": args.compare, **{k: v for k, v in comparison.items() if k != "_plot"}}
        print(f"{args.electrons} vs {args.compare}: max |dE| within 1 eV of E_F "
              f"{comparison['band_max_err_mev']:.2f} meV, MAE {comparison['band_mae_mev']:.2f} meV")
    (out / "bands.json").write_text(json.dumps(result))
    print(f"E_F {ef:.4f} eV; wrote {out}/bands.png, bands.json" + (", spectral.png" if args.supercell > 1 else "")
          + (", bands_compare.png" if args.compare else ""))
    return 0


def cmd_continuum(args) -> int:
    """Bistritzer-MacDonald bands of a twisted bilayer from the Slater-Koster parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..continuum import ContinuumModel, dirac_hbar_v, first_magic_angle, interlayer_w

    hv, w = dirac_hbar_v(), interlayer_w(args.distance)
    out = check_output_dir(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"hbar_v_ev_a": hv, "w_ev": w, "d_a": args.distance, "units": {"energy": "eV", "velocity": "1e6 m/s"},
              "angles": []}
    fig, axes = plt.subplots(1, len(args.angle), figsize=(3.2 * len(args.angle), 3.6), squeeze=False, sharey=True)
    for ax, theta in zip(axes[0], args.angle):
        model = ContinuumModel(theta, hv, w, w)
        ks, dist, ticks, labels = model.path(args.points)
        e = model.bands(ks, args.bands)
        width = float(e[:, args.bands // 2 - 1: args.bands // 2 + 1].max() - e[:, args.bands // 2 - 1: args.bands // 2 + 1].min())
        result["angles"].append({"theta_deg": theta, "alpha": model.alpha, "central_width_mev": 1e3 * width,
                                 "k_point_velocity": model.k_point_velocity(), "distance_per_a": dist.tolist(),
                                 "bands_ev": e.tolist()})
        ax.plot(dist, 1e3 * e, color="tab:blue", lw=1)
        ax.set_xticks(ticks, labels)
        ax.set_title(f"{theta:.3f}°: central width {1e3 * width:.1f} meV", fontsize=9)
        print(f"theta {theta:.3f} deg: alpha {model.alpha:.3f}, central bands {1e3 * width:.1f} meV wide, "
              f"v(K_m) {model.k_point_velocity():.4f} x 1e6 m/s")
    axes[0][0].set_ylabel("E - E$_D$ (meV)")
    if args.magic:
        theta, v = first_magic_angle(d=args.distance)
        result["first_magic_angle_deg"] = theta
        print(f"first magic angle (minimum of |v(K_m)|): {theta:.3f} deg")
    fig.tight_layout()
    fig.savefig(out / "continuum_bands.png", dpi=140)
    plt.close(fig)
    write_text_atomic(out / "continuum.json", json.dumps(result, indent=1))
    print(f"hbar v {hv:.3f} eV A, w {1e3 * w:.1f} meV (Slater-Koster, d = {args.distance} A); "
          f"wrote {out}/continuum.json, continuum_bands.png")
    return 0


def read_relaxed_cell(path, rigid, forces: str):
    """A relaxed twisted cell written by ``mlepi tbg --relaxed-cell``, checked against the
    rigid cell it must come from (atom count, lattice, layers) and the force model
    ``forces`` it must have been relaxed with."""
    from ase.io import read

    cell = read(path, format="extxyz")
    if (len(cell) != len(rigid) or not np.allclose(cell.cell[:2], rigid.cell[:2], atol=1e-6)
            or "relaxation" not in cell.info
            or not np.array_equal(np.asarray(cell.arrays.get("layer")), np.asarray(rigid.arrays["layer"]))):
        raise StructureError(f"{path} is not a relaxed copy of this ({len(rigid)}-atom) twisted cell; "
                             "remove it to relax again")
    made_with = json.loads(cell.info["relaxation"]).get("forces_identity")
    if made_with != model_identity(forces):
        raise StructureError(f"{path} was relaxed with another force model ({made_with or 'not recorded'}) "
                             f"than --forces {forces}; remove it to relax again")
    return cell


def cmd_tbg(args) -> int:
    """Flat bands of a commensurate twisted bilayer near the magic angle (the paper's Fig. 4c):
    the 8 states nearest charge neutrality at Gamma, M, K of the moire cell from each
    Hamiltonian model (sparse, labelled shift-invert; mlepi_core.moire), the width of the
    four central bands, the gaps to the remote bands, ML vs reference errors, the
    Bistritzer-MacDonald bands at the same angle; rigid and optionally relaxed."""
    from .. import moire
    from ..flat_bands import BandModel, MoirePath, compare_to_reference, model_bands, plot_flat_bands
    from ..structures import twist_angle, twisted_bilayer

    say = lambda msg: print(msg, flush=True)  # noqa: E731
    if args.mn:
        try:
            m, n = (int(x) for x in args.mn.split(","))
        except ValueError:
            raise StructureError(f"--mn is written m,n (e.g. 30,31), got {args.mn!r}") from None
    else:
        m, n = moire.commensurate_cell_for_angle(args.angle)
    theta = twist_angle(m, n)
    tag = f"{theta:.2f}"
    out = check_output_file(Path(args.out or f"assets/results/tbg_{tag}.json"))
    figure = check_output_file(Path(args.figure or f"assets/figures/tbg_{tag}.png"))
    check_output_file(args.relaxed_cell)
    check_atoms(moire_cell_atoms(m, n), "flat_bands", LIMITS.raised(args.max_atoms),
                what=f"the twisted bilayer ({m}, {n})")
    seconds = {}
    t0 = time.perf_counter()
    atoms = twisted_bilayer(m, n, d=args.distance)
    seconds["build"] = time.perf_counter() - t0
    say(f"twisted bilayer ({m}, {n}): {theta:.4f} deg, {len(atoms)} atoms, d = {args.distance} A")
    path = MoirePath.of(atoms.cell, args.path_points)

    models = [BandModel("reference" if name in ("slater-koster", "sk") else Path(name).name,
                        name in ("slater-koster", "sk"), hamiltonian_model_from_name(name))
              for name in args.electrons]
    if sum(entry.is_reference for entry in models) > 1:
        raise ValueError("give the Slater-Koster reference once in --electrons")

    def solve_all(structure, tag, entries, corners_only=False):
        records, energies = {}, {}
        for entry in entries:
            say(f"[{tag}] {entry.label}: bands nearest neutrality at "
                f"{3 if corners_only else len(path.k_frac)} k-points")
            rec, e, seconds[f"{tag}_{entry.label}"] = model_bands(entry, structure, path, args.n_states,
                                                                  corners_only, progress=lambda s: say(f"  {s}"))
            records[entry.label], energies[entry.label] = rec, e
            say(f"  {entry.label}: E_F {rec['e_fermi_ev']:.4f} eV, central bands {rec['width_mev']:.2f} meV "
                f"wide, gaps to remote bands {rec['gap_below_mev']:.2f} (below) / {rec['gap_above_mev']:.2f} "
                f"(above) meV [{seconds[f'{tag}_{entry.label}']:.1f} s]")
        return records, energies

    def section(records, energies):
        out = compare_to_reference(models, records, energies, path)
        if out["max_ml_ref_err_mev"] is not None:
            say(f"  ML vs reference, 8 states at Gamma, M, K (each from its own E_F): max |dE| "
                f"{out['max_ml_ref_err_mev']:.2f} meV")
        return out

    result = {"atoms": len(atoms), "angle_deg": theta, "mn": [m, n], "distance_a": args.distance,
              "n_states": args.n_states, "energies": "meV from each model's E_F (centre of the four "
              "central bands at K: charge neutrality, half of them filled)",
              "k_points_frac": {c: path.k_frac[i].tolist() for c, i in path.corner.items()},
              "electrons": list(args.electrons)}
    records, rigid = solve_all(atoms, "rigid", models)
    result["rigid"] = section(records, rigid)
    relaxed = None
    if args.relaxed and args.relaxed_cell and Path(args.relaxed_cell).is_file():
        cell = read_relaxed_cell(args.relaxed_cell, atoms, args.forces)
        record = json.loads(cell.info["relaxation"])
        say(f"relaxed cell from {args.relaxed_cell} ({record['forces']}, {record['steps']} steps)")
    elif args.relaxed:
        say(f"relaxing positions with {args.forces} (L-BFGS, fmax {args.relax_fmax} eV/A, "
            f"at most {args.relax_steps} steps)")
        t = time.perf_counter()
        cell, record = moire.relax_twisted(atoms, relaxation_force_model(args.forces), fmax=args.relax_fmax,
                                           steps=args.relax_steps, progress=lambda s: say(f"  {s}"))
        seconds["relax"] = time.perf_counter() - t
        d_aa, d_ab = moire.local_interlayer_distance(cell)
        record.update({"forces": args.forces, "forces_identity": model_identity(args.forces),
                       "d_aa_a": d_aa, "d_ab_a": d_ab, "seconds": seconds["relax"]})
        if args.relaxed_cell:
            from ase.io import write

            cell.info["relaxation"] = json.dumps(record)
            write_atomic(args.relaxed_cell, lambda tmp: write(tmp, cell, format="extxyz"))
            say(f"  relaxed cell -> {args.relaxed_cell}")
    if args.relaxed:
        say(f"  {record['steps']} steps, max |F| {record['max_force_ev_a']:.4f} eV/A, d(AA) {record['d_aa_a']:.3f} A, "
            f"d(AB) {record['d_ab_a']:.3f} A [{record.get('seconds', 0.0):.1f} s]")
        records, relaxed = solve_all(cell, "relaxed", models)
        result["relaxed"] = {**section(records, relaxed), "relaxation": record}
    if args.gfn1_model:  # s, p with overlap: 4x the orbitals, generalised solves; at the corners only
        gfn1 = BandModel("gfn1_ml", False, hamiltonian_model_from_name(args.gfn1_model))
        records, _ = solve_all(atoms, "rigid", [gfn1], corners_only=True)
        result["gfn1_ml_width_mev"] = records["gfn1_ml"]["width_mev"]
        result["gfn1_ml"] = records["gfn1_ml"]
    t = time.perf_counter()
    dist_c, e_c, ticks_c = moire.continuum_bands(theta, 30, d=args.distance)
    e_c = 1e3 * (e_c - moire.central_bands(e_c)[60].mean())  # meV from its neutrality point (K)
    seconds["continuum"] = time.perf_counter() - t
    result["continuum"] = {"width_mev": moire.central_width(e_c),
                           "eigenvalues_mev": {c: e_c[30 * k].tolist() for k, c in enumerate(path.corner)}}
    say(f"continuum model at {theta:.4f} deg: central bands {result['continuum']['width_mev']:.2f} meV wide "
        f"along Gamma-M-K-Gamma")
    result["seconds"] = seconds

    panels = [("rigid", rigid)] + ([("relaxed", relaxed)] if relaxed else [])
    fig = plot_flat_bands(path, panels, models, (dist_c, e_c, ticks_c), f"({m},{n}) {theta:.3f}°, {len(atoms)} atoms")
    write_atomic(figure, lambda tmp: fig.savefig(tmp, dpi=150, format="png"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    write_text_atomic(out, json.dumps(result, indent=1))
    say(f"wrote {out}, {figure}")
    return 0


def moire_cell_atoms(m: int, n: int) -> int:
    """Atoms of the commensurate twisted bilayer (m, n) (``structures.twisted_bilayer``),
    counted before it is built: 4 (m^2 + mn + n^2), a third of that when 3 | m - n."""
    atoms = 4 * (m * m + m * n + n * n)
    return atoms // 3 if (m - n) % 3 == 0 else atoms


def _ase_format(path) -> str | None:
    """The ASE format of ``path`` from its name (None: ASE guesses), for a temporary file."""
    from ase.io.formats import filetype

    try:
        return filetype(str(path), read=False)
    except Exception:
        return None


def cmd_dashboard(args) -> int:
    """Serve the Panel dashboard (app/) on this machine; all JS/CSS is served locally."""
    import panel as pn

    from app.dask_executor import DaskExecutor
    from app.main import create_app
    from mlepi_core.run_store import RunStore

    DaskExecutor.configure(args.workers, args.scheduler)
    RunStore.configure(args.runs)
    print(f"mlepi dashboard: http://{args.address}:{args.port}/  (Ctrl-C stops it; runs in {args.runs})", flush=True)
    origins = [f"{host}:{args.port}" for host in {args.address, "localhost", "127.0.0.1"}]
    pn.serve(create_app, port=args.port, address=args.address, show=args.show, title="mlepi",
             websocket_origin=origins + list(args.allow_origin or []))
    return 0
