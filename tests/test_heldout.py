"""Held-out prompt sets of the three case-study tasks (``sparsecirc.data.heldout``): independent, well-formed."""
import re
from functools import lru_cache

import pytest
import torch

from sparsecirc.core.config import ModelConfig, PruneConfig
from sparsecirc.core.model import GPT
from sparsecirc.data import corpus, heldout, task_audit, tasks
from sparsecirc.data import task_generators_v2 as v2
from sparsecirc.data.tokenizer import load_tokenizer

TASKS = heldout.HELDOUT_TASKS
MANIFEST = tasks.json.loads((tasks.TASKS_DIR / "MANIFEST.json").read_text())


@lru_cache(maxsize=None)
def _ds(task):
    return heldout.heldout_pairs(task, load_tokenizer())


@lru_cache(maxsize=None)
def _generator_prompts(task):
    """Train and test prompts of both generator versions for seed 0 (v1: the committed data)."""
    out = [p for s in tasks.SPLITS for p in tasks.load_task(task, s)["prompt"]]
    g = task_audit.generate_task(task, MANIFEST["n_train_pairs"], MANIFEST["n_test_pairs"], MANIFEST["seed"], "v2")
    return out + [p for s in g.values() for p in s["prompt"]]


@pytest.mark.parametrize("task", TASKS)
def test_heldout_sets_are_large_varied_and_tokenize(task):
    ds, rep = _ds(task), heldout.drop_report(task, load_tokenizer())
    assert ds.num_rows // 2 == rep["n_kept"] >= 128
    assert rep["drop_rate"] <= 0.10, rep  # candidates single tokens and the next token for >= 90% of pairs
    assert len(set(ds["template"])) >= 5 and min(rep["kept_per_template"].values()) >= 20, rep
    assert list(ds.features) == list(tasks.load_task(task, "test").features) + ["template"]
    cols = ds.to_dict()
    assert cols["pair_id"] == [i // 2 for i in range(ds.num_rows)]
    assert cols["target"][0::2] == [tasks.TASKS[task].candidates[0]] * (ds.num_rows // 2)
    assert cols["target"][0::2] == cols["distractor"][1::2] and cols["target"][1::2] == cols["distractor"][0::2]
    assert len(set(cols["prompt"])) == ds.num_rows
    task_audit.variant_rows(cols)  # the audit's pair layout (raises otherwise)


_V1_DICT = pytest.mark.xfail(strict=True, reason="measured: tinypy-2048 (v1) has a `]}` token, so the 24 flat "
                             "prompts of template dict_value (`{\"rows\": [1, 2`) finish as `]}`, not `]` `}`")


@pytest.mark.parametrize("task,version", [(t, v) for t in TASKS for v in ("v1", "v2")
                                          if (t, v) != ("bracket_counting", "v1")]
                         + [pytest.param("bracket_counting", "v1", marks=_V1_DICT)])
def test_every_heldout_target_is_the_next_token_of_the_finished_line(task, version):
    tok = tasks.task_tokenizer(version)
    assert task_audit.line_end_mismatches(heldout.heldout_pairs(task, tok), tok) == []


@pytest.mark.parametrize("task", TASKS)
def test_no_heldout_prompt_meets_a_generator_prompt(task):
    """No held-out prompt equals, contains or is contained in a train/test prompt of either generator version."""
    gen = _generator_prompts(task)
    big = "\0".join(gen)
    held = _ds(task)["prompt"]
    bad = [h for h in held if h in big or any(g in h for g in gen)]
    assert not bad, bad[:2]


def test_heldout_is_deterministic_and_seeded():
    a = heldout.heldout_text_pairs("bracket_counting", n_per_template=3)
    assert a == heldout.heldout_text_pairs("bracket_counting", n_per_template=3)
    assert a != heldout.heldout_text_pairs("bracket_counting", n_per_template=3, seed=1)
    with pytest.raises(ValueError, match="valid: single_double_quote, bracket_counting"):
        heldout.heldout_text_pairs("var_swap")


def test_mined_prompts_come_from_val_documents_only():
    rows = [r for r in heldout.heldout_text_pairs("single_double_quote") if r["template"] == heldout.MINED]
    assert len(rows) >= 2 * 40
    val = corpus.load_corpus("val", parts=("stdlib",))
    train_ids = set(corpus.load_corpus("train", parts=("stdlib",))["doc_id"])
    texts = dict(zip(val["doc_id"], val["text"]))
    for a, b in zip(rows[0::2], rows[1::2]):
        assert a["source"] == b["source"] in texts and a["source"] not in train_ids
        assert corpus.split_of(texts[a["source"]]) == "val"
        assert a["prompt"] in texts[a["source"]] or b["prompt"] in texts[a["source"]]  # one of them is the real line


def test_pairs_differ_only_in_the_contrast():
    for r in range(0, _ds("single_double_quote").num_rows, 2):
        a, b, t = (_ds("single_double_quote")[i] for i in (r, r + 1, r))
        if t["template"] == "other_quote_inside":  # the same lines, then the same call with other strings
            (ca, la), (cb, lb) = a["prompt"].rsplit("\n", 1), b["prompt"].rsplit("\n", 1)
            assert ca == cb and la.split('"')[0] == lb.split("'")[0] and "'" in la and '"' in lb
            continue
        diff = [i for i, (x, y) in enumerate(zip(a["prompt"], b["prompt"])) if x != y]
        assert len(a["prompt"]) == len(b["prompt"]) and len(diff) == 1 and a["prompt"][diff[0]] == '"'
        assert re.fullmatch(r"[^\"'\n]*[A-Za-z]", a["prompt"][diff[0] + 1:])
    cols = _ds("bracket_counting").to_dict()
    for a, b in zip(cols["prompt"][0::2], cols["prompt"][1::2]):
        i = a.index("[[")
        assert a[:i] + a[i + 1:] == b and "]" not in a[i:] and a[i + 2:].count("[") == 0
    for task in ("set_or_string", "set_or_string_fixedvarname"):
        cols, names = _ds(task).to_dict(), set()
        for a, b in zip(cols["prompt"][0::2], cols["prompt"][1::2]):
            la, lb = a.split("\n"), b.split("\n")
            diff = [i for i, (x, y) in enumerate(zip(la, lb)) if x != y]
            assert len(la) == len(lb) and len(diff) == 1
            var = la[-1].strip()
            assert re.fullmatch(rf"\s*{var} ?= ?set\(\)", la[diff[0]]) and re.fullmatch(
                rf"\s*{var} ?= ?(\"\"|'')", lb[diff[0]])
            names.add(var)
        assert names == {"current"} if task.endswith("fixedvarname") else (
            len(names) >= 10 and not names & set(v2.TYPED_VARS))


def test_heldout_varies_what_the_generators_keep_fixed():
    brackets = _ds("bracket_counting")["prompt"]
    assert sum(" =[[" in p or "=[[" in p for p in brackets) >= 48
    assert sum(bool(re.search(r"\[\[(?:True|False|None)", p)) for p in brackets) >= 20
    assert sum(bool(re.search(r"\[\[[\"']", p)) for p in brackets) >= 20
    quotes = _ds("single_double_quote")["prompt"]
    assert sum(bool(re.search(r"\"[^\"\n]*'[^\"\n]*\Z", p)) for p in quotes) >= 20  # `("don't ...`


def test_evaluate_heldout_on_a_tiny_model():
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, d_model=32))
    res = heldout.evaluate_heldout(model, "bracket_counting")
    assert res["test"]["n"] == 256 and res["heldout"]["n"] == _ds("bracket_counting").num_rows
    assert sum(m["n"] for m in res["per_template"].values()) == res["heldout"]["n"]
    assert 0.0 <= res["heldout"]["accuracy"] <= 1.0


def _untrained_v2_model():
    """A 1-layer data-v2 model (seeded) and its mean-ablation values over random tokens."""
    from sparsecirc.wst.ablation import compute_means

    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, d_model=16, d_head=8, n_ctx=128, data_version="v2")).eval()
    return model, compute_means(model, torch.randint(0, 2048, (4, 128)))


def test_a_case_study_circuit_is_scored_on_the_held_out_prompts_in_the_models_data_version():
    from sparsecirc.wst.reading import prune_at_targets

    model, means = _untrained_v2_model()
    pcfg = PruneConfig(steps=3, batch_pairs=4, eval_pairs=8)
    info, circuit = prune_at_targets(model, means, "single_double_quote", pcfg, [1.0])
    assert circuit is not None  # an untrained model's two-candidate loss (~ln 2) is below the target 1.0
    ho = info["heldout"]
    want = heldout.heldout_pairs("single_double_quote", tasks.task_tokenizer("v2")).num_rows
    assert ho["n"] == want > 0 and 0.0 <= ho["agreement"] <= 1.0
    assert set(ho) >= {"full", "calibrated", "uncalibrated", "kl"}


def test_a_case_study_reports_the_cleaned_circuit_beside_the_bisected_one_only_with_cleanup():
    from sparsecirc.wst.reading import prune_at_targets, prune_summary

    model, means = _untrained_v2_model()
    pcfg = PruneConfig(steps=3, batch_pairs=4, val_pairs=8)
    info, circuit = prune_at_targets(model, means, "single_double_quote", pcfg, [1.0])
    assert "cleaned" not in info
    info, circuit = prune_at_targets(model, means, "single_double_quote", pcfg.replace(cleanup=True), [1.0, 2.0])
    cl = info["cleaned"]
    assert cl["nodes"] <= circuit.n_nodes and cl["loss"] <= 1.0 and 0.0 <= cl["test"]["accuracy"] <= 1.0
    assert 0.0 <= cl["heldout"]["agreement"] <= 1.0
    r = {"task": "single_double_quote", "model": "m", "task_metrics": {"accuracy": 1.0}, "prune": info}
    assert f"after the greedy clean-up (not read): {cl['nodes']} nodes" in prune_summary(r)


def test_the_clean_up_runs_at_the_lowest_target_reached_only():
    from sparsecirc.wst.prune import prune_to_circuit

    model, means = _untrained_v2_model()
    pcfg = PruneConfig(steps=3, batch_pairs=4, val_pairs=8, cleanup=True, target_loss=1e-6)
    res = prune_to_circuit(model, tasks.model_task(model, "single_double_quote", "train"), means, pcfg,
                           targets=(2.0, 1.0), task="single_double_quote")
    assert 1e-6 not in res.circuits and set(res.circuits) == {1.0, 2.0}  # an untrained model's loss is ~ln 2
    assert set(res.cleaned) == {1.0}


def test_heldout_table_puts_each_models_test_and_heldout_accuracy_side_by_side():
    torch.manual_seed(0)
    m1 = GPT(ModelConfig(n_layer=1, d_model=16, d_head=8, n_ctx=128)).eval()
    m2 = GPT(ModelConfig(n_layer=1, d_model=16, d_head=8, n_ctx=128, data_version="v2")).eval()
    t = heldout.heldout_table({"a": m1, "b": m2}, task_names=("bracket_counting",))
    assert list(t.index) == [("a", "bracket_counting"), ("b", "bracket_counting")]
    for label, m in (("a", m1), ("b", m2)):
        r = heldout.evaluate_heldout(m, "bracket_counting")
        row = t.loc[(label, "bracket_counting")]
        assert row["test"] == round(r["test"]["accuracy"], 3) and row["held-out"] == round(r["heldout"]["accuracy"], 3)
        assert abs(row["held-out - test"] - (r["heldout"]["accuracy"] - r["test"]["accuracy"])) < 2e-3


def test_prune_summary_names_targets_sizes_and_held_out_agreement():
    from sparsecirc.wst.reading import prune_summary
    r = {"task": "t", "model": "m", "task_metrics": {"accuracy": 0.5},
         "prune": {"full_loss": 0.1, "reached": {"0.15": None, "0.2": {"nodes": 3, "edges": 2}}, "target": 0.2,
                   "nodes": 3, "edges": 2, "heldout": {"n": 7, "full": {"accuracy": 0.9}, "agreement": 0.75,
                                                       "calibrated": {"accuracy": 0.8},
                                                       "uncalibrated": {"accuracy": 0.6}}}}
    text = prune_summary(r)
    assert "'0.15': 'not reached'" in text and "target 0.2 (P1: 0.15), 3 nodes, 2 edges" in text
    assert "7 held-out prompts" in text and "circuit 0.80 (uncalibrated 0.60)" in text and "0.75" in text
    del r["prune"]["heldout"]
    assert "held-out" not in prune_summary(r)
