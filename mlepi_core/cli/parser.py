"""The `mlepi` argument parser: every command and flag, each bound to its function."""

from __future__ import annotations

import argparse
import math

from ..shipped import shipped_model
from ..units import BILAYER_D
from .explore import (cmd_bands, cmd_build, cmd_continuum, cmd_dashboard, cmd_demo, cmd_info, cmd_phonons,
                      cmd_tbg)
from .monte_carlo import cmd_mc
from .training import (cmd_data_electron, cmd_data_phonon, cmd_evaluate_electron, cmd_evaluate_phonon, cmd_models,
                       cmd_train_electron, cmd_train_phonon)

SHIPPED_ELECTRON_MODEL = shipped_model("electron")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``mlepi mc: error: argument --seed: ...``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def integer(low: int = 0, high: int | None = None):
    """An argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {'>= ' + str(low) if high is None else f'{low} to {high}'}, "
                                             f"got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def number(low: float = 0.0, strict: bool = False, unit: str = ""):
    """An argparse type: a finite float >= low (> low when ``strict``); nan and inf refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number{unit}, got {text!r}")
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}{unit}, got {value:g}")
        return value
    parse.__name__ = "number"
    return parse


COUNT, SIZE, SEED = integer(1), integer(1), integer(0)


def add_max_atoms(s) -> None:
    s.add_argument("--max-atoms", type=integer(1), metavar="N",
                   help="raise this command's atom limits to N (mlepi_core/limits.py sizes them for 24 GB; "
                        "for a machine with more memory)")


def make_parser() -> argparse.ArgumentParser:
    p = Parser(prog="mlepi", description="Electron-phonon interactions in layered "
               "materials from ML force fields and Hamiltonians (MLEPI).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="a one-minute tour on AB bilayer graphene with the references")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("bands", help="band structure, DOS and unfolded spectral function from a Hamiltonian model")
    s.add_argument("structure", help="structure file or name (AB, monolayer, tbg:m,n, ...)")
    s.add_argument("--electrons", default=str(SHIPPED_ELECTRON_MODEL),
                   help="Hamiltonian model: a trained model folder (default: the shipped one) or reference")
    s.add_argument("--compare", help="a second Hamiltonian model (e.g. reference) on the same path")
    s.add_argument("--supercell", type=SIZE, default=1, help="n x n x 1 supercell (bands unfolded when n > 1)")
    s.add_argument("--points", type=integer(2), default=30, help="k-points per path segment")
    s.add_argument("--mesh", type=SIZE, default=24, help="m x m k-mesh of the DOS")
    s.add_argument("--window", type=number(0.0, strict=True, unit=" eV"), default=3.0,
                   help="energy window about E_F (eV)")
    s.add_argument("--out", default="results/bands")
    add_max_atoms(s)
    s.set_defaults(func=cmd_bands)

    s = sub.add_parser("continuum", help="Bistritzer-MacDonald bands of twisted bilayers (Slater-Koster parameters)")
    s.add_argument("--angle", type=number(0.0, strict=True, unit=" deg"), nargs="+", default=[1.08],
                   help="twist angles in degrees")
    s.add_argument("--distance", type=number(0.0, strict=True, unit=" A"), default=BILAYER_D,
                   help="interlayer distance (A) for the tunnelling w (default: the force field's AB equilibrium)")
    s.add_argument("--bands", type=integer(2, 200), default=8, help="bands nearest the Dirac point")
    s.add_argument("--points", type=integer(2, 10_000), default=40, help="k-points per path segment")
    s.add_argument("--magic", action="store_true", help="also find the first magic angle")
    s.add_argument("--out", default="results/continuum")
    s.set_defaults(func=cmd_continuum)

    s = sub.add_parser("tbg", help="flat bands of a commensurate twisted bilayer near the magic angle (Fig. 4c)")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--angle", type=number(0.0, strict=True, unit=" deg"), default=1.08,
                       help="twist angle (deg): the (m, m+1) cell nearest it (1.08: (30, 31), 11,164 atoms)")
    which.add_argument("--mn", help="the commensurate cell m,n instead (e.g. 2,3)")
    s.add_argument("--electrons", nargs="+", default=["slater-koster"],
                   help="Hamiltonian model(s): slater-koster (the reference) and/or trained model folders")
    s.add_argument("--gfn1-model", help="also the central width from a GFN1-trained electron model folder")
    s.add_argument("--relaxed", action="store_true", help="also relax positions (L-BFGS) and solve again")
    s.add_argument("--forces", default="empirical", help="force model of the relaxation")
    s.add_argument("--relax-fmax", type=number(0.0, strict=True, unit=" eV/A"), default=0.005, help="relaxation stops at max |F| below this (eV/A)")
    s.add_argument("--relax-steps", type=integer(0), default=600, help="relaxation steps at most")
    s.add_argument("--relaxed-cell", help="extxyz of the relaxed cell: read if it exists, else written "
                   "after relaxing (reuse one relaxation across runs)")
    s.add_argument("--distance", type=number(0.0, strict=True, unit=" A"), default=BILAYER_D,
                   help="interlayer distance (A) of the rigid cell (default: the force field's AB equilibrium, "
                        "the spacing of every bilayer mlepi builds; the Slater-Koster parametrisation's is 3.35)")
    s.add_argument("--n-states", type=integer(2, 1000), default=8, help="states nearest neutrality per k-point (even)")
    s.add_argument("--path-points", type=integer(0, 10_000), default=0,
                   help="k-points per segment of Gamma-M-K-Gamma (0: Gamma, M, K only)")
    s.add_argument("--out", help="JSON (default assets/results/tbg_<angle>.json)")
    s.add_argument("--figure", help="PNG (default assets/figures/tbg_<angle>.png)")
    add_max_atoms(s)
    s.set_defaults(func=cmd_tbg)

    s = sub.add_parser("dashboard", help="the browser dashboard (Panel) with the shipped models")
    s.add_argument("--port", type=integer(0, 65535), default=5006)
    s.add_argument("--address", default="localhost", help="interface to listen on (0.0.0.0: all)")
    s.add_argument("--allow-origin", action="append", help="extra host:port allowed to connect")
    s.add_argument("--show", action="store_true", help="open a browser tab")
    s.add_argument("--workers", type=COUNT, default=2,
                   help="worker processes of the LocalCluster that 'Run on: dask' starts on first use")
    s.add_argument("--scheduler", help="'Run on: dask' uses this existing Dask scheduler instead")
    s.add_argument("--runs", default="mlepi-runs", metavar="DIR",
                   help="runs directory: every run is a folder there, written after each batch, so a run "
                        "survives the server and continues where it stopped (default: ./mlepi-runs)")
    s.set_defaults(func=cmd_dashboard)

    s = sub.add_parser("build", help="build a structure: monolayer, AA, AB, BA, SP, tbg:m,n (twisted), hBN, thbn:m,n (twisted hBN), GhBN, MoS2")
    s.add_argument("name")
    s.add_argument("-n", "--size", type=SIZE, default=1, help="n x n x 1 supercell")
    s.add_argument("-o", "--output", required=True, help="output file (any format ASE writes)")
    add_max_atoms(s)
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("info", help="load and validate a structure file; show layers and edges")
    s.add_argument("file")
    s.add_argument("--cutoff", type=number(0.0, strict=True, unit=" A"), default=6.0, help="edge cutoff in Angstrom")
    s.add_argument("--elements", help="comma-separated elements a model knows, e.g. C")
    add_max_atoms(s)
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("models", help="what each shipped network and reference is, with the networks' held-out errors")
    s.add_argument("names", nargs="*", help="model names (a model folder, empirical, reference, slater-koster, ...); "
                                            "default: every shipped network and every reference")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("phonons", help="phonon dispersion, DOS and supercell modes (phonopy)")
    s.add_argument("structure", help="structure file or name (AB, AA, monolayer, tbg:m,n, hBN, thbn:m,n, GhBN, MoS2)")
    s.add_argument("--forces", default="empirical",
                   help="force model: empirical (LAMMPS: LCBOP+KC for graphene, ExTeP+ILP for hBN, SW+ILP for TMDs), gfn1, module:Class (ASE calculator)")
    s.add_argument("--compare", help="a second force model drawn on the same plot")
    s.add_argument("--supercell", type=SIZE, default=6, help="n x n x 1 force-constant supercell")
    s.add_argument("--unit", default="cm1", choices=["cm1", "thz", "mev"])
    s.add_argument("--no-relax", action="store_true", help="skip relaxing positions first")
    s.add_argument("--out", default="results/phonons")
    add_max_atoms(s)
    s.set_defaults(func=cmd_phonons)

    s = sub.add_parser("mc", help="Monte Carlo EPI: v_F(T) with errors, ML and/or reference electrons")
    s.add_argument("structure", nargs="?", help="structure file or name (AB, monolayer, ...); or 'structure:' "
                   "in --config")
    s.add_argument("--config", help="YAML file of these settings (keys are the flags: temperature: [0, 300], "
                   "samples: 500, ...); flags given here win")
    s.add_argument("--temperature", type=number(0.0, unit=" K"), nargs="+", default=[0.0, 300.0], help="K")
    s.add_argument("--samples", type=integer(1, 10**7), default=200, help="samples per temperature")
    s.add_argument("--seed", type=SEED, default=0)
    s.add_argument("--batch-size", type=integer(1, 10**4), default=4)
    s.add_argument("--antithetic", action="store_true", help="antithetic pairs (+u, -u)")
    s.add_argument("--sampling", choices=["mc", "zg", "zg-gh"], default="mc",
                   help="mc: Monte Carlo; zg: special displacements, --samples ZG configurations (1 or pairs); "
                        "zg-gh: ZG with Gauss-Hermite amplitudes (0, +-sqrt(3) sigma), exact to fourth order, "
                        "--samples a multiple of 6")
    s.add_argument("--estimator", choices=["plain", "curvature"], default="plain",
                   help="plain: sample means; curvature: the same samples regressed on control variates from "
                        "each mode's curvature (one solve per mode first), several times smaller errors")
    s.add_argument("--target-se", type=number(0.0), default=0.0,
                   help="stop each temperature once v_F (a gapped material: the gap, eV) has this standard "
                        "error, after at least 32 samples; --samples is then the most (0: off)")
    s.add_argument("--supercell", type=SIZE, default=6, help="n x n x 1 sampling supercell (3 | n)")
    s.add_argument("--forces", default="empirical", help="force model for the phonons")
    s.add_argument("--electrons", nargs="+", default=["reference"],
                   help="Hamiltonian model(s): reference (GFN1-xTB) and/or a trained model folder")
    s.add_argument("--device", help="torch device of the Bloch sums and eigen-solves (cpu, cuda, ...; "
                   "default cpu); trained models pick CUDA by themselves when it is there")
    s.add_argument("--spectral-every", type=integer(0), default=32,
                   help="average A(k, E) over samples j with j < 4 or j %% N == 0 (0: off)")
    s.add_argument("--path-points", type=integer(0, 300), default=30,
                   help="points per path segment of A(k, E), one eigen-solve each (0: the supercell's "
                        "commensurate points, coarse and cheap)")
    s.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local: in this process; dask: sample batches as tasks on a Dask cluster")
    s.add_argument("--workers", type=COUNT, default=2, help="with --executor dask: LocalCluster worker processes")
    s.add_argument("--threads-per-worker", type=COUNT, default=1)
    s.add_argument("--scheduler", help="address of an existing Dask scheduler (implies --executor dask)")
    s.add_argument("--resume", action="store_true",
                   help="continue from the samples a stopped run saved in --out (checkpoint_*.npz)")
    s.add_argument("--summary", help="also a compact JSON of v_F(T) per model (e.g. assets/results/mc_ab_6x6.json)")
    s.add_argument("--out", default="results/mc")
    add_max_atoms(s)
    s.set_defaults(func=cmd_mc)

    data = sub.add_parser("data", help="generate training data sets").add_subparsers(dest="set", required=True)
    s = data.add_parser("phonon", help="perturbed 4x4 AB bilayers with energies and forces (extxyz)")
    s.add_argument("--material", choices=["graphene", "hBN", "MoS2"], default="graphene",
                   help="the bilayer: graphene (AB, the paper's set), AA' hBN or 2H MoS2, each about its "
                        "reference's own interlayer distance")
    s.add_argument("--out", default="data/phonon")
    s.add_argument("--n", type=int, default=2000, help="number of configurations")
    s.add_argument("--size", type=int, default=4, help="n x n x 1 supercell")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--multilayer", type=integer(0, 10**6), default=0,
                   help="graphene: this many more frames, half trilayers, half bilayers strained by up to 2 %%")
    s.add_argument("--rigid-multilayer", type=integer(0, 10**6), default=0,
                   help="graphene: this many more frames sampling the sliding and breathing of ABA / ABC "
                        "trilayers and strained AB bilayers at thermal amplitudes")
    s.add_argument("--reference", default="empirical",
                   help="force reference: empirical (REBO+KC), gfn1, or module:Class of an ASE calculator")
    s.set_defaults(func=cmd_data_phonon)
    s = data.add_parser("electron", help="thermal 6x6 AB bilayers + twisted cells with H, S (DeepH layout)")
    s.add_argument("--material", choices=["graphene", "hBN", "MoS2"], default="graphene",
                   help="the bilayer: graphene (AB; held out: twisted cells) or AA' hBN, 2H MoS2 (held out: "
                        "the bilayer strained 1.5 %% and in another stacking)")
    s.add_argument("--out", default="data/electron")
    s.add_argument("--n", type=int, default=300, help="number of bilayer configurations")
    s.add_argument("--size", type=int, default=6, help="n x n x 1 supercell")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cutoff", type=number(0.0, strict=True, unit=" A"),
                   help="block cutoff r_c in Angstrom (default: 6 for gfn1, 8 for gfn1 on MoS2, whose s, p, d basis "
                        "reaches further; 7 for gpaw, whose dzp orbitals reach 3.5 A)")
    s.add_argument("--forces", default="empirical", help="force model for the thermal sampling")
    s.add_argument("--no-twisted", action="store_true", help="skip the held-out twisted cells (21.8 to 5.1 degrees; with slater-koster also 3.15 and 1.08)")
    s.add_argument("--electrons", default="gfn1", choices=["gfn1", "slater-koster", "gpaw"],
                   help="the labelling reference: GFN1-xTB (s, p, with S) or the Slater-Koster p_z model")
    s.add_argument("--workers", type=int, help="labelling processes, one per core (gpaw: default 1)")
    s.set_defaults(func=cmd_data_electron)

    train = sub.add_parser("train", help="train a network from a config file").add_subparsers(
        dest="target", required=True)
    for task, data_help, func in (("phonon", "extxyz data set", cmd_train_phonon),
                                  ("electron", "DeepH data set root with split.json", cmd_train_electron)):
        network = "HedgeNet-Phonon" if task == "phonon" else "HedgeNet-Electron"
        s = train.add_parser(task, help=f"{network} or a homogeneous baseline (configs/{task}_*.yaml)")
        s.add_argument("config", help=f"YAML config (see configs/{task}_hedgenet.yaml)")
        s.add_argument("--output", help="run folder (overrides output_dir)")
        s.add_argument("--data", help=f"{data_help} (overrides data)")
        s.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (resumable)")
        s.add_argument("--max-epochs", type=int)
        s.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
        s.add_argument("--threads", type=int, help="CPU threads for torch")
        if task == "electron":
            s.add_argument("--data-workers", type=int, help="processes reading DeepH folders into the cache")
        s.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                       help="override one setting of the config (repeatable; dotted keys for nested ones, "
                       "values as YAML: --set lr=3e-4 --set model.num_layers=3)")
        s.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
        s.add_argument("--no-progress", action="store_true", help="no progress bar")
        s.set_defaults(func=func)

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
