"""A language model's data and its standard measurements: token streams, validation loss, the 20 task metrics.

Example::

    tokens, val_tokens = lm_tokens(cfg)
    loss, n_windows = lm_val_loss(model, cfg, val_tokens)
"""
from __future__ import annotations

from sparsecirc.core.config import RunConfig
from sparsecirc.core.train import eval_windows, evaluate
from sparsecirc.data.corpus import corpus_tokens
from sparsecirc.data.tasks import evaluate_all
from sparsecirc.data.tokenizer import load_tokenizer


def lm_tokens(cfg: RunConfig):
    """Train and validation token streams (1-D) for a language-model config."""
    tok = load_tokenizer()
    if cfg.model.d_vocab < tok.vocab_size:
        raise ValueError(f"model.d_vocab {cfg.model.d_vocab} is smaller than the tokenizer's {tok.vocab_size} tokens; "
                         f"set model.d_vocab >= {tok.vocab_size}")
    kw = {"seed": cfg.data.seed, "parts": cfg.data.parts}
    if cfg.data.n_simple is not None:
        kw["n_simple"] = cfg.data.n_simple
    return corpus_tokens("train", tok, **kw), corpus_tokens("val", tok, **kw)


def lm_val_loss(model, cfg: RunConfig, val_tokens) -> tuple[float, int]:
    """Validation loss exactly as the producer measures it: fixed windows of the validation stream, fp32.

    Returns (loss in nats/token, number of windows).
    """
    windows = eval_windows(val_tokens, cfg.train.eval_batches * cfg.train.batch_size, cfg.model.n_ctx)
    return evaluate(model, windows), len(windows)


def lm_task_metrics(model) -> dict:
    """Loss and accuracy on the test split of all 20 P1 tasks (recorded in every language model's metrics)."""
    return {t: {"loss": round(m["loss"], 5), "accuracy": round(m["accuracy"], 5)}
            for t, m in evaluate_all(model, "test").items()}
