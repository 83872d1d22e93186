"""Relaxations of generated structures: ML potentials, VASP inputs and parsing, an open DFT engine, hulls."""
