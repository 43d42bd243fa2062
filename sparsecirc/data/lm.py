"""A language model's data and its standard measurements: token streams, validation loss, the 20 task metrics.

The data version is the model's (``cfg.model.data_version``, ``sparsecirc.data.versions``): v1 reads the fixed
corpus (``corpus.corpus_tokens``), v2 the streamed one (``corpus_v2.corpus_tokens_v2``, sized by
``cfg.data.n_simple_tokens``, written by generator version ``cfg.data.generator_version``), each with its own
tokenizer; task metrics read the same version's task data.

Example::

    tokens, val_tokens = lm_tokens(cfg)
    loss, n_windows = lm_val_loss(model, cfg, val_tokens)
"""
from __future__ import annotations

from sparsecirc.core.config import RunConfig
from sparsecirc.core.train import eval_windows, evaluate
from sparsecirc.data import simple_python_v2
from sparsecirc.data.corpus import corpus_tokens
from sparsecirc.data.corpus_v2 import corpus_tokens_v2
from sparsecirc.data.tasks import evaluate_all, task_metrics
from sparsecirc.data.tokenizer import load_tokenizer
from sparsecirc.data.versions import get_version


def lm_tokens(cfg: RunConfig, split: str | None = None):
    """Train and validation token streams (1-D int32) for a language-model config, in its data version; with
    ``split`` (``"train"`` or ``"val"``) that stream alone (the validation stream without building the train
    stream, which for data v2 is tens of millions of generated tokens)."""
    if split not in (None, "train", "val"):
        raise ValueError(f"split must be 'train', 'val' or None, got {split!r}")
    splits = ("train", "val") if split is None else (split,)
    version = get_version(cfg.model.data_version)
    tok = load_tokenizer(version=version.name)
    if cfg.model.d_vocab < tok.vocab_size:
        raise ValueError(f"model.d_vocab {cfg.model.d_vocab} is smaller than the tokenizer's {tok.vocab_size} tokens; "
                         f"set model.d_vocab >= {tok.vocab_size}")
    if version.streamed:
        if cfg.data.n_simple_tokens is None:
            raise ValueError(f"model.data_version {version.name!r} streams its programs: set data.n_simple_tokens "
                             "(tokens of the generated part of the train stream, e.g. 60_000_000)")
        kw = {"seed": cfg.data.seed, "parts": cfg.data.parts, "n_simple_tokens": cfg.data.n_simple_tokens,
              "generator_version": cfg.data.generator_version or simple_python_v2.GENERATOR_VERSION}
        out = tuple(corpus_tokens_v2(sp, tok, **kw) for sp in splits)
    else:
        kw = {"seed": cfg.data.seed, "parts": cfg.data.parts}
        if cfg.data.n_simple is not None:
            kw["n_simple"] = cfg.data.n_simple
        out = tuple(corpus_tokens(sp, tok, **kw) for sp in splits)
    return out if split is None else out[0]


def lm_val_loss(model, cfg: RunConfig, val_tokens) -> tuple[float, int]:
    """Validation loss exactly as the producer measures it: fixed windows of the validation stream, fp32.

    Returns (loss in nats/token, number of windows).
    """
    windows = eval_windows(val_tokens, cfg.train.eval_batches * cfg.train.batch_size, cfg.model.n_ctx)
    return evaluate(model, windows), len(windows)


def lm_task_metrics(model, names=None) -> dict:
    """Loss and accuracy on the test split of all 20 P1 tasks (or of ``names``), in the model's data version
    (recorded in every language model's metrics)."""
    scores = evaluate_all(model, "test") if names is None else {t: task_metrics(model, t, "test") for t in names}
    return {t: {"loss": round(m["loss"], 5), "accuracy": round(m["accuracy"], 5)} for t, m in scores.items()}
