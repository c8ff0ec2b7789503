"""Named tolerances of the symmetry layer (one place; documented)."""

from __future__ import annotations

#: Default spglib distance tolerance (Å) of :func:`diffcsp_pp.analyze`. The benchmarks use 0.1
#: (MP-20, MPTS-52, Carbon-24) and 0.01 (Perov-5), METHOD §6.
SYMPREC = 0.1

#: spglib angle tolerance (degrees); pymatgen's SpacegroupAnalyzer default.
ANGLE_TOLERANCE = 5.0

#: Floor (Å) of the distance allowed between an atom of spglib's symmetrised conventional cell and
#: the position regenerated from its orbit anchor by the Wyckoff op. The tolerance actually used is
#: ``max(ORBIT_TOL, symprec)``: spglib normally idealises positions exactly (deviations ~1e-12 Å),
#: but when its idealisation fails ("ssm_get_exact_positions failed") it returns the raw positions,
#: which it accepted as symmetric within ``symprec``; our output is then idealised by the ops.
ORBIT_TOL = 1e-4

#: Largest allowed |k - P_g(k)| of the symmetrised lattice before projection (spglib idealises the
#: metric, so the real residuals are ~1e-14).
K_FAMILY_TOL = 1e-6

#: Element types (Z = 1..100): the width of the one-hot atom types of the ab initio model.
NUM_ELEMENTS = 100
