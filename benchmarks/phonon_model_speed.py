"""Time HedgeNet-Phonon candidates: one training step and one inference on 8 cells of 64 atoms.

A training step is what ``mlepi train phonon`` does per batch: energies, forces by
autograd with the graph kept (create_graph), the energy+force loss, its gradient and an
Adam step. Inference is energies and forces without parameter gradients. The batch is
the first 8 frames of data/phonon/phonon_set.xyz (4x4 AB bilayers with displacements)
or, without the data set, 8 displaced 4x4 AB bilayers. s/epoch assumes the 1,620
training frames in batches of 8 plus the 180 validation frames.

Writes benchmarks/results/phonon_model_speed_<N>threads.json. On a busy machine the wall
times grow (and multi-threaded ones erratically); the CPU time of a one-thread run does
not, and equals the wall time on an idle core. Run:
    .venv/bin/python benchmarks/phonon_model_speed.py [--threads N] [--only NAME,NAME] [--dtype float32]
"""

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mlepi_core.graph import batch_graphs, build_graph
from mlepi_core.models import count_parameters
from mlepi_core.models.phonon import HedgeNetPhonon, HedgeNetPhononConfig

RESULTS = Path(__file__).parent / "results"
DATA = Path(__file__).parent.parent / "data" / "phonon" / "phonon_set.xyz"
N_TRAIN, N_VAL, BATCH = 1620, 180, 8

HETERO = {"intra": 5.0, "inter": 6.0}
CANDIDATES = {
    # name: model settings; the shipped choices are configs/phonon_*.yaml (marked)
    "hedgenet_16ch": dict(cutoffs=HETERO, hidden_irreps="16x0e+16x1o", num_layers=2),
    "hedgenet_24ch": dict(cutoffs=HETERO, hidden_irreps="24x0e+24x1o", num_layers=2),
    "hedgenet_32ch (shipped)": dict(cutoffs=HETERO, hidden_irreps="32x0e+32x1o", num_layers=2),
    "hedgenet_32ch_intra4.5": dict(cutoffs={"intra": 4.5, "inter": 6.0}, hidden_irreps="32x0e+32x1o",
                                   num_layers=2),
    "hedgenet_32ch_radial64": dict(cutoffs=HETERO, hidden_irreps="32x0e+32x1o", num_layers=2,
                                   radial_hidden=(64, 64)),
    "homogeneous_2L_32ch (shipped)": dict(cutoffs={"all": 6.0}, hidden_irreps="32x0e+32x1o", num_layers=2),
    "homogeneous_4L_26ch (shipped)": dict(cutoffs={"all": 6.0}, hidden_irreps="26x0e+26x1o", num_layers=4),
}


def frames8():
    if DATA.is_file():
        from mlepi_core.data.extxyz import read_extxyz

        return read_extxyz(DATA)[:BATCH], str(DATA)
    from mlepi_core.structures import bilayer, supercell

    rng = np.random.default_rng(0)
    out = []
    for _ in range(BATCH):
        a = supercell(bilayer("AB"), 4)
        a.positions += rng.normal(scale=0.04, size=a.positions.shape)
        out.append(a)
    return out, "synthetic displaced 4x4 AB bilayers"


def median_time(fn, repeats):
    """Median and minimum wall time, and median CPU time of this process (all its threads).

    The CPU time hardly depends on what else runs on the machine; with one thread it is the
    wall time the step would take on an idle core.
    """
    fn()  # warm-up (allocations, first-call overheads)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.min(wall)), float(np.median(cpu))


def bench(name, settings, frames, dtype, repeats):
    torch.manual_seed(0)
    cfg = HedgeNetPhononConfig(**settings, avg_num_neighbors={r: 25.0 for r in settings["cutoffs"]},
                               energy_scale_ev=2.8, atomic_energies_ev={"C": -7.3})
    model = HedgeNetPhonon(cfg).to(dtype)
    graph = batch_graphs([build_graph(a, cfg.cutoffs, dtype=dtype) for a in frames])
    energy = torch.tensor([a.info.get("energy", 0.0) for a in frames], dtype=dtype)
    forces = torch.cat([torch.as_tensor(a.arrays.get("forces", np.zeros((len(a), 3))), dtype=dtype)
                        for a in frames])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)

    def train_step():
        opt.zero_grad(set_to_none=True)
        out = model(graph, training=True)
        loss = ((out["energy"] - energy) / 64).pow(2).mean() + 10 * (out["forces"] - forces).pow(2).mean()
        loss.backward()
        opt.step()

    def inference():
        model(graph, compute_forces=True)

    t_train, t_train_min, cpu_train = median_time(train_step, repeats)
    t_inf, t_inf_min, cpu_inf = median_time(inference, repeats)
    n_steps, n_val = math.ceil(N_TRAIN / BATCH), math.ceil(N_VAL / BATCH)
    epoch_s = n_steps * t_train + n_val * t_inf
    return {
        "name": name, "settings": {k: v for k, v in settings.items()}, "parameters": count_parameters(model),
        "edges_per_atom": {r: round(len(e) / graph.n_atoms, 2) for r, e in graph.edges.items()},
        "train_step_s": round(t_train, 4), "train_step_min_s": round(t_train_min, 4),
        "train_step_cpu_s": round(cpu_train, 4),
        "inference_s": round(t_inf, 4), "inference_min_s": round(t_inf_min, 4),
        "inference_cpu_s": round(cpu_inf, 4),
        "estimated_epoch_s": round(epoch_s, 1),
        "estimated_epoch_cpu_s": round(n_steps * cpu_train + n_val * cpu_inf, 1),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--only", help="comma-separated candidate names")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    names = args.only.split(",") if args.only else list(CANDIDATES)
    frames, source = frames8()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    print(f"{'candidate':<32}{'params':>9}{'train s/step':>14}{'(cpu s)':>9}{'infer s':>10}{'s/epoch':>10}"
          "  edges/atom")
    for name in names:
        r = bench(name, CANDIDATES[name], frames, dtype, args.repeats)
        rows.append(r)
        print(f"{name:<32}{r['parameters']:>9}{r['train_step_s']:>14.3f}{r['train_step_cpu_s']:>9.3f}"
              f"{r['inference_s']:>10.3f}"
              f"{r['estimated_epoch_s']:>10.0f}  {r['edges_per_atom']}", flush=True)
    result = {
        "batch": f"{BATCH} cells x {len(frames[0])} atoms ({source})", "dtype": args.dtype,
        "threads": torch.get_num_threads(), "load_average_1min_at_start": load,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "device": "cpu", "torch": torch.__version__, "candidates": rows,
    }
    out = RESULTS / f"phonon_model_speed_{torch.get_num_threads()}threads.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    if args.only and previous.get("candidates"):  # keep the rows of candidates not re-run
        kept = [r for r in previous["candidates"] if r["name"] not in names]
        result["candidates"] = kept + rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
