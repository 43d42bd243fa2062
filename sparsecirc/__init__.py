"""sparsecirc: weight-sparse transformers (Gao et al. 2025) and sparse attention post-training (Draye, Lei et al.
2025), reproduced at CPU scale. Chapters import this package and define no reusable code.
"""
import os as _os

# datasets / huggingface_hub ping the network on import unless told otherwise (STYLE §10)
_os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
_os.environ.setdefault("HF_HUB_OFFLINE", "1")

import warnings as _warnings  # noqa: E402

# datasets imports tqdm.auto, which warns on stderr in kernels without ipywidgets; our bars are plain tqdm
_warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"

from . import artifacts, check, hooks, repro  # noqa: E402
from .artifacts import get_or_compute  # noqa: E402
from .check import claim  # noqa: E402
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig, make_config  # noqa: E402
from .hooks import patch, record  # noqa: E402
from .repro import setup_notebook  # noqa: E402
from .model import GPT  # noqa: E402
from .train import History, train  # noqa: E402

__all__ = ["GPT", "ModelConfig", "DataConfig", "TrainConfig", "RunConfig", "make_config", "train", "History",
           "record", "patch", "setup_notebook", "get_or_compute", "claim", "artifacts", "book", "check", "hooks", "repro", "__version__"]


def __getattr__(name):  # ``sc.book`` on first use: `python -m sparsecirc.book` must not find it imported already
    if name == "book":
        import importlib
        return importlib.import_module(".book", __name__)
    raise AttributeError(f"module 'sparsecirc' has no attribute {name!r}")
