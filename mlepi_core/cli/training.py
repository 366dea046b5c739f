"""Commands that make and judge the networks: data sets, training, evaluation (Tables I, II)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..files import write_text_atomic
from ..model_names import force_model_from_name

def cmd_data_phonon(args) -> int:
    from ..data.generate import DEFAULT_RIGID_CONFIGS, generate_phonon_set, material_set

    cfg = material_set(args.material, n_configs=args.n, size=args.size, seed=args.seed,
                       rigid_configs=DEFAULT_RIGID_CONFIGS, multilayer_configs=args.multilayer,
                       rigid_multilayer_configs=args.rigid_multilayer)
    t0 = time.time()
    path = generate_phonon_set(args.out, cfg, force_model_from_name(args.reference))
    size_mb = path.stat().st_size / 1e6
    print(f"phonon set: {cfg.n_configs} configurations + {cfg.rigid_configs} rigid-layer ones + "
          f"{cfg.multilayer_configs} trilayers and strained bilayers + {cfg.rigid_multilayer_configs} rigid "
          f"ones -> {path} ({size_mb:.1f} MB, "
          f"{time.time() - t0:.0f} s)")
    return 0


def cmd_data_electron(args) -> int:
    from ..data.generate import TWISTED_GPAW, TWISTED_TO_MAGIC_ANGLE, ElectronSetConfig, generate_electron_set
    from ..reference.tblite_electrons import GFN1Reference

    twisted = {"slater-koster": TWISTED_TO_MAGIC_ANGLE, "gpaw": TWISTED_GPAW}.get(args.electrons,
                                                                               ElectronSetConfig.twisted)
    workers = getattr(args, "workers", None)
    cfg = ElectronSetConfig(n_configs=args.n, size=args.size, seed=args.seed,
                            twisted=() if args.no_twisted else twisted, material=args.material)
    if args.electrons == "gfn1":
        reference = GFN1Reference(r_c=args.cutoff)  # None: 6 A, or 8 A with S or Mo
    elif args.electrons == "slater-koster":
        from ..reference.slater_koster import SlaterKosterPz

        reference = SlaterKosterPz()
    elif args.electrons == "gpaw":
        from ..reference.gpaw_electrons import DEFAULT_RC, GPAWReference

        reference = GPAWReference(r_c_a=DEFAULT_RC if args.cutoff is None else args.cutoff)
        workers = 1 if workers is None else workers  # GPAW LCAO is single-threaded: one process per core
    else:
        raise ValueError(f"unknown electron reference {args.electrons!r} (gfn1, slater-koster or gpaw)")
    t0 = time.time()
    out = generate_electron_set(args.out, cfg, force_model_from_name(args.forces), reference,
                                workers=workers or 0)
    size_mb = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file()) / 1e6
    print(f"electron set -> {out} ({size_mb:.0f} MB, {time.time() - t0:.0f} s)")
    return 0


def _train(args, task: str, report) -> int:
    """Train the network a YAML config describes (flags override it); resumes by default.
    ``report(split, metrics)`` formats one line of final metrics."""
    from ..training import TrainConfig, train

    cfg = TrainConfig.load(args.config)
    flags = {"output_dir": args.output, "data": args.data, "max_steps": args.max_steps,
             "max_epochs": args.max_epochs, "device": args.device, "num_threads": args.threads,
             "data_workers": getattr(args, "data_workers", None)}
    overrides = {k: v for k, v in flags.items() if v is not None}
    if args.no_progress:
        overrides["progress"] = False
    from .config_files import apply_overrides

    cfg = TrainConfig.from_dict(apply_overrides({**cfg.to_dict(), **overrides}, args.overrides))
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


def cmd_train_electron(args) -> int:
    """Train HedgeNet-Electron (or a homogeneous baseline)."""
    return _train(args, "electron", lambda split, m: (
        f"{split:>7}: H MAE {m['h_mae_mev']:.2f} meV, S MAE {m.get('s_mae', float('nan')):.2e} "
        f"over all matrix elements ({m['n_structures']} structures)"))


def model_folder(path: str | Path) -> Path:
    """A saved model folder, or the model/ folder of a training run."""
    folder = Path(path)
    if (folder / "model" / "metadata.json").is_file():
        return folder / "model"
    return folder


def parse_ablation(specs: list[str] | None) -> dict[str, str]:
    """--ablation NAME=MODEL_OR_RUN (repeatable) -> {NAME: path}."""
    out = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--ablation takes NAME=MODEL_OR_RUN, got {spec!r}")
        out[name] = path
    return out


def cmd_evaluate_phonon(args) -> int:
    """Energy and force errors of a saved phonon model (and of ablation baselines) on the
    splits of an extxyz data set (the paper's Table I); with --phonons, its 6x6 AB-bilayer
    dispersion against the empirical reference (the paper's Fig. 4b), every Gamma mode below
    150 cm^-1 of the validation cells and the stacking-energy surface (mlepi_core.interlayer)."""
    from ..training import evaluate_model

    model_dir = model_folder(args.model)
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
        out["ablation"][name] = rows[name] = evaluate_model(model_folder(path), data, **kw)
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
        from ..models import load_model
        from ..phonons import compare_dispersions, plot_dispersion_comparison
        from ..reference.lammps_forces import EmpiricalForceReference
        from ..structures import bilayer

        from ..interlayer import LOW_FREQUENCY_CM1, interlayer_metrics, low_branch_rms

        model, reference = load_model(model_dir, kind="phonon"), EmpiricalForceReference()
        cmp = compare_dispersions(bilayer("AB"), model, reference, size=args.phonon_supercell)
        cmp["low_branch_rms_cm1"] = low_branch_rms(cmp["curves"]["ML"].freq_thz, cmp["curves"]["reference"].freq_thz)
        out[f"phonons_{args.phonon_supercell}x{args.phonon_supercell}"] = {
            k: v for k, v in cmp.items() if k != "curves"}
        print(f"{args.phonon_supercell}x{args.phonon_supercell} AB bilayer phonons: RMS ML - reference "
              f"{cmp['rms_cm1']:.2f} cm^-1 over the path, {cmp['low_branch_rms_cm1']:.2f} cm^-1 on the branches "
              f"below {LOW_FREQUENCY_CM1:.0f} cm^-1; largest imaginary frequency ML {cmp['max_imag_cm1']:.2f}, "
              f"reference {cmp['reference_max_imag_cm1']:.2f} cm^-1")
        inter = interlayer_metrics(model, reference)
        out.update(inter)
        print(f"Gamma modes below {LOW_FREQUENCY_CM1:.0f} cm^-1 (cm^-1), ML against the reference:")
        for cell, reason in inter["failed_cells"].items():
            print(f"  {cell}: no comparison ({reason})")
        for cell, modes in inter["gamma_mode_errors"].items():
            listed = ", ".join(f"{m['character']} {m['ml_cm1']:.1f}/{m['reference_cm1']:.1f}"
                               + (f" ({100 * m['rel_error']:+.0f} %)" if m["rel_error"] is not None else "")
                               for m in modes if m["character"] != "acoustic")
            print(f"  {cell}: {listed}; RMS below {LOW_FREQUENCY_CM1:.0f} cm^-1 "
                  f"{inter['low_branch_rms_cm1'][cell]:.2f}, all branches {inter['rms_cm1'][cell]:.2f}")
        print(f"rigid stacking-energy surface: MAE {inter['stacking_energy_mae_mev_per_atom']:.3f} meV/atom")
        if args.figure:
            n = args.phonon_supercell
            plot_dispersion_comparison(args.figure, cmp, f"AB bilayer, {n}x{n} force constants")
            print(f"figure -> {args.figure}")
    if args.out:
        write_text_atomic(args.out, json.dumps(out, indent=1, default=float))
        print(f"metrics -> {args.out}")
    return 0


def electron_physics(model_dir, figure: str | None = None) -> dict:
    """``validation.electron_physics`` with its numbers printed."""
    from ..validation import electron_physics as physics

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
    from ..training import electron_metrics_table

    ablation = {name: model_folder(path) for name, path in parse_ablation(args.ablation).items()}
    splits = [s for s in args.splits.split(",") if s]
    table = electron_metrics_table(model_folder(args.model), ablation, data=args.data, splits=splits,
                                   batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                                   progress=not args.no_progress)
    if args.physics:
        table.update(electron_physics(model_folder(args.model), args.figure))
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


def cmd_models(args) -> int:
    """The card of each model named, or of every shipped network and every reference."""
    import textwrap

    from ..model_cards import REFERENCE_CARDS, model_card
    from ..shipped import shipped_model_names

    names = args.names or [*shipped_model_names(), *REFERENCE_CARDS]
    for name in names:
        card = textwrap.fill(model_card(name).replace("**", ""), 100, initial_indent="  ",
                             subsequent_indent="  ", break_on_hyphens=False)
        print(f"{name}\n{card}\n")
    return 0
