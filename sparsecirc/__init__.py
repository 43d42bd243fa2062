"""sparsecirc: weight-sparse transformers (Gao et al. 2025) and sparse attention post-training (Draye, Lei et al.
2025), reproduced at CPU scale. Chapters import this package and define no reusable code.

The house (README, "A map of the house"): ``core`` (model, training, sparsity), ``data`` (corpus, tokenizer,
tasks), ``wst`` (paper 1: pruning, circuits, case studies), ``spa`` (paper 2: gated attention, GECO), ``book``
(chapters, claims, scorecard), ``artifacts`` (files, registry) and ``build`` (producers, ``get_or_compute``).
"""
from sparsecirc import offline  # first: the offline environment before anything imports datasets  # isort: skip
from sparsecirc import artifacts, book
from sparsecirc.book.chapters import setup_notebook
from sparsecirc.book.check import claim
from sparsecirc.build import get_or_compute
from sparsecirc.core import hooks, repro
from sparsecirc.core.config import DataConfig, ModelConfig, RunConfig, TrainConfig, make_config
from sparsecirc.core.hooks import patch, record
from sparsecirc.core.model import GPT
from sparsecirc.core.train import History, train
from sparsecirc.version import __version__

__all__ = ["GPT", "ModelConfig", "DataConfig", "TrainConfig", "RunConfig", "make_config", "train", "History",
           "record", "patch", "setup_notebook", "get_or_compute", "claim", "artifacts", "book", "hooks", "repro",
           "offline", "__version__"]
