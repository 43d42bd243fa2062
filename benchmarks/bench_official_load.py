"""Load time and peak memory of ``sparsecirc.official.load`` at P1's smallest sweep shape.

    .venv/bin/python benchmarks/bench_official_load.py [--repeats 3] [--threads 1] [--density 0.0625]

Writes an official-format folder (``beeg_config.json`` + ``final_model.pt``: 8 layers, d_model 256, d_head 16,
d_mlp 1024, vocab 2048, wpe of 1024 rows, RMSNorm, AbsTopK 1/4 at all 8 sites, sink, bigram table; random sparse
matrices at ``--density``) into a temporary folder, then loads it ``--repeats`` times, each in a fresh process
(so the peak is that load's): the seconds of ``load`` (memory-mapped torch.load with weights_only, the strict
mapping, one copy into a new GPT), the process's peak resident memory during it above its level before it (Linux:
VmHWM after resetting it), and for scale the seconds of a plain ``torch.load(weights_only=True)`` of the same file
afterwards (warm page cache), beside the file's size and the model's float32 bytes.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sparsecirc import official

SHAPE = {"block_size": 1024, "vocab_size": 2048, "n_layer": 8, "n_head": 16, "d_head": 16, "d_model": 256,
         "d_mlp": 1024, "rms_norm": True, "afrac": 0.25, "sink": True, "enable_bigram_table": True, "bias": False,
         "tied_unembed": False, "afrac_loctypes": "attn_in,attn_q,attn_k,attn_v,attn_out,mlp_in,mlp_neuron,mlp_out"}


def write_folder(folder: Path, density: float, seed: int = 0) -> None:
    """The official format of ``SHAPE``: random sparse matrices, unit norm gains, random sink logits."""
    g = torch.Generator().manual_seed(seed)
    c = SHAPE
    D, V, hd, dm = c["d_model"], c["vocab_size"], c["n_head"] * c["d_head"], c["d_mlp"]

    def sparse(*shape):
        return torch.randn(*shape, generator=g) * 0.02 * (torch.rand(*shape, generator=g) < density)

    sd = {"transformer.wte.weight": sparse(V, D), "transformer.wpe.weight": sparse(c["block_size"], D),
          "transformer.ln_f.weight": torch.ones(D), "lm_head.weight": sparse(V, D),
          "final_logits_bias": torch.zeros(V), "bigram_table": torch.randn(V, V, generator=g) * 0.02}
    for i in range(c["n_layer"]):
        p = f"transformer.h.{i}"
        sd.update({f"{p}.ln_1.weight": torch.ones(D), f"{p}.ln_2.weight": torch.ones(D),
                   f"{p}.attn.c_attn.weight": sparse(3 * hd, D), f"{p}.attn.c_proj.weight": sparse(D, hd),
                   f"{p}.attn.attn_imp.sink_logit": torch.randn(c["n_head"], generator=g),
                   f"{p}.mlp.c_fc.weight": sparse(dm, D), f"{p}.mlp.c_proj.weight": sparse(D, dm)})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "beeg_config.json").write_text(json.dumps(SHAPE))
    torch.save(sd, folder / "final_model.pt")


def rss_kib(field: str) -> int | None:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in KiB, from /proc (None elsewhere)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(x.split()[1]) for x in lines if x.startswith(field + ":")), None)


def measure(folder: str, threads: int) -> dict:
    """One load in this (fresh) process: seconds, and peak resident memory above the resident memory before it.
    On Linux the peak is reset first (``/proc/self/clear_refs``), so a transient peak of the imports does not hide
    the load's; elsewhere it is ``ru_maxrss`` above its post-import value."""
    torch.set_num_threads(threads)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
        base, field = rss_kib("VmRSS"), "VmHWM"
    except OSError:
        base, field = None, None
    if base is None:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t = time.perf_counter()
    model = official.load(folder)
    seconds = time.perf_counter() - t
    peak = rss_kib(field) if field else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    torch.load(Path(folder) / official.WEIGHTS_FILE, map_location="cpu", weights_only=True)  # read whole
    bare = time.perf_counter() - t
    with torch.no_grad():
        model(torch.zeros(1, 8, dtype=torch.long))  # it runs
    n = sum(p.numel() for p in model.parameters())
    return {"seconds": seconds, "torch_load_seconds": bare, "peak_mib": (peak - base) / 1024, "params": n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--density", type=float, default=1 / 16, help="fraction of nonzero matrix entries")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: the child process
    a = p.parse_args()
    if a.measure:
        print(json.dumps(measure(a.measure, a.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "csp_sweep_l8_d256"
        write_folder(folder, a.density)
        size = (folder / "final_model.pt").stat().st_size
        runs = [json.loads(subprocess.run([sys.executable, __file__, "--measure", str(folder), "--threads",
                                           str(a.threads)], check=True, capture_output=True, text=True).stdout)
                for _ in range(a.repeats)]
    n = runs[0]["params"]
    print(f"shape: 8 layers, d_model 256, vocab 2048 (wpe 1024 rows, bigram table, sink); {n / 1e6:.1f}M parameters "
          f"= {4 * n / 2**20:.0f} MiB float32; final_model.pt {size / 2**20:.0f} MiB; density {a.density:g}; "
          f"{a.threads} thread(s); {a.repeats} fresh processes")
    for key, what in (("seconds", "load() seconds"), ("torch_load_seconds", "a plain torch.load, for scale (s)"),
                      ("peak_mib", "peak RSS above the level before (MiB)")):
        vals = [r[key] for r in runs]
        print(f"{what:38s} median {statistics.median(vals):8.3f}   min {min(vals):8.3f}   max {max(vals):8.3f}")


if __name__ == "__main__":
    main()
