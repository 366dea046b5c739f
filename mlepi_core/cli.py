"""`mlepi ...`: the command line over the engine (the dashboard drives the same calls)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .files import write_atomic, write_text_atomic
from .model_names import (force_model_from_name, hamiltonian_model_from_name, model_identity,
                          relaxation_force_model)
from .structures import StructureError
from .units import BILAYER_D


def structure_from_arg(arg: str, elements=None):
    """A structure file (any ASE format) or a builder name (AB, monolayer, tbg:m,n, ...)."""
    from .structures import build, load

    if Path(arg).exists():
        return load(arg, elements=elements)
    try:
        return build(arg)
    except StructureError as err:
        raise StructureError(f"{arg!r} is neither a file nor a structure name ({err})") from None


def cmd_phonons(args) -> int:
    """Dispersion, DOS and supercell modes from a force model (and optionally a second one)."""
    from .phonons import (density_of_states, dispersion, harmonic_phonons, relax_positions,
                          supercell_modes, write_dispersion)

    atoms = structure_from_arg(args.structure)
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


def cmd_mc(args) -> int:
    """Monte Carlo EPI: v_F(T) with errors, convergence, for one or two Hamiltonian models."""
    from tqdm import tqdm

    from . import __version__
    from .engine import MCSettings, MonteCarloEngine, write_results

    atoms = structure_from_arg(args.structure)
    settings = MCSettings(temperatures=tuple(args.temperature), n_samples=args.samples,
                          seed=args.seed, batch_size=args.batch_size, antithetic=args.antithetic,
                          supercell=args.supercell, n_bands=2 if len(set(atoms.arrays["layer"])) == 1 else 4,
                          spectral_every=args.spectral_every)
    forces = force_model_from_name(args.forces)
    hamiltonians = {name: hamiltonian_model_from_name(name) for name in args.electrons}  # bad names: no work done
    runs = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    client = None
    if args.executor == "dask" or args.scheduler:
        from .distributed import make_client

        client = make_client(args.workers, args.threads_per_worker, args.scheduler)
        print(f"Dask: {len(client.scheduler_info()['workers'])} workers "
              f"({args.scheduler or 'LocalCluster started for this run'})", flush=True)
    stop = StopOnSignal()
    for name in args.electrons:
        if stop.stopped:
            break
        label = "reference" if name == "reference" else "ml"
        engine = MonteCarloEngine(atoms, forces, hamiltonians[name], settings,
                                  device=args.device)
        stop.engine = engine
        runs[label] = engine
        checkpoint = out / f"checkpoint_{label}.pkl"
        identity = {"structure": args.structure, "forces": args.forces, "electrons": name,
                    "forces_identity": model_identity(args.forces), "electrons_identity": model_identity(name)}
        start = 0
        if args.resume and checkpoint.is_file():
            with open(checkpoint, "rb") as fh:
                import pickle

                saved = pickle.load(fh)
            if {k: saved.get(k) for k in identity} != identity:
                raise ValueError(f"{checkpoint} belongs to another run ({ {k: saved.get(k) for k in identity} })")
            start = engine.load_checkpoint(checkpoint)
            print(f"resuming {label}: {start} samples already done", flush=True)
        total = len(settings.temperatures) * settings.n_samples
        if client is not None:
            from .distributed import RunSpec, run_all_distributed

            batches = run_all_distributed(engine, RunSpec(atoms, args.forces, name, settings), client)
        else:
            batches = engine.run_all()
        with stop, tqdm(total=total, initial=min(start, total), desc=f"MC ({label})", unit="sample") as bar:
            for batch in batches:
                bar.update(len(batch.vf))
                bar.set_postfix(T=batch.temperature, vF=f"{batch.vf_mean:.4f}+-{batch.vf_se:.4f}")
                engine.save_checkpoint(checkpoint, identity)
    runs = {n: e for n, e in runs.items() if any(e.per_sample.values())}
    if stop.stopped and not runs:
        print("stopped before any sample finished", file=sys.stderr)
        close_client(client)
        return 130
    provenance = {"structure": args.structure, "forces": args.forces, "electrons": args.electrons,
                  "executor": "dask" if client is not None else "local",
                  "mlepi_version": __version__, "command": " ".join(sys.argv)}
    result = write_results(args.out, runs, provenance)
    if args.summary:
        summary = {"structure": args.structure, "supercell": args.supercell, "units": result["units"],
                   "static": result["static"], "settings": result["settings"], "provenance": provenance,
                   "temperatures": [{"T": row["T"], "samples": row["samples"],
                                     **{n: {k: row[n][k] for k in ("vf", "vf_se", "vf_rel_change", "gamma1",
                                                                    "gamma1_se", "samples")} for n in runs}}
                                    for row in result["temperatures"]]}
        path = write_text_atomic(args.summary, json.dumps(summary, indent=1, default=float))
        print(f"summary -> {path}")
    for row in result["temperatures"]:
        print(f"T = {row['T']:6.1f} K: " + "; ".join(
            f"{n} v_F {row[n]['vf']:.4f} +- {row[n]['vf_se']:.4f} ({100 * row[n]['vf_rel_change']:+.1f} % "
            f"vs static)" for n in runs))
    print(f"wrote {args.out}/results.json, vf_vs_T.csv, vf_vs_T.png")
    close_client(client)  # after the results are on disk: a stopped cluster takes seconds to wind down
    if stop.stopped:
        print(f"stopped: the folder holds the {sum(len(v) for e in runs.values() for v in e.per_sample.values())} "
              f"finished samples; the same command with --resume continues", file=sys.stderr)
        return 130
    return 0


def close_client(client) -> None:
    """Close a Dask client (and the LocalCluster it started; an existing cluster stays up)."""
    if client is not None:
        client.close()


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM during ``mlepi mc`` stops the run instead of killing it.

    The engine is cancelled (between local batches; outstanding Dask futures at once),
    the finished samples are written as a complete results folder, and ``--resume``
    continues from them. A second signal interrupts at once. Outside the main thread
    (e.g. ``main()`` called from a worker thread) signals are left alone.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.engine = None
        self.stopped = False
        self._previous = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False

    def _handle(self, signum, frame):
        if self.stopped:
            raise KeyboardInterrupt
        self.stopped = True
        print("\nmlepi: stopping (the batches in flight are cancelled; finished samples are kept)",
              file=sys.stderr, flush=True)
        if self.engine is not None:
            self.engine.cancel()


def cmd_bands(args) -> int:
    """Band structure (and DOS, and the unfolded spectral function of a supercell) from a
    Hamiltonian model; with --compare, a second model on the same plot and their difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from .electrons import BlockTensors, Unfolder, bloch_sum, solve_generalized
    from .observables import BandProbe, SpectralMap
    from .structures import supercell
    from .validation import cell_bands, cell_path, compare_bands, fermi_level, plot_band_comparison

    primitive = structure_from_arg(args.structure)
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
    e_mesh = solve_generalized(bloch_sum(bt, kc, "h"), bloch_sum(bt, kc, "s"))[0].numpy() - ef
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

    from .continuum import ContinuumModel, dirac_hbar_v, first_magic_angle, interlayer_w

    hv, w = dirac_hbar_v(), interlayer_w(args.distance)
    out = Path(args.out)
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
    from . import moire
    from .flat_bands import BandModel, MoirePath, compare_to_reference, model_bands, plot_flat_bands
    from .structures import twist_angle, twisted_bilayer

    say = lambda msg: print(msg, flush=True)  # noqa: E731
    if args.mn:
        try:
            m, n = (int(x) for x in args.mn.split(","))
        except ValueError:
            raise StructureError(f"--mn is written m,n (e.g. 30,31), got {args.mn!r}") from None
    else:
        m, n = moire.commensurate_cell_for_angle(args.angle)
    theta = twist_angle(m, n)
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

    tag = f"{theta:.2f}"
    out = Path(args.out or f"assets/results/tbg_{tag}.json")
    figure = Path(args.figure or f"assets/figures/tbg_{tag}.png")
    panels = [("rigid", rigid)] + ([("relaxed", relaxed)] if relaxed else [])
    fig = plot_flat_bands(path, panels, models, (dist_c, e_c, ticks_c), f"({m},{n}) {theta:.3f}°, {len(atoms)} atoms")
    write_atomic(figure, lambda tmp: fig.savefig(tmp, dpi=150, format="png"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    write_text_atomic(out, json.dumps(result, indent=1))
    say(f"wrote {out}, {figure}")
    return 0


def cmd_dashboard(args) -> int:
    """Serve the Panel dashboard (app/) on this machine; all JS/CSS is served locally."""
    import panel as pn

    from app.dask_executor import DaskExecutor
    from app.main import create_app

    DaskExecutor.configure(args.workers, args.scheduler)
    print(f"mlepi dashboard: http://{args.address}:{args.port}/  (Ctrl-C stops it)", flush=True)
    origins = [f"{host}:{args.port}" for host in {args.address, "localhost", "127.0.0.1"}]
    pn.serve(create_app, port=args.port, address=args.address, show=args.show, title="mlepi",
             websocket_origin=origins + list(args.allow_origin or []))
    return 0


def cmd_demo(args) -> int:
    """A short tour: build AB bilayer graphene, its graph, reference phonons and bands."""
    from .electrons import bloch_matrices, solve_bands
    from .graph import build_graph
    from .phonons import harmonic_phonons, relax_positions
    from .reference.lammps_forces import EmpiricalForceReference
    from .reference.tblite_electrons import GFN1Reference
    from .structures import bilayer, supercell
    from .units import THZ_TO_CM1

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
    from .observables import BandProbe

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

    from .structures import build

    atoms = build(args.name, args.size)
    write(args.output, atoms)
    extra = f", twist {atoms.info['twist_deg']:.3f} deg" if "twist_deg" in atoms.info else ""
    print(f"{args.name} x{args.size}: {len(atoms)} atoms, "
          f"{len(set(atoms.arrays['layer']))} layers{extra} -> {args.output}")
    return 0


def cmd_info(args) -> int:
    """Load a structure file, validate it and report layers and edges."""
    from .graph import build_graph
    from .structures import load

    atoms = load(args.file, elements=set(args.elements.split(",")) if args.elements else None)
    layers = np.bincount(atoms.arrays["layer"])
    g = build_graph(atoms, {"intra": args.cutoff, "inter": args.cutoff})
    print(f"{args.file}: {len(atoms)} atoms ({atoms.get_chemical_formula()}), "
          f"{len(layers)} layer(s) of {', '.join(map(str, layers))} atoms; "
          f"{len(g.edges['intra'])} intra / {len(g.edges['inter'])} inter edges within {args.cutoff} A")
    return 0


def cmd_data_phonon(args) -> int:
    from .data.generate import PhononSetConfig, generate_phonon_set

    cfg = PhononSetConfig(n_configs=args.n, size=args.size, seed=args.seed)
    t0 = time.time()
    path = generate_phonon_set(args.out, cfg, force_model_from_name(args.reference))
    size_mb = path.stat().st_size / 1e6
    print(f"phonon set: {cfg.n_configs} configurations -> {path} ({size_mb:.1f} MB, "
          f"{time.time() - t0:.0f} s)")
    return 0


def cmd_data_electron(args) -> int:
    from .data.generate import TWISTED_TO_MAGIC_ANGLE, ElectronSetConfig, generate_electron_set
    from .reference.tblite_electrons import GFN1Reference

    twisted = TWISTED_TO_MAGIC_ANGLE if args.electrons == "slater-koster" else ElectronSetConfig.twisted
    cfg = ElectronSetConfig(n_configs=args.n, size=args.size, seed=args.seed,
                            twisted=() if args.no_twisted else twisted)
    if args.electrons == "gfn1":
        reference = GFN1Reference(r_c=args.cutoff)
    elif args.electrons == "slater-koster":
        from .reference.slater_koster import SlaterKosterPz

        reference = SlaterKosterPz()
    else:
        raise ValueError(f"unknown electron reference {args.electrons!r} (gfn1 or slater-koster)")
    t0 = time.time()
    out = generate_electron_set(args.out, cfg, force_model_from_name(args.forces), reference)
    size_mb = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file()) / 1e6
    print(f"electron set -> {out} ({size_mb:.0f} MB, {time.time() - t0:.0f} s)")
    return 0


def _train(args, task: str, report) -> int:
    """Train the network a YAML config describes (flags override it); resumes by default.
    ``report(split, metrics)`` formats one line of final metrics."""
    from .training import TrainConfig, train

    cfg = TrainConfig.load(args.config)
    flags = {"output_dir": args.output, "data": args.data, "max_steps": args.max_steps,
             "max_epochs": args.max_epochs, "device": args.device, "num_threads": args.threads,
             "data_workers": getattr(args, "data_workers", None)}
    overrides = {k: v for k, v in flags.items() if v is not None}
    if args.no_progress:
        overrides["progress"] = False
    cfg = TrainConfig.from_dict({**cfg.to_dict(), **overrides})
    if cfg.task != task:
        raise ValueError(f"{args.config} is a {cfg.task!r} config, not a {task} one")
    result = train(cfg, resume=not args.no_resume)
    if "stopped" in result:
        print(f"stopped at step {result['step']} ({result['stopped']}); run the same command to resume")
        return 0
    for split in cfg.evaluate_splits:
        if result.get(split):
            print(report(split, result[split]))
    print(f"model -> {result['model_dir']}, metrics -> {Path(cfg.output_dir) / 'metrics.json'}")
    return 0


def cmd_train_phonon(args) -> int:
    """Train HedgeNet-Phonon (or a homogeneous baseline)."""
    return _train(args, "phonon", lambda split, m: (
        f"{split:>5}: energy MAE {m['energy_mae_mev_per_atom']:.3f} meV/atom, force MAE "
        f"{m['force_mae_mev_per_a']:.2f} meV/A ({m['n_structures']} structures)"))


def parse_ablation(specs: list[str] | None) -> dict[str, str]:
    """--ablation NAME=MODEL_OR_RUN (repeatable) -> {NAME: path}."""
    out = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--ablation takes NAME=MODEL_OR_RUN, got {spec!r}")
        out[name] = path
    return out


def _phonon_model_dir(path: str | Path) -> Path:
    path = Path(path)
    return path / "model" if (path / "model" / "metadata.json").is_file() else path


def cmd_evaluate_phonon(args) -> int:
    """Energy and force errors of a saved phonon model (and of ablation baselines) on the
    splits of an extxyz data set (the paper's Table I); with --phonons, its 6x6 AB-bilayer
    dispersion against the empirical reference (the paper's Fig. 4b)."""
    from .training import evaluate_model

    model_dir = _phonon_model_dir(args.model)
    data = args.data
    if data is None:
        meta = json.loads((model_dir / "metadata.json").read_text()) \
            if (model_dir / "metadata.json").is_file() else {}
        data = (meta.get("training_data") or {}).get("path") or "data/phonon/phonon_set.xyz"
    splits = args.splits.split(",")
    kw = dict(splits=splits, batch_size=args.batch_size, device=args.device, dtype=args.dtype)
    out = evaluate_model(model_dir, data, **kw)
    rows = {"HedgeNet-Phonon": out}
    out["ablation"] = {}
    for name, path in parse_ablation(args.ablation).items():
        out["ablation"][name] = rows[name] = evaluate_model(_phonon_model_dir(path), data, **kw)
    w = max(len(name) for name in rows)
    print(f"{'model':<{w}} {'parameters':>10} " + " ".join(f"{s + ' E (meV/atom)':>18} {s + ' F (meV/A)':>15}"
                                                          for s in splits))
    for name, row in rows.items():
        n_par = json.loads((Path(row["model_dir"]) / "metadata.json").read_text()).get("n_parameters", 0) \
            if "model_dir" in row else 0
        row.setdefault("n_parameters", n_par)
        print(f"{name:<{w}} {n_par:>10} " + " ".join(
            f"{row[s]['energy_mae_mev_per_atom']:>18.3f} {row[s]['force_mae_mev_per_a']:>15.2f}"
            for s in splits if row.get(s)))
    if args.phonons:
        from .models import load_model
        from .phonons import compare_dispersions, plot_dispersion_comparison
        from .reference.lammps_forces import EmpiricalForceReference
        from .structures import bilayer

        cmp = compare_dispersions(bilayer("AB"), load_model(model_dir, kind="phonon"), EmpiricalForceReference(),
                                  size=args.phonon_supercell)
        out[f"phonons_{args.phonon_supercell}x{args.phonon_supercell}"] = {
            k: v for k, v in cmp.items() if k != "curves"}
        print(f"{args.phonon_supercell}x{args.phonon_supercell} AB bilayer phonons: RMS ML - reference "
              f"{cmp['rms_cm1']:.2f} cm^-1 over the path; largest imaginary frequency ML {cmp['max_imag_cm1']:.2f}, "
              f"reference {cmp['reference_max_imag_cm1']:.2f} cm^-1")
        if args.figure:
            n = args.phonon_supercell
            plot_dispersion_comparison(args.figure, cmp, f"AB bilayer, {n}x{n} force constants")
            print(f"figure -> {args.figure}")
    if args.out:
        write_text_atomic(args.out, json.dumps(out, indent=1, default=float))
        print(f"metrics -> {args.out}")
    return 0


def cmd_train_electron(args) -> int:
    """Train HedgeNet-Electron (or a homogeneous baseline)."""
    return _train(args, "electron", lambda split, m: (
        f"{split:>7}: H MAE {m['h_mae_mev']:.2f} meV, S MAE {m.get('s_mae', float('nan')):.2e} "
        f"over all matrix elements ({m['n_structures']} structures)"))


def _model_folder(path: str) -> Path:
    """A saved model folder, or the model/ folder of a training run."""
    folder = Path(path)
    if (folder / "model" / "metadata.json").is_file():
        return folder / "model"
    return folder


def electron_physics(model_dir, figure: str | None = None) -> dict:
    """``validation.electron_physics`` with its numbers printed."""
    from .validation import electron_physics as physics

    out = physics(model_dir, figure)
    bands, pristine = out["mc_sample_300K"], out["pristine"]
    print(f"300 K sample: max |E_ML - E_ref| within 1 eV of E_F {bands['band_max_err_mev']:.2f} meV "
          f"(MAE {bands['band_mae_mev']:.2f}; absolute {bands['band_max_err_absolute_mev']:.2f}, E_F shift "
          f"{bands['fermi_shift_mev']:+.2f} meV); pristine v_F ML {pristine['vf_ml']:.4f} vs ref "
          f"{pristine['vf_ref']:.4f} ({100 * pristine['vf_rel_diff']:+.2f} %), gamma_1 ML "
          f"{pristine['gamma1_ml']:.4f} vs ref {pristine['gamma1_ref']:.4f} eV ({100 * pristine['gamma1_rel_diff']:+.2f} %)")
    if "reference" in out:
        r = out["reference"]
        print(f"Slater-Koster reference at d = 3.35 A: gamma_1 {r['gamma1_ev']:.4f} eV (ML "
              f"{r['gamma1_ml_ev']:.4f}), v_F {r['vf_1e6_m_s']:.4f} (ML {r['vf_ml_1e6_m_s']:.4f}) 10^6 m/s")
    return out


def cmd_evaluate_electron(args) -> int:
    """H and S errors of a saved electron model (and of ablation baselines) on a DeepH data set."""
    from .training import electron_metrics_table

    ablation = {name: _model_folder(path) for name, path in parse_ablation(args.ablation).items()}
    splits = [s for s in args.splits.split(",") if s]
    table = electron_metrics_table(_model_folder(args.model), ablation, data=args.data, splits=splits,
                                   batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                                   progress=not args.no_progress)
    if args.physics:
        table.update(electron_physics(_model_folder(args.model), args.figure))
    rows = [("HedgeNet-Electron" if table.get("model", {}).get("relations") != ["all"] else "model", table)]
    rows += list(table["ablation"].items())
    w = max(len(name) for name, _ in rows)
    header = f"{'model':<{w}} {'parameters':>10}" + "".join(
        f" {s + ' H (meV)':>17} {s + ' S':>12}" for s in splits)
    print(f"MAE over all matrix elements ({table['data']['path']}):")
    print(header)
    for name, row in rows:
        line = f"{name:<{w}} {row.get('model', {}).get('n_parameters') or 0:>10}"
        for s in splits:
            m = row.get(s) or {}
            line += f" {m.get('h_mae_mev', float('nan')):>17.3f} {m.get('s_mae', float('nan')):>12.2e}"
        print(line)
    if args.out:
        out = write_text_atomic(args.out, json.dumps(table, indent=1))
        print(f"metrics -> {out}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlepi", description="Electron-phonon interactions in layered "
                                "materials from ML force fields and Hamiltonians (MLEPI).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="a one-minute tour on AB bilayer graphene with the references")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("bands", help="band structure, DOS and unfolded spectral function from a Hamiltonian model")
    s.add_argument("structure", help="structure file or name (AB, monolayer, tbg:m,n, ...)")
    s.add_argument("--electrons", default=str(Path(__file__).resolve().parents[1] / "assets" / "models" / "electron"),
                   help="Hamiltonian model: a trained model folder (default: the shipped one) or reference")
    s.add_argument("--compare", help="a second Hamiltonian model (e.g. reference) on the same path")
    s.add_argument("--supercell", type=int, default=1, help="n x n x 1 supercell (bands unfolded when n > 1)")
    s.add_argument("--points", type=int, default=30, help="k-points per path segment")
    s.add_argument("--mesh", type=int, default=24, help="m x m k-mesh of the DOS")
    s.add_argument("--window", type=float, default=3.0, help="energy window about E_F (eV)")
    s.add_argument("--out", default="results/bands")
    s.set_defaults(func=cmd_bands)

    s = sub.add_parser("continuum", help="Bistritzer-MacDonald bands of twisted bilayers (Slater-Koster parameters)")
    s.add_argument("--angle", type=float, nargs="+", default=[1.08], help="twist angles in degrees")
    s.add_argument("--distance", type=float, default=BILAYER_D,
                   help="interlayer distance (A) for the tunnelling w (default: the force field's AB equilibrium)")
    s.add_argument("--bands", type=int, default=8, help="bands nearest the Dirac point")
    s.add_argument("--points", type=int, default=40, help="k-points per path segment")
    s.add_argument("--magic", action="store_true", help="also find the first magic angle")
    s.add_argument("--out", default="results/continuum")
    s.set_defaults(func=cmd_continuum)

    s = sub.add_parser("tbg", help="flat bands of a commensurate twisted bilayer near the magic angle (Fig. 4c)")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--angle", type=float, default=1.08,
                       help="twist angle (deg): the (m, m+1) cell nearest it (1.08: (30, 31), 11,164 atoms)")
    which.add_argument("--mn", help="the commensurate cell m,n instead (e.g. 2,3)")
    s.add_argument("--electrons", nargs="+", default=["slater-koster"],
                   help="Hamiltonian model(s): slater-koster (the reference) and/or trained model folders")
    s.add_argument("--gfn1-model", help="also the central width from a GFN1-trained electron model folder")
    s.add_argument("--relaxed", action="store_true", help="also relax positions (L-BFGS) and solve again")
    s.add_argument("--forces", default="empirical", help="force model of the relaxation")
    s.add_argument("--relax-fmax", type=float, default=0.005, help="relaxation stops at max |F| below this (eV/A)")
    s.add_argument("--relax-steps", type=int, default=600, help="relaxation steps at most")
    s.add_argument("--relaxed-cell", help="extxyz of the relaxed cell: read if it exists, else written "
                   "after relaxing (reuse one relaxation across runs)")
    s.add_argument("--distance", type=float, default=BILAYER_D,
                   help="interlayer distance (A) of the rigid cell (default: the force field's AB equilibrium, "
                        "the spacing of every bilayer mlepi builds; the Slater-Koster parametrisation's is 3.35)")
    s.add_argument("--n-states", type=int, default=8, help="states nearest neutrality per k-point (even)")
    s.add_argument("--path-points", type=int, default=0,
                   help="k-points per segment of Gamma-M-K-Gamma (0: Gamma, M, K only)")
    s.add_argument("--out", help="JSON (default assets/results/tbg_<angle>.json)")
    s.add_argument("--figure", help="PNG (default assets/figures/tbg_<angle>.png)")
    s.set_defaults(func=cmd_tbg)

    s = sub.add_parser("dashboard", help="the browser dashboard (Panel) with the shipped models")
    s.add_argument("--port", type=int, default=5006)
    s.add_argument("--address", default="localhost", help="interface to listen on (0.0.0.0: all)")
    s.add_argument("--allow-origin", action="append", help="extra host:port allowed to connect")
    s.add_argument("--show", action="store_true", help="open a browser tab")
    s.add_argument("--workers", type=int, default=2,
                   help="worker processes of the LocalCluster that 'Run on: dask' starts on first use")
    s.add_argument("--scheduler", help="'Run on: dask' uses this existing Dask scheduler instead")
    s.set_defaults(func=cmd_dashboard)

    s = sub.add_parser("build", help="build a structure: monolayer, AA, AB, BA, SP, tbg:m,n")
    s.add_argument("name")
    s.add_argument("-n", "--size", type=int, default=1, help="n x n x 1 supercell")
    s.add_argument("-o", "--output", required=True, help="output file (any format ASE writes)")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("info", help="load and validate a structure file; show layers and edges")
    s.add_argument("file")
    s.add_argument("--cutoff", type=float, default=6.0, help="edge cutoff in Angstrom")
    s.add_argument("--elements", help="comma-separated elements a model knows, e.g. C")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("phonons", help="phonon dispersion, DOS and supercell modes (phonopy)")
    s.add_argument("structure", help="structure file or name (AB, AA, monolayer, tbg:m,n)")
    s.add_argument("--forces", default="empirical",
                   help="force model: empirical (LCBOP+KC), gfn1, module:Class (ASE calculator)")
    s.add_argument("--compare", help="a second force model drawn on the same plot")
    s.add_argument("--supercell", type=int, default=6, help="n x n x 1 force-constant supercell")
    s.add_argument("--unit", default="cm1", choices=["cm1", "thz", "mev"])
    s.add_argument("--no-relax", action="store_true", help="skip relaxing positions first")
    s.add_argument("--out", default="results/phonons")
    s.set_defaults(func=cmd_phonons)

    s = sub.add_parser("mc", help="Monte Carlo EPI: v_F(T) with errors, ML and/or reference electrons")
    s.add_argument("structure", help="structure file or name (AB, monolayer, ...)")
    s.add_argument("--temperature", type=float, nargs="+", default=[0.0, 300.0], help="K")
    s.add_argument("--samples", type=int, default=200, help="samples per temperature")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--antithetic", action="store_true", help="antithetic pairs (+u, -u)")
    s.add_argument("--supercell", type=int, default=6, help="n x n x 1 sampling supercell (3 | n)")
    s.add_argument("--forces", default="empirical", help="force model for the phonons")
    s.add_argument("--electrons", nargs="+", default=["reference"],
                   help="Hamiltonian model(s): reference (GFN1-xTB) and/or a trained model folder")
    s.add_argument("--device", help="torch device of the Bloch sums and eigen-solves (cpu, cuda, ...; "
                   "default cpu); trained models pick CUDA by themselves when it is there")
    s.add_argument("--spectral-every", type=int, default=4,
                   help="average A(k, E) over samples j with j %% N == 0 (0: off)")
    s.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local: in this process; dask: sample batches as tasks on a Dask cluster")
    s.add_argument("--workers", type=int, default=2, help="with --executor dask: LocalCluster worker processes")
    s.add_argument("--threads-per-worker", type=int, default=1)
    s.add_argument("--scheduler", help="address of an existing Dask scheduler (implies --executor dask)")
    s.add_argument("--resume", action="store_true",
                   help="continue from the samples a stopped run saved in --out (checkpoint_*.pkl)")
    s.add_argument("--summary", help="also a compact JSON of v_F(T) per model (e.g. assets/results/mc_ab_6x6.json)")
    s.add_argument("--out", default="results/mc")
    s.set_defaults(func=cmd_mc)

    data = sub.add_parser("data", help="generate training data sets").add_subparsers(dest="set", required=True)
    s = data.add_parser("phonon", help="perturbed 4x4 AB bilayers with energies and forces (extxyz)")
    s.add_argument("--out", default="data/phonon")
    s.add_argument("--n", type=int, default=2000, help="number of configurations")
    s.add_argument("--size", type=int, default=4, help="n x n x 1 supercell")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--reference", default="empirical",
                   help="force reference: empirical (REBO+KC), gfn1, or module:Class of an ASE calculator")
    s.set_defaults(func=cmd_data_phonon)
    s = data.add_parser("electron", help="thermal 6x6 AB bilayers + twisted cells with H, S (DeepH layout)")
    s.add_argument("--out", default="data/electron")
    s.add_argument("--n", type=int, default=300, help="number of bilayer configurations")
    s.add_argument("--size", type=int, default=6, help="n x n x 1 supercell")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cutoff", type=float, default=6.0, help="block cutoff r_c in Angstrom")
    s.add_argument("--forces", default="empirical", help="force model for the thermal sampling")
    s.add_argument("--no-twisted", action="store_true", help="skip the held-out twisted cells (21.8 to 5.1 degrees; with slater-koster also 3.15 and 1.08)")
    s.add_argument("--electrons", default="gfn1", choices=["gfn1", "slater-koster"],
                   help="the labelling reference: GFN1-xTB (s, p, with S) or the Slater-Koster p_z model")
    s.set_defaults(func=cmd_data_electron)

    train = sub.add_parser("train", help="train a network from a config file").add_subparsers(
        dest="target", required=True)
    s = train.add_parser("phonon", help="HedgeNet-Phonon or a homogeneous baseline (configs/phonon_*.yaml)")
    s.add_argument("config", help="YAML config (see configs/phonon_hedgenet.yaml)")
    s.add_argument("--output", help="run folder (overrides output_dir)")
    s.add_argument("--data", help="extxyz data set (overrides data)")
    s.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (resumable)")
    s.add_argument("--max-epochs", type=int)
    s.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    s.add_argument("--threads", type=int, help="CPU threads for torch")
    s.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train_phonon)
    s = train.add_parser("electron", help="HedgeNet-Electron or a homogeneous baseline (configs/electron_*.yaml)")
    s.add_argument("config", help="YAML config (see configs/electron_hedgenet.yaml)")
    s.add_argument("--output", help="run folder (overrides output_dir)")
    s.add_argument("--data", help="DeepH data set root with split.json (overrides data)")
    s.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (resumable)")
    s.add_argument("--max-epochs", type=int)
    s.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    s.add_argument("--threads", type=int, help="CPU threads for torch")
    s.add_argument("--data-workers", type=int, help="processes reading DeepH folders into the cache")
    s.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train_electron)
    ev = sub.add_parser("evaluate", help="errors of a trained network on a data set").add_subparsers(
        dest="target", required=True)
    s = ev.add_parser("phonon", help="energy/force MAE of a saved phonon model (and baselines: Table I)")
    s.add_argument("--ablation", action="append", metavar="NAME=MODEL_OR_RUN",
                   help="a baseline evaluated on the same splits (e.g. homogeneous_2=runs/phonon_homogeneous_2)")
    s.add_argument("--phonons", action="store_true",
                   help="also the AB-bilayer dispersion against the empirical reference (Fig. 4b)")
    s.add_argument("--phonon-supercell", type=int, default=6)
    s.add_argument("--figure", default="assets/figures/phonons_ml_vs_ref.png", help="with --phonons: the plot")
    s.add_argument("model", help="model folder, or a training run folder holding model/")
    s.add_argument("--data", help="extxyz data set (default: the one the model was trained on)")
    s.add_argument("--splits", default="val,test", help="comma-separated splits")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--device", default="auto")
    s.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    s.add_argument("--out", help="write the metrics as JSON here")
    s.set_defaults(func=cmd_evaluate_phonon)
    s = ev.add_parser("electron", help="H and S MAE of a saved electron model (and baselines: Table II)")
    s.add_argument("model", help="model folder, or a training run folder holding model/")
    s.add_argument("--data", help="DeepH data set root (default: the one the model was trained on)")
    s.add_argument("--splits", default="test,twisted", help="comma-separated splits")
    s.add_argument("--ablation", action="append", metavar="NAME=MODEL_OR_RUN",
                   help="a baseline evaluated on the same data, under 'ablation' (repeatable)")
    s.add_argument("--batch-size", type=int, default=2, help="structures per evaluation batch")
    s.add_argument("--device", default="auto")
    s.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    s.add_argument("--no-progress", action="store_true", help="no progress bar while caching data")
    s.add_argument("--out", help="write the metrics as JSON here (e.g. assets/models/electron/metrics.json)")
    s.add_argument("--physics", action="store_true",
                   help="also compare bands of a 300 K sample and the pristine v_F, gamma_1 with GFN1-xTB")
    s.add_argument("--figure", default="assets/figures/electron_bands_ml_vs_ref.png",
                   help="with --physics: the band comparison plot (Fig. 4d)")
    s.set_defaults(func=cmd_evaluate_electron)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except (StructureError, FileNotFoundError, ValueError) as err:
        print(f"mlepi: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
