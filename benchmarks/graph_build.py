"""Time the heterogeneous graph of the 1.08-degree twisted bilayer (11,164 atoms, r_c = 6 A).

Writes benchmarks/results/graph.json and prints a short table. Run:
    .venv/bin/python benchmarks/graph_build.py
"""

import json
import platform
import time
from pathlib import Path

import numpy as np

from mlepi_core.graph import build_graph
from mlepi_core.structures import twisted_bilayer

OUT = Path(__file__).parent / "results" / "graph.json"


def best_of(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, float(np.median(times)), float(np.max(times))


def main():
    atoms, t_struct, _ = best_of(lambda: twisted_bilayer(30, 31))
    graph, t_graph, t_graph_max = best_of(lambda: build_graph(atoms, {"intra": 6.0, "inter": 6.0}))
    result = {
        "tbg_1.08_atoms": len(atoms),
        "twist_deg": atoms.info["twist_deg"],
        "structure_build_s": round(t_struct, 4),
        "graph_build_s": round(t_graph, 4),
        "graph_build_worst_s": round(t_graph_max, 4),
        "edges": {rel: len(e) for rel, e in graph.edges.items()},
        "cutoffs_a": graph.cutoffs,
        # the same figure nested, for readers that split keys on "."
        "tbg_1": {"08_atoms": len(atoms)},
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"{'twisted bilayer (30,31)':<28}{len(atoms):>8} atoms  {atoms.info['twist_deg']:.4f} deg")
    print(f"{'structure build (median)':<28}{t_struct:>8.3f} s")
    print(f"{'graph build r_c 6 A (median)':<28}{t_graph:>8.3f} s   (worst {t_graph_max:.3f} s)")
    print(f"{'edges intra / inter':<28}{len(graph.edges['intra']):>8} / {len(graph.edges['inter'])}")


if __name__ == "__main__":
    main()
