"""A Monte Carlo run's results on disk: ``results.json`` (per temperature and Hamiltonian
model: mean v_F and gamma_1 with standard errors, changes from the static lattice, paired
differences), ``vf_vs_T.csv``, ``vf_vs_T.png`` (the paper's Fig. 4e, f), the averaged
spectral functions (``spectral.npz``, ``spectral.png``). Every file is written whole or
not at all."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from .engine import MonteCarloEngine
from .files import write_atomic, write_text_atomic
from .statistics import running_error


def write_results(folder, runs: dict[str, MonteCarloEngine], provenance: dict | None = None) -> dict:
    """JSON + CSV + PNG of one or more runs on the same samples (e.g. "ml" and "reference").

    The JSON holds, per temperature, {"T", "samples", <run>: {"vf", "vf_se", "gamma1", ...}}
    and "static": {"vf_<run>": ...}; plots: v_F(T) with error bars and the static lines
    (the paper's Fig. 4f) and the running standard error against sample count (Fig. 4e).
    """
    import json
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(runs)
    temps = sorted({t for e in runs.values() for t in e.per_sample if e.per_sample[t]})
    rows = []
    for t in temps:
        row = {"T": t, "samples": min(len(runs[n].per_sample.get(t, {})) for n in names)}
        for n in names:
            row[n] = runs[n].statistics(t)
        rows.append(row)
    result = {"temperatures": rows, "static": {f"vf_{n}": runs[n].static["vf"] for n in names}
              | {f"gamma1_{n}": runs[n].static["gamma1"] for n in names}
              | ({"vf_ref": runs["reference"].static["vf"]} if "reference" in runs else {}),
              "paired_to_first_T": {n: [runs[n].paired_difference(temps[0], t) for t in temps[1:]]
                                    for n in names},
              "settings": asdict(runs[names[0]].settings), "provenance": provenance or {},
              "units": {"vf": "1e6 m/s", "gamma1": "eV", "gap": "eV", "T": "K"}}
    for n in names:  # a gapped material: its static gaps (the rows and pairs hold the thermal ones)
        result["static"].update({f"{k}_{n}": runs[n].static[k] for k in ("gap", "gap_at") if k in runs[n].static})
    for n in names:
        result["static"][f"near_k_{n}"] = runs[n].static_near_k.tolist()
        for row in rows:
            prof = runs[n].band_profile(row["T"])
            row[n]["near_k_ev"] = prof.get("mean", prof["static"]).tolist()
            row[n]["near_k_se_ev"] = prof["se"].tolist() if "se" in prof else None
    result["near_k_q_per_a"] = list(runs[names[0]].probe.q_values)
    write_spectra(folder / "spectral.npz", runs, temps)
    write_text_atomic(folder / "results.json", json.dumps(result, indent=1, default=float))
    with open(folder / "vf_vs_T.csv", "w") as f:
        f.write("T_K," + ",".join(f"vf_{n},vf_se_{n},gamma1_{n},gamma1_se_{n}" for n in names) + "\n")
        for row in rows:
            f.write(f"{row['T']}," + ",".join(
                f"{row[n]['vf']},{row[n]['vf_se']},{row[n]['gamma1']},{row[n]['gamma1_se']}"
                for n in names) + "\n")

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    colors = ["tab:blue", "k", "tab:green"]
    for n, c in zip(names, colors):
        vf = [r[n]["vf"] for r in rows]
        se = [r[n]["vf_se"] for r in rows]
        ax_t.errorbar(temps, vf, yerr=se, marker="o", capsize=3, color=c, label=f"{n}, thermal")
        ax_t.axhline(runs[n].static["vf"], color=c, ls="--", lw=1, label=f"{n}, static lattice")
        for t in temps:
            _, values = runs[n].sample_values(t)
            err = running_error(values) / np.mean(values)
            ax_m.plot(np.arange(1, len(err) + 1), 100 * err, color=c, alpha=0.4 + 0.6 * (t == temps[0]),
                      marker="o" if len(err) < 20 else None, label=f"{n}, {t:g} K")
    ax_t.set_xlabel("temperature (K)")
    ax_t.set_ylabel("Fermi velocity (10$^6$ m/s)")
    ax_t.legend(fontsize=8)
    ax_m.set_xlabel("samples")
    ax_m.set_ylabel("standard error of <v$_F$> (%)")
    ax_m.set_yscale("log")
    ax_m.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(folder / "vf_vs_T.png", dpi=150)
    plt.close(fig)
    plot_spectra(folder / "spectral.png", runs[names[0]], temps, title=names[0])
    return result


def write_spectra(path, runs: dict[str, MonteCarloEngine], temps: list[float]) -> None:
    """The averaged unfolded spectral functions of every run and temperature (npz, atomic)."""
    first = runs[next(iter(runs))].spectral
    arrays = {"energies_ev": first.energies, "distances_per_a": first.distances,
              "k_cart_per_a": first.k_cart, "label_distances": first.label_distances,
              "labels": np.array(first.labels), "temperatures_k": np.array(temps, dtype=float)}
    for n, e in runs.items():
        arrays[f"static_{n}"] = e.static_spectrum
        arrays[f"mean_{n}"] = np.array([e.spectral_mean(t)[0] for t in temps])
        arrays[f"samples_{n}"] = np.array([e.spectral_mean(t)[1] for t in temps])
    def save(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    write_atomic(path, save)


def plot_spectra(path, engine: MonteCarloEngine, temps: list[float], title: str = "") -> None:
    """Averaged A(k, E) along Gamma-M-K-Gamma at each temperature, pristine bands dashed."""
    import matplotlib.pyplot as plt

    sm = engine.spectral
    fig, axes = plt.subplots(1, max(1, len(temps)), figsize=(3.2 * max(1, len(temps)), 3.6),
                             sharey=True, squeeze=False)
    for ax, t in zip(axes[0], temps or [0.0]):
        a, count = engine.spectral_mean(t)
        ax.pcolormesh(sm.distances, sm.energies, a.T, shading="nearest", cmap="magma",
                      vmax=np.percentile(engine.static_spectrum, 99.5))
        ax.set_xticks(sm.label_distances, sm.labels)
        for x in sm.label_distances:
            ax.axvline(x, color="w", lw=0.5)
        ax.set_title(f"{title} {t:g} K ({count} samples)", fontsize=9)
    axes[0][0].set_ylabel("E - E$_F$ (eV)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
