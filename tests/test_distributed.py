"""Data-parallel training under torchrun (gloo, 2 CPU processes) follows the 1-process run with the same global batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(tmp_path, nproc: int, batch: int) -> list[dict]:
    out = tmp_path / f"n{nproc}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(29500 + os.getpid() % 1000 + nproc), str(WORKER), str(out), str(batch)]
    if nproc == 1:
        env.pop("WORLD_SIZE", None)
        cmd = [sys.executable, str(WORKER), str(out), str(batch)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(Path(f"{out}.{i}").read_text()) for i in range(nproc)]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    (one,) = _run(tmp_path, 1, 8)
    r0, r1 = _run(tmp_path, 2, 8)
    assert r0["world"] == 2 and one["world"] == 1
    assert r0["masks"] == r1["masks"]  # identical top-k masks on every rank
    assert r0["digest"] == r1["digest"]
    assert r0["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4, abs=1e-5)
    assert r0["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4, abs=1e-5)
