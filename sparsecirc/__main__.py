"""Command line: ``python -m sparsecirc {corpus,tokenizer,tasks,train,reproduce,verify,import-official}``
(the ``sparsecirc`` script).

    python -m sparsecirc corpus                      # rebuild the committed stdlib snapshot (data/corpus/)
    python -m sparsecirc tokenizer [--version v2]    # retrain a committed 2048-token BPE (data/tokenizer/)
    python -m sparsecirc tasks [--version v2]        # regenerate the 20 P1 task datasets (data/tasks/, data/tasks_v2/)
    python -m sparsecirc train --config data/configs/<id>.yaml --scale ci --out runs/x [--resume]
    python -m sparsecirc reproduce <id> [--scale book|ci] [--resume]
    python -m sparsecirc verify [<id> ...]           # sha256 of committed artifacts against the registry
    python -m sparsecirc import-official FOLDER --out DIR   # a released circuit_sparsity model as our run folder
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sparsecirc.artifacts import ArtifactError, FolderBusyError, read_yaml, verify_all
from sparsecirc.build import produce, recorded_threads
from sparsecirc.core.config import BUILD_SCALES, SCALES, ConfigError, make_config, scale_overrides
from sparsecirc.core.train import dist_info, train
from sparsecirc.data import tasks as task_data
from sparsecirc.data.corpus import build_stdlib_snapshot
from sparsecirc.data.lm import lm_tokens
from sparsecirc.data.tokenizer import train_tokenizer
from sparsecirc.data.versions import DATA_VERSIONS, DEFAULT_VERSION
from sparsecirc.official import import_official


def _cmd_corpus(a):
    print(build_stdlib_snapshot())


def _cmd_tokenizer(a):
    print(train_tokenizer(version=a.version))


def _cmd_tasks(a):
    task_data.main(["--version", a.version])


def _cmd_train(a):

    if not Path(a.config).is_file():
        raise FileNotFoundError(f"--config {a.config}: no such file (configs live in data/configs/)")
    over = scale_overrides(read_yaml(a.config), a.scale, a.config)
    over.pop("geco", None)  # post-training settings: `reproduce` runs those configs
    over.pop("match_steps", None)  # a search over run lengths: `reproduce` runs it; train takes the config's steps
    cfg = make_config(a.scale, **over)
    if a.steps is not None:
        cfg = cfg.replace(train=cfg.train.replace(steps=a.steps))
    tokens, val_tokens = lm_tokens(cfg)
    _, hist = train(cfg, tokens, val_tokens, out=a.out, resume=a.resume, overwrite=a.force)
    if dist_info()[0] == 0:
        print(f"done: {len(hist.step)} steps, val loss {hist.val_loss[-1]:.4f}, checkpoint in {a.out}")


def _cmd_reproduce(a):
    threads = a.threads or (recorded_threads(a.id) if a.scale == "book" else None)
    if threads:  # the trainer reads the count from the environment (repro.setup_threads)
        os.environ["SPARSECIRC_NUM_THREADS"] = str(threads)
        print(f"{a.id}: {threads} torch thread(s)" + ("" if a.threads else " (as the committed build; --threads N)"))
    print(produce(a.id, a.scale, resume=a.resume))


def _cmd_verify(a):
    rows = verify_all(a.ids or None)
    for artifact_id, error in rows:
        print(f"ok   {artifact_id}" if error is None else f"BAD  {artifact_id}: {error}")
    bad = sum(error is not None for _, error in rows)
    print(f"{len(rows) - bad} of {len(rows)} artifacts verify")
    return 1 if bad else 0


def _cmd_import_official(a):
    manifest = import_official(a.folder, a.out, force=a.force)
    print(f"{a.out}: imported {a.folder} ({manifest['source']['files'][1]['sha256'][:12]}…); "
          f"load it with sparsecirc.core.train.load_model")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="sparsecirc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("corpus", help="rebuild the stdlib corpus snapshot").set_defaults(fn=_cmd_corpus)
    for name, fn, what in [("tokenizer", _cmd_tokenizer, "retrain a BPE tokenizer"),
                           ("tasks", _cmd_tasks, "regenerate the 20 P1 task datasets")]:
        c = sub.add_parser(name, help=what)
        c.add_argument("--version", default=DEFAULT_VERSION, choices=list(DATA_VERSIONS),
                       help="data version (default %(default)s)")
        c.set_defaults(fn=fn)
    t = sub.add_parser("train", help="train a language model from a config file")
    t.add_argument("--config", required=True)
    t.add_argument("--scale", default="ci", choices=sorted(SCALES))
    t.add_argument("--out", required=True, help="checkpoint folder")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    t.add_argument("--force", action="store_true", help="replace a run already in --out (without --resume)")
    t.add_argument("--steps", type=int, default=None, help="override the config's number of steps")
    t.set_defaults(fn=_cmd_train)
    r = sub.add_parser("reproduce", help="rebuild a registered artifact")
    r.add_argument("id")
    r.add_argument("--scale", default="book", choices=BUILD_SCALES)
    r.add_argument("--resume", action="store_true", help="continue an interrupted build (kind lm)")
    r.add_argument("--threads", type=int, help="torch threads (default: the count the committed build recorded)")
    r.set_defaults(fn=_cmd_reproduce)
    v = sub.add_parser("verify", help="check committed artifacts against the registry")
    v.add_argument("ids", nargs="*")
    v.set_defaults(fn=_cmd_verify)
    o = sub.add_parser("import-official", help="convert a released openai/circuit_sparsity model folder "
                                               "(beeg_config.json + final_model.pt), strictly")
    o.add_argument("folder", help="a folder holding beeg_config.json and final_model.pt")
    o.add_argument("--out", required=True, help="our run folder to write")
    o.add_argument("--force", action="store_true", help="replace a non-empty --out")
    o.set_defaults(fn=_cmd_import_official)
    a = p.parse_args(argv)
    try:
        return a.fn(a) or 0
    except (ArtifactError, ConfigError, FileNotFoundError, FileExistsError, FolderBusyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
