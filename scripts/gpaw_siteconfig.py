# GPAW build settings for mlepi (read through GPAW_CONFIG by scripts/setup.sh):
# serial build against Debian's libxc and OpenBLAS; no MPI, so a half-installed MPI
# on the machine cannot leave GPAW linked without BLAS and libxc.
mpi = False
compiler = 'gcc'
libraries = ['xc', 'openblas']
