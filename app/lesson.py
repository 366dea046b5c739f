"""The lesson tab: what electron-phonon renormalisation is, what each plot shows, and
four exercises whose answers the app computes live (on the tab's structure and
models, in a small 3x3 Monte Carlo run of its own) rather than states.

    answer = EXERCISES[0].solve(session)   # a Markdown paragraph with the numbers
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

LESSON = r"""
### Electron-phonon renormalisation in one page

Electrons in a crystal feel the ions. At any temperature, even at $T = 0$, the ions are not
at rest: each phonon $\nu$ of frequency $\omega_\nu$ vibrates with a mean-square amplitude
$\frac{\hbar}{2\omega_\nu}\coth\frac{\hbar\omega_\nu}{2k_BT}$. The bands of the vibrating
crystal differ from the bands of the static one: they shift, and they blur. That change is
the **electron-phonon renormalisation**.

MLEPI measures it by brute force. Draw $m$ thermal configurations $y_j$ of a supercell
(frozen snapshots of the vibrating lattice), compute the bands of each, and average:

$$
\langle O \rangle_T = \frac{1}{Z}\int dy\; O(y)\, e^{-\beta E(y)} \;\simeq\; \frac{1}{m}\sum_{j=1}^{m} O(y_j)
\qquad \text{(Eq. 1)}
$$

$$
\sigma_{\langle O \rangle} = \frac{s_O}{\sqrt{m}},\qquad
s_O^2 = \frac{1}{m-1}\sum_j \big(O(y_j) - \langle O\rangle\big)^2
\qquad \text{(Eq. 2)}
$$

Here $O$ is the Fermi velocity $v_F$ (the slope of the Dirac cone at $K$) or the spectral
function $A(k, E)$. Machine-learned force fields (for the phonons) and Hamiltonians (for
the bands of each configuration) make each sample cheap enough to watch this converge.

**What the plots show.**
*Phonon dispersion*: $\omega_\nu(q)$ along $\Gamma$-M-K-$\Gamma$; click a point to see that mode move.
*Running $\langle v_F\rangle$*: Eq. 1 after each sample, the band is Eq. 2; the dashed line is
the static lattice. *$\langle v_F\rangle(T)$*: one point per finished temperature.
*$\langle A(k,E)\rangle$*: the unfolded spectral function; thermal motion broadens and shifts it.
*Bands near K*: the Dirac cone's profile, thermal mean with errors against the static one.

### Exercises (press *Compute* to let the app work out the answer on the current structure)
"""


@dataclass(frozen=True)
class Exercise:
    title: str
    question: str
    solve: Callable  # (Session, cancelled) -> Markdown answer


def _rms_displacement(engine, temperature: float, count: int = 8) -> float:
    u = engine.sampler.displacements(temperature, 0, count, engine.settings.seed)
    return float(np.sqrt(np.mean(np.sum(u ** 2, axis=-1))))


def zero_point(session, cancelled=lambda: False) -> str:
    """v_F at 0 K against the static lattice: the zero-point motion."""
    engine = session.monte_carlo.quick_engine((0.0, 300.0), n_samples=8)
    for _ in engine.run_all():
        if cancelled():
            engine.cancel()
    zero, warm = engine.statistics(0.0), engine.statistics(300.0)
    static = engine.static["vf"]
    rms0, rms300 = _rms_displacement(engine, 0.0), _rms_displacement(engine, 300.0)
    return (f"At **0 K** the atoms still move: the zero-point RMS displacement is **{rms0:.4f} Å** "
            f"(at 300 K {rms300:.4f} Å), because each mode keeps $\\hbar/2\\omega_\\nu$ of mean-square "
            f"amplitude (coth → 1). So v_F(0 K) = {zero['vf']:.4f} ± {zero['vf_se']:.4f} × 10⁶ m/s differs "
            f"from the static lattice's {static:.4f} by **{100 * zero['vf_rel_change']:+.2f} %** "
            f"({zero['samples']} samples, {session.system.summary()['stacking']}, 3x3 supercell); at 300 K the "
            f"change is {100 * warm['vf_rel_change']:+.2f} %.")


def samples_needed(session, cancelled=lambda: False, target: float = 1e-3) -> str:
    """How many samples a 0.1 % error bar on v_F needs (Eq. 2), from a run's own spread."""
    engine = session.monte_carlo.quick_engine((float(session.monte_carlo.temperature),), n_samples=12)
    for _ in engine.run_all():
        if cancelled():
            engine.cancel()
    t = float(session.monte_carlo.temperature)
    stats = engine.statistics(t)
    spread = stats["vf_se"] * np.sqrt(stats["samples"])  # s_O of Eq. 2
    need = int(np.ceil((spread / (target * stats["vf"])) ** 2))
    return (f"From {stats['samples']} samples at {t:g} K the per-sample spread of v_F is "
            f"s = {spread:.5f} × 10⁶ m/s. Eq. 2 gives σ = s/√m, so σ/v_F < {100 * target:.1f} % needs "
            f"m ≥ (s / {target:g} v_F)² = **{need} samples**; four times as many samples halve the error bar.")


def interlayer_modes(session, cancelled=lambda: False) -> str:
    """The interlayer shear and breathing modes at Gamma of the current structure."""
    from mlepi_core.modes import mode_at

    if len(set(np.asarray(session.system.atoms.arrays["layer"]))) < 2:
        return "This structure has one layer: there is no interlayer shear or breathing mode. Load a bilayer."
    atoms, phonon = session.system.lattice(session.system.forces, 3)  # the relaxed cell and its phonons
    modes = [mode_at(phonon, atoms, np.zeros(3), band) for band in range(3 * len(atoms))]
    named = {}
    for m in modes:
        if m.character.name in ("shear", "breathing") and m.character.name not in named:
            named[m.character.name] = m
    if not named:
        return "No shear or breathing mode was identified at Γ for this structure."
    text = " and ".join(f"the **{name}** mode at **{m.frequency_cm1:.1f} cm⁻¹**"
                        for name, m in sorted(named.items()))
    return (f"At Γ of this {session.system.summary()['stacking']} bilayer ({session.system.forces}): {text}. The layers "
            f"move rigidly against each other (layer-antisymmetric), held only by the weak van der Waals "
            f"(Kolmogorov-Crespi) coupling, so these frequencies are tens of cm⁻¹, against ~1,580 cm⁻¹ for "
            f"the in-plane G mode held by covalent bonds; being so soft, they are the most thermally "
            f"populated optical modes and shake the interlayer coupling γ₁.")


def gap_renormalisation(session, cancelled=lambda: False) -> str:
    """The band gap at 0 and 300 K against the static lattice: zero-point renormalisation and
    the temperature shift, paired over the same samples."""
    if set(session.system.atoms.get_chemical_symbols()) == {"C"}:
        return ("Graphene has no gap: its observable is v_F (exercise 1). Pick the **AA′ hBN bilayer** in the "
                "gallery and compute again.")
    try:
        engine = session.monte_carlo.quick_engine((0.0, 300.0), n_samples=4)
    except ValueError:  # a Hamiltonian with a long cutoff (GFN1-xTB) needs the 6x6 cell
        engine = session.monte_carlo.quick_engine((0.0, 300.0), n_samples=4, supercell=6)
    if engine.gap_probe is None:
        return "The static lattice of this structure has no gap above 0.1 eV: its observable is v_F."
    for _ in engine.run_all():
        if cancelled():
            engine.cancel()
    zero, warm = engine.statistics(0.0), engine.statistics(300.0)
    shift = engine.paired_difference(0.0, 300.0)
    static, n = engine.static, engine.settings.supercell
    return (f"The static lattice's gap is **{static['gap']:.4f} eV** ({static['gap_at']}). With the zero-point "
            f"motion it is {zero['gap']:.4f} ± {zero['gap_se']:.4f} eV: a zero-point renormalisation of "
            f"**{1000 * zero['gap_change']:+.1f} ± {1000 * zero['gap_se']:.1f} meV**. At 300 K the gap moves by a "
            f"further **{1000 * shift['dgap']:+.1f} ± {1000 * shift['dgap_se']:.1f} meV** (paired over the same "
            f"{shift['pairs']} samples: common random numbers cancel most of the noise; {n}x{n} cell, "
            f"{session.system.electrons}). Most semiconductors' gaps shrink as they warm (Varshni's law); the sign "
            f"and size here are this Hamiltonian model's, and few samples leave them uncertain.")


EXERCISES = (
    Exercise("Why does v_F change at 0 K?",
             "There are no thermal phonons at 0 K, yet the Monte Carlo v_F differs from the static "
             "lattice. Why, and by how much?", zero_point),
    Exercise("How many samples for a 0.1 % error bar?",
             "Eq. 2 says the error bar shrinks as 1/√m. How many samples does a 0.1 % error on v_F "
             "need at the current temperature?", samples_needed),
    Exercise("Which phonons hold the layers together?",
             "Find the interlayer shear and breathing modes at Γ (click the low branches of the "
             "dispersion). Why are they so much softer than the G mode?", interlayer_modes),
    Exercise("Does the gap open or close as the crystal warms?",
             "For a gapped bilayer (hBN), how much does zero-point motion move the gap, and how much more "
             "does 300 K add?", gap_renormalisation),
)
