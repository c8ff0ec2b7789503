"""Diffusion processes on k, Wyckoff-projected fractional coordinates and atom types (no pymatgen)."""
