"""Physical constants and unit conversions: the only place they are defined.

Inside the engine everything is in Angstrom, eV, amu and Kelvin; k-vectors are in
1/Angstrom including the factor 2*pi. Other units appear only at the edges
(tblite: bohr and Hartree; phonopy: THz).
"""

BOHR_A = 0.52917721067  # Angstrom per bohr (CODATA 2014, as tblite)
HARTREE_EV = 27.211386024367243  # eV per Hartree
KB_EV_PER_K = 8.617333262e-5  # Boltzmann constant, eV/K
HBAR_EV_S = 6.582119569e-16  # reduced Planck constant, eV s

# Velocity: (1/hbar) dE/dk with dE/dk in eV*Angstrom, result in 10^6 m/s.
VELOCITY_1E6_M_PER_S_PER_EV_A = 1e-10 / HBAR_EV_S / 1e6  # 0.1519267...

THZ_TO_CM1 = 33.35640951981521  # 1 THz in cm^-1
THZ_TO_MEV = 4.135667696  # 1 THz in meV

GRAPHENE_A = 2.46  # Angstrom, lattice constant of graphene (REBO equilibrium, experiment)
BILAYER_D = 3.38  # Angstrom, interlayer distance at the REBO+KC equilibrium
HBN_A, HBN_D = 2.504, 3.33  # Angstrom, h-BN lattice constant and layer spacing (experiment, bulk)
# graphene on hBN in one cell: the mean of the two lattice constants (each sheet strained 0.9 %,
# the commensurate stand-in for the 14 nm moire) and the distance of the lowest stacking
# (one C above B, the other above a BN hexagon's centre; Giovannetti et al., PRB 76, 073103 (2007))
GRAPHENE_HBN_A, GRAPHENE_HBN_D = (GRAPHENE_A + HBN_A) / 2, 3.35
MOS2_A, MOS2_THICKNESS, MOS2_D = 3.16, 3.17, 6.15  # Angstrom, 2H-MoS2: a, S-S height of a sheet, c/2 (bulk)

AMU_KG = 1.66053906660e-27  # kg per atomic mass unit
EV_J = 1.602176634e-19  # J per eV
# omega^2 in eV / (A^2 amu) -> (rad/s)^2
OMEGA2_SI_PER_EV_A2_AMU = EV_J / (1e-20 * AMU_KG)
