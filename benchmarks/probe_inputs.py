"""Bad-input probes, as a demanding user would try them: does each give one named error, a vague one, or none?

    .venv/bin/python benchmarks/probe_inputs.py          # one line per probe, then tried / clear / weak / wrong

A probe is *clear* when it raises the expected error type with a message that names the culprit (the regex),
*weak* when it raises something else (a traceback from deep inside), *wrong* when it raises nothing although it
should (or, for the probes that must succeed, when it fails). The probes are the ones the run-safety issue lists;
each also has a unit test in tests/test_runs.py.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import torch

from sparsecirc import artifacts, build
from sparsecirc.artifacts import ArtifactError, FolderBusyError
from sparsecirc.core.config import ConfigError, ModelConfig, make_config, scale_overrides
from sparsecirc.core.model import GPT
from sparsecirc.core.train import train
from sparsecirc.data.lm import lm_tokens
from sparsecirc.data.tasks import load_task, pad_batch
from sparsecirc.data.tokenizer import load_tokenizer

TINY = {"n_layer": 1, "d_model": 32, "d_head": 8, "n_ctx": 16, "d_vocab": 40}
TMP = Path(tempfile.mkdtemp(prefix="probes-"))


def tiny_cfg():
    return make_config("ci", model=TINY, train={"steps": 2, "batch_size": 2, "eval_every": 2, "eval_batches": 1})


def tiny_train(out, **kw):
    toks = torch.randint(0, 40, (2000,), generator=torch.Generator().manual_seed(0))
    return train(tiny_cfg(), toks, toks, out=out, progress=False, **kw)


def existing_run():
    tiny_train(TMP / "run")
    tiny_train(TMP / "run")


def busy_run():
    with artifacts.folder_lock(TMP / "busy"):
        tiny_train(TMP / "busy")


def yaml_syntax():
    (TMP / "bad.yaml").write_text("kind: lm\nscales: {ci: {train: {steps: 3}}\n")
    artifacts.read_yaml(TMP / "bad.yaml")


def file_as_out():
    (TMP / "afile").write_text("x")
    tiny_train(TMP / "afile")


# (name, callable, expected exception or None for "must succeed", regex the message must match)
PROBES = [
    ("decode([5000])", lambda: load_tokenizer().decode([5000]), ValueError, r"5000.*vocabulary"),
    ("decode([-1])", lambda: load_tokenizer().decode([-1]), ValueError, r"-1.*vocabulary"),
    ("model(token >= d_vocab)", lambda: GPT(ModelConfig(**TINY))(torch.tensor([[1, 40]])), ValueError, r"40"),
    ("model(token < 0)", lambda: GPT(ModelConfig(**TINY))(torch.tensor([[-3, 1]])), ValueError, r"-3"),
    ("model(too long)", lambda: GPT(ModelConfig(**TINY))(torch.zeros(1, 17, dtype=torch.long)), ValueError, "n_ctx"),
    ("encode(lone surrogate)", lambda: load_tokenizer().encode("\ud800"), ValueError, "surrogate"),
    ("pad_batch(empty prompt)", lambda: pad_batch([[]]), ValueError, "empty"),
    ("lr: 'fast'", lambda: make_config("ci", train={"lr": "fast"}), ConfigError, r"TrainConfig\.lr"),
    ("lr: '3e-3' (must work)", lambda: make_config("ci", train={"lr": "3e-3"}), None, ""),
    ("n_head: '2'", lambda: make_config("ci", model={"n_head": "2"}), ConfigError, r"n_head"),
    ("weight_nonzero_frac: 'half'", lambda: make_config("ci", sparsity={"weight_nonzero_frac": "half"}),
     ConfigError, "weight_nonzero_frac"),
    ("weight_decay: 'lots'", lambda: make_config("ci", train={"weight_decay": "lots"}), ConfigError, "weight_decay"),
    ("eval_every: 0", lambda: make_config("ci", train={"eval_every": 0}), ConfigError, "eval_every"),
    ("d_vocab: 100", lambda: lm_tokens(make_config("ci", model={"d_vocab": 100})), ValueError, "d_vocab"),
    ("scales as a list", lambda: scale_overrides({"scales": ["ci"]}, "ci", "x.yaml"), ConfigError, r"x\.yaml.*scales"),
    ("no ci section", lambda: scale_overrides({"scales": {"book": {}}}, "ci", "x.yaml"), ConfigError, "'ci'"),
    ("YAML syntax error", yaml_syntax, ArtifactError, r"bad\.yaml: line \d+"),
    ("--out is a file", file_as_out, FileExistsError, "is a file"),
    ("train over an existing run", existing_run, FileExistsError, "--resume"),
    ("second writer of a run folder", busy_run, FolderBusyError, "another process"),
    ("--resume with no checkpoint", lambda: tiny_train(TMP / "empty", resume=True), FileNotFoundError,
     "no checkpoint"),
    ("unknown artifact id", lambda: build.get_or_compute("wst-nope"), ArtifactError, "known"),
    ("unknown scale", lambda: build.get_or_compute("wst-zoo-l2d128-sparse", scale="big"), ValueError, "'ci'"),
    ("unknown task", lambda: load_task("nope"), ValueError, "valid"),
    ("unknown split", lambda: load_task("var_if", "dev"), ValueError, "split"),
]


def classify(fn, expected, pattern) -> str:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 -- the point is to see what comes out
        if expected is not None and isinstance(e, expected) and re.search(pattern, str(e)):
            return "clear"
        return f"weak   ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})"
    return "clear" if expected is None else "wrong  (no error)"


def main() -> None:
    totals = {"clear": 0, "weak": 0, "wrong": 0}
    for name, fn, expected, pattern in PROBES:
        verdict = classify(fn, expected, pattern)
        totals[verdict.split()[0]] += 1
        print(f"{name:34s} {verdict}")
    print(f"tried {len(PROBES)} | clear {totals['clear']} | weak {totals['weak']} | wrong {totals['wrong']}")


if __name__ == "__main__":
    main()
