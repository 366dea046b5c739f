"""The magic-angle cell with the ML electron model: graph build and H/S prediction time
of HedgeNet-Electron on the 11,164-atom twisted bilayer (30, 31), 1.08 degrees, and
optionally the flat-band width (mlepi_core.moire: sparse labelled shift-invert at Gamma,
M, K of the moire cell) from a Hamiltonian model. Writes benchmarks/results/tbg.json.

    nice .venv/bin/python benchmarks/tbg_large.py [--mn 30,31] [--flat-band [--width-model slater-koster]]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: no spinning threads

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from mlepi_core.files import write_text_atomic
import torch

from timing import median_time
from mlepi_core import moire
from mlepi_core.model_names import hamiltonian_model_from_name
from mlepi_core.graph import model_graph
from mlepi_core.models import load_model
from mlepi_core.structures import twist_angle, twisted_bilayer

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "tbg.json"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mn", default="30,31", help="commensurate cell m,n (try 4,5 first)")
    p.add_argument("--electron-model", default=str(ROOT / "assets" / "models" / "electron"))
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda ...")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=1, help="timed calls after the warm-up")
    p.add_argument("--flat-band", action="store_true", help="also the central band width at Gamma, M, K")
    p.add_argument("--width-model", help="Hamiltonian model of the width (default: the ML model, float64)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else torch.device(args.device)
    m, n = (int(x) for x in args.mn.split(","))
    atoms = twisted_bilayer(m, n)
    print(f"twisted ({m}, {n}): {twist_angle(m, n):.4f} deg, {len(atoms)} atoms; ML on {device}", flush=True)
    dtype = getattr(torch, args.dtype)
    ml = load_model(args.electron_model, kind="electron", device=device, dtype=dtype)
    graph_s = median_time(lambda: model_graph(atoms, ml.cutoffs, ml.elements, dtype), args.repeats)
    graph = model_graph(atoms, ml.cutoffs, ml.elements, dtype)
    print(f"graph: {graph_s:.2f} s, edges " + ", ".join(f"{k} {len(e)}" for k, e in graph.edges.items()), flush=True)
    h_s = median_time(lambda: ml.blocks([atoms]), args.repeats)
    print(f"H/S prediction (graph included): {h_s:.2f} s", flush=True)
    result = {"atoms": len(atoms), "mn": [m, n], "angle_deg": twist_angle(m, n), "h_predict_s": h_s,
              "graph_s": graph_s, "flat_band_width_mev": None, "device": str(device)
              + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
              "dtype": args.dtype, "threads": torch.get_num_threads(), "electron_model": args.electron_model,
              "edges": {k: len(e) for k, e in graph.edges.items()},
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "note": "h_predict_s: one MLHamiltonianModel.blocks call (graph build included), median of "
                      "repeats after a warm-up"}
    if args.flat_band:
        name = args.width_model or args.electron_model
        model = hamiltonian_model_from_name(name) if args.width_model else \
            load_model(args.electron_model, kind="electron", device=device, dtype=torch.float64)
        k = np.array(list(moire.moire_k_points(atoms.cell).values()))
        t0 = time.perf_counter()
        nb = moire.bands_near_neutrality(model, atoms, k, 8, progress=lambda s: print(f"  {s}", flush=True))
        result["flat_band_width_mev"] = moire.central_width(nb.relative_mev())
        result.update({"width_model": name, "width_s": time.perf_counter() - t0,
                       "eigenvalues_mev": dict(zip(("Γ", "M", "K"), nb.relative_mev().tolist()))})
        print(f"central bands {result['flat_band_width_mev']:.2f} meV wide over Gamma, M, K ({name})", flush=True)
    print(f"-> {write_text_atomic(args.out, json.dumps(result, indent=1))}")


if __name__ == "__main__":
    main()
