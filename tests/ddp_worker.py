"""Worker for tests/test_distributed.py: train a tiny sparse model, write losses and a weight digest.

    torchrun --nproc_per_node 2 tests/ddp_worker.py OUT.json BATCH
"""
import json
import sys

import torch

from sparsecirc.core.config import make_config
from sparsecirc.core.sparsity import Projector, SparsityConfig
from sparsecirc.core.train import dist_info, train


def main(out: str, batch: int) -> None:
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(0, 40, (5000,), generator=g)
    toks[1::2] = (toks[0::2] + 1) % 40
    cfg = make_config("ci", model={"n_layer": 1, "d_model": 32, "d_head": 8, "n_ctx": 16, "d_vocab": 40},
                      train={"steps": 8, "batch_size": batch, "eval_every": 4, "eval_batches": 1, "lr": 1e-2,
                             "grad_rms": "normalize", "eps": 0.1})
    sp = SparsityConfig(weight_nonzero_frac=0.25, anneal_end_frac=0.5)
    model, hist = train(cfg, toks, toks, progress=False, hooks=lambda m: Projector(m, sp, 8).train_hooks())
    rank, world = dist_info()
    masks = {n: (p != 0).flatten().tolist() for n, p in model.named_parameters() if n.endswith("W_in.weight")}
    digest = {n: float(p.double().sum()) for n, p in model.named_parameters()}
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"world": world, "train_loss": hist.train_loss, "val_loss": hist.val_loss, "masks": masks,
                   "digest": digest}, f)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], int(sys.argv[2]))
