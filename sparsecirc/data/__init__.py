"""Data: the offline Python corpus, the simple-Python generator, the BPE tokenizer, P1's 20 tasks and a
language model's token streams and standard measurements (``lm``).
"""
