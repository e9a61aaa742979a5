"""Reproducible worker image: wheelhouse, build, bit-identical verification, layer diffs."""
