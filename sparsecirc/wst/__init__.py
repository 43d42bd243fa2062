"""Paper 1, weight-sparse transformers (Gao et al. 2025): node-mask pruning, circuits, the circuit-size study,
the attacks, and one module per case study (``quote``, ``vartype``, ``bracket``).
"""
