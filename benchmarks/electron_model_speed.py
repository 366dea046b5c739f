"""Time HedgeNet-Electron on a batch of two displaced 6x6 AB bilayers (144 atoms each, r_c = 6 A).

For a few candidate sizes (hidden irreps, layers; heterogeneous and homogeneous)
prints the parameter count, the forward time and the time of one training step
(forward, MSE on H and S blocks, backward, Adam) in float32, as the fastest of a
few runs, and the CPU seconds of that step on one thread (process time: robust
when other jobs share the machine); writes benchmarks/results/electron_model_speed.json.
Run:
    .venv/bin/python benchmarks/electron_model_speed.py [--threads 2] [--quick]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mlepi_core.graph import build_batch
from mlepi_core.models import count_parameters
from mlepi_core.models.electron import HedgeNetElectron, HedgeNetElectronConfig, reverse_edge_index
from mlepi_core.structures import bilayer, supercell

OUT = Path(__file__).parent / "results" / "electron_model_speed.json"
HETERO = {"intra": 6.0, "inter": 6.0}
HOMO = {"all": 6.0}
CANDIDATES = [  # (name, hidden irreps, layers, radial hidden, cutoffs)
    ("C8 L3", "8x0e+8x1o+8x1e+8x2e", 3, (32,), HETERO),
    ("C16 L3", "16x0e+16x1o+16x1e+16x2e", 3, (32,), HETERO),
    ("C16 L3 homo", "16x0e+16x1o+16x1e+16x2e", 3, (32,), HOMO),
    ("C8 L6", "8x0e+8x1o+8x1e+8x2e", 6, (32,), HETERO),
    ("C16 L6", "16x0e+16x1o+16x1e+16x2e", 6, (32,), HETERO),
    ("C16 L6 homo", "16x0e+16x1o+16x1e+16x2e", 6, (32,), HOMO),
    ("C32 L3", "32x0e+32x1o+32x1e+32x2e", 3, (32,), HETERO),
]


def structures(n=2, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = supercell(bilayer("AB"), 6)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        out.append(atoms)
    return out


def timed(fn, repeats, clock=time.perf_counter):
    """Fastest of ``repeats`` runs after a warm-up: the machine may be shared, and other
    processes only ever make a run slower."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return float(np.min(times))


def measure(name, hidden, layers, radial, cutoffs, atoms, repeats, dtype=torch.float32):
    torch.manual_seed(0)
    cfg = HedgeNetElectronConfig(cutoffs=cutoffs, hidden_irreps=hidden, num_layers=layers,
                                 radial_hidden=radial, avg_num_neighbors={k: 30.0 for k in cutoffs})
    model = HedgeNetElectron(cfg).to(dtype)
    graph = build_batch(atoms, cutoffs, dtype=dtype)
    reverse = {rel: reverse_edge_index(graph.edges[rel], graph.n_atoms) for rel in cutoffs}
    targets = {t: {k: torch.zeros_like(v) for k, v in blocks.items()}
               for t, blocks in model(graph, reverse).items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def forward():
        with torch.no_grad():
            model(graph, reverse)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(graph, reverse)
        loss = sum(((out[t][k] - targets[t][k]) ** 2).mean() for t in out for k in out[t])
        loss.backward()
        opt.step()

    t_fwd = timed(forward, repeats)
    t_step = timed(step, repeats)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU seconds on one core: what contention on a shared machine hardly moves
    cpu_step = timed(step, repeats, clock=time.process_time)
    torch.set_num_threads(threads)
    edges = {rel: len(graph.edges[rel]) for rel in cutoffs}
    return {"name": name, "hidden_irreps": hidden, "num_layers": layers, "radial_hidden": list(radial),
            "cutoffs_a": cutoffs, "parameters": count_parameters(model), "edges": edges,
            "forward_s": round(t_fwd, 4), "train_step_s": round(t_step, 4),
            "train_step_s_per_structure": round(t_step / len(atoms), 4),
            "train_step_cpu_s_1_thread": round(cpu_step, 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="only the first two candidates")
    parser.add_argument("--only", nargs="*", help="candidate names to run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    atoms = structures(2)
    rows = []
    cands = CANDIDATES[:2] if args.quick else CANDIDATES
    if args.only:
        cands = [c for c in CANDIDATES if c[0] in args.only]
    load = os.getloadavg()[0]
    print(f"batch: 2 x {len(atoms[0])} atoms, float32, {torch.get_num_threads()} threads "
          f"(load average {load:.1f} on {os.cpu_count()} cores"
          f"{': shared machine, wall times are upper bounds' if load > 0.5 else ''})")
    print(f"{'model':<14}{'params':>9}{'forward s':>11}{'fwd+bwd s':>11}{'s/struct':>10}"
          f"{'1-core CPU s':>14}")
    for cand in cands:
        r = measure(*cand, atoms, args.repeats)
        rows.append(r)
        print(f"{r['name']:<14}{r['parameters']:>9}{r['forward_s']:>11.3f}{r['train_step_s']:>11.3f}"
              f"{r['train_step_s_per_structure']:>10.3f}{r['train_step_cpu_s_1_thread']:>14.3f}", flush=True)
    result = {"batch": "2 x 6x6 AB bilayer (144 atoms), 0.05 A displacements", "dtype": "float32",
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "load_average_at_start": round(load, 2),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "candidates": rows}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
