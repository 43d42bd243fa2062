"""The model and how it is trained: config, GPT, hook points, gates, the training loop, weight sparsity,
seeding, sampling, metrics and general plots. Imports nothing from ``data``, ``wst``, ``spa``, ``book`` or ``build``.
"""
