"""Worker for tests/test_runs.py's random kill-and-resume test: a small weight-sparse run with a checkpoint every
2 steps into OUT (``--resume`` continues it).

    python tests/resume_worker.py OUT [--resume]
"""
import sys

import torch

from sparsecirc.core.config import make_config
from sparsecirc.core.train import train


def main(out: str, resume: bool) -> None:
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(0, 40, (5000,), generator=g)
    toks[1::2] = (toks[0::2] + 1) % 40
    cfg = make_config("ci", model={"n_layer": 2, "d_model": 32, "d_head": 8, "n_ctx": 16, "d_vocab": 40},
                      train={"steps": 40, "batch_size": 8, "eval_every": 10, "eval_batches": 1, "lr": 1e-2,
                             "checkpoint_every": 2},
                      sparsity={"weight_nonzero_frac": 0.25, "anneal_end_frac": 0.5})
    train(cfg, toks, toks, out=out, resume=resume, progress=False)


if __name__ == "__main__":
    main(sys.argv[1], "--resume" in sys.argv[2:])
