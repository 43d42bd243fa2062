"""The offline environment, set once, before anything imports ``datasets`` / ``huggingface_hub``.

Both look things up on the network at import time unless ``HF_DATASETS_OFFLINE`` / ``HF_HUB_OFFLINE`` are set
(STYLE §10). ``sparsecirc/__init__.py`` imports this module first, and every ``import sparsecirc.<anything>`` runs
that ``__init__`` before the submodule, so this is the only place the package sets them (the Makefile and
``.ci/run`` export them too, for tools that run outside the package).
"""
import os
import warnings

OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
for _name, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_name, _value)

# datasets imports tqdm.auto, which warns on stderr in kernels without ipywidgets; our bars are plain tqdm
warnings.filterwarnings("ignore", message="IProgress not found")
