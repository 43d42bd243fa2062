"""Paper 2, sparse attention post-training (Draye, Lei et al. 2025): GECO, attention-edge counts and graphs, the
addition toy, post-training the code model, and their plots.
"""
