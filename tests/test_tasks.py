"""The P1 task suite: pair construction, token checks, committed data, and the two-candidate task loss."""
import difflib
import json
import math
import random
import shutil

import pytest
import torch

from sparsecirc.core.config import ModelConfig
from sparsecirc.core.model import GPT
from sparsecirc.data import tasks
from sparsecirc.data.tokenizer import load_tokenizer

P1_TASKS = ["single_double_quote", "bracket_counting", "set_or_string", "set_or_string_fixedvarname", "final_kwarg",
            "class_init", "with_as", "bracket_brace", "with_open", "for_while", "else_elif", "fstring_brace",
            "if_ternary", "var_swap", "indent_for", "lambda_func", "if_equals", "enumerate_range", "var_if",
            "while_return_true"]
MANIFEST = json.loads((tasks.TASKS_DIR / "MANIFEST.json").read_text())


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def _pairs(name, n=25, seed=0):
    rng = random.Random(seed)
    return [tasks.TASKS[name].make_pair(rng) for _ in range(n)]


def _n_diff(a, b):
    """Size of the difference between two sequences (sum over non-equal opcode blocks of the longer side)."""
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in ops if op != "equal")


def test_registry_has_the_20_p1_tasks_and_rejects_unknown_names():
    assert list(tasks.TASKS) == P1_TASKS
    assert all(len(t.description) > 20 and "\n" not in t.description for t in tasks.TASKS.values())
    with pytest.raises(ValueError, match="single_double_quote, bracket_counting"):
        tasks.get_task("quotes")
    with pytest.raises(ValueError, match="valid: single_double_quote"):
        tasks.load_task("nope")
    with pytest.raises(ValueError, match="train, test"):
        tasks.load_task("var_if", "val")


@pytest.mark.parametrize("name", P1_TASKS)
def test_pairs_are_minimal_contrasts_whose_targets_swap(name, tok):
    task = tasks.TASKS[name]
    for a, b in _pairs(name):
        assert a.target == b.distractor and b.target == a.distractor and a.target != b.target
        assert a.target_id == b.distractor_id and b.target_id == a.distractor_id
        if task.candidates is not None:
            assert (a.target, b.target) == task.candidates
        assert a.prompt != b.prompt
        assert _n_diff(a.prompt.split("\n"), b.prompt.split("\n")) <= 2  # at most 2 lines differ
        assert _n_diff(a.prompt_ids, b.prompt_ids) <= 8  # and only a few tokens


@pytest.mark.parametrize("name", P1_TASKS)
def test_candidates_are_single_tokens_and_exactly_the_next_token(name, tok):
    for ex in (e for pair in _pairs(name) for e in pair):
        assert tok.single_token_id(ex.target) == ex.target_id
        assert tok.single_token_id(ex.distractor) == ex.distractor_id
        ids = tok.encode(ex.prompt)
        assert list(ex.prompt_ids) == ids and len(ids) <= tasks.TASKS[name].max_tokens
        assert tok.encode(ex.prompt + ex.target) == ids + [ex.target_id]
        assert tok.encode(ex.prompt + ex.distractor) == ids + [ex.distractor_id]
        assert ex.prompt == ex.prompt.lstrip() and not ex.prompt[-1].isspace()


def test_quote_and_bracket_pairs_differ_only_in_the_opening_token():
    for a, b in _pairs("single_double_quote", 50):
        diff = [i for i, (x, y) in enumerate(zip(a.prompt, b.prompt)) if x != y]
        assert len(a.prompt) == len(b.prompt) and len(diff) == 1
        i = diff[0]
        assert (a.prompt[i - 1:i + 1], b.prompt[i - 1:i + 1]) == ('("', "('") and a.prompt[-1].isalpha()
    for a, b in _pairs("bracket_counting", 50):
        i = next(i for i, (x, y) in enumerate(zip(a.prompt, b.prompt)) if x != y)
        assert a.prompt[:i] + a.prompt[i + 1:] == b.prompt and a.prompt[i - 1:i + 1] == "[["
        assert a.prompt.split("\n")[-1].count("[") == 2  # elements are numbers, no inner brackets


@pytest.mark.parametrize("name", ["set_or_string", "set_or_string_fixedvarname"])
def test_set_or_string_pairs_differ_only_in_the_initialisation(name):
    names = set()
    for a, b in _pairs(name, 50):
        la, lb = a.prompt.split("\n"), b.prompt.split("\n")
        diff = [i for i, (x, y) in enumerate(zip(la, lb)) if x != y]
        assert len(la) == len(lb) and len(diff) == 1
        var = la[-1].strip()
        assert la[diff[0]] == f"{var} = set()" and lb[diff[0]] in (f'{var} = ""', f"{var} = ''")
        names.add(var)
    assert names == {"current"} if name.endswith("fixedvarname") else len(names) > 10


def test_generator_refuses_multi_token_candidates_and_redraws_bad_encodings(tok):
    bad = tasks.Task("bad", "candidate is two tokens", lambda d: (("x = 1\nprint(x", " hello world"),
                                                                 ("x = 1\nprint(y", ")")), None, ("", ""))
    with pytest.raises(ValueError, match="not a single token"):
        bad.make_pair(random.Random(0), tok)
    # "):" is one token, so ":" after "f(x)" is not the next token: the first draw must be rejected
    draws = iter([(("y = f(x)", ":"), ("y = f(x", ")")), (("y = f(x) + 1", ":"), ("y = [1", "]"))])
    redraw = tasks.Task("redraw", "first draw is inconsistent", lambda d: next(draws), None, ("", ""))
    assert tasks.make_example(tok, "y = f(x)", ":", ")", 100) is None
    a, b = redraw.make_pair(random.Random(0), tok)
    assert a.prompt == "y = f(x) + 1" and b.target == "]"
    never = tasks.Task("never", "always inconsistent", lambda d: (("f(x)", ":"), ("g(x)", ":")), None, ("", ""))
    with pytest.raises(RuntimeError, match="no valid pair"):
        never.make_pair(random.Random(0), tok)


def test_build_is_deterministic_by_seed_and_splits_are_disjoint():
    dd = tasks.build_task_dataset("else_elif", n_train_pairs=20, n_test_pairs=10, seed=3)
    again = tasks.build_task_dataset("else_elif", n_train_pairs=20, n_test_pairs=10, seed=3)
    other = tasks.build_task_dataset("else_elif", n_train_pairs=20, n_test_pairs=10, seed=4)
    assert dd["train"].to_dict() == again["train"].to_dict() and dd["test"].to_dict() == again["test"].to_dict()
    assert list(dd["test"]["prompt"]) != list(other["test"]["prompt"])
    assert list(dd["train"].features) == ["pair_id", "prompt", "target", "distractor", "prompt_ids", "target_id",
                                          "distractor_id"]
    assert (dd["train"].num_rows, dd["test"].num_rows) == (40, 20)
    assert not set(dd["train"]["prompt"]) & set(dd["test"]["prompt"])


def test_build_drops_repeated_prompts_and_fails_when_too_few_are_distinct(monkeypatch):
    def small_space(d):  # only 12 distinct pairs
        k = d.r.randint(0, 11)
        return (f"x = {k}\nif x == True", ":"), (f"x = {k}\nx = True", "\n")
    monkeypatch.setitem(tasks.TASKS, "tiny", tasks.Task("tiny", "a 12-pair task", small_space, (":", "\n"), ("", "")))
    dd = tasks.build_task_dataset("tiny", n_train_pairs=8, n_test_pairs=4)
    prompts = list(dd["train"]["prompt"]) + list(dd["test"]["prompt"])
    assert len(prompts) == len(set(prompts)) == 24
    with pytest.raises(RuntimeError, match="only 4 distinct test pairs of 5"):
        tasks.build_task_dataset("tiny", n_train_pairs=8, n_test_pairs=5)


@pytest.mark.parametrize("name", P1_TASKS)
def test_committed_data_matches_manifest_and_is_well_formed(name):
    entry = MANIFEST["tasks"][name]
    assert MANIFEST["tokenizer_sha256"] == load_tokenizer().sha256
    prompts = {}
    for split in tasks.SPLITS:
        ds = tasks.load_task(name, split)  # verifies sha256
        cols = ds.to_dict()
        assert ds.num_rows == entry["files"][split]["rows"] == 2 * MANIFEST[f"n_{split}_pairs"]
        assert cols["pair_id"] == [i // 2 for i in range(ds.num_rows)]
        assert cols["target"][0::2] == cols["distractor"][1::2] and cols["target"][1::2] == cols["distractor"][0::2]
        assert len(set(cols["prompt"])) == ds.num_rows
        prompts[split] = set(cols["prompt"])
    assert not prompts["train"] & prompts["test"]


def test_committed_data_regenerates_from_the_generator():
    # tasks whose test split needed no corpus-overlap redraw regenerate without the (slow) corpus index
    name = next(n for n in ["var_if", "for_while", "with_open"] + P1_TASKS
                if MANIFEST["tasks"][n]["test_pairs_redrawn_as_in_corpus"] == 0)
    dd = tasks.build_task_dataset(name, MANIFEST["n_train_pairs"], MANIFEST["n_test_pairs"], MANIFEST["seed"])
    for split in tasks.SPLITS:
        assert dd[split].to_dict() == tasks.load_task(name, split).to_dict()


@pytest.fixture
def tasks_copy(tmp_path, monkeypatch):
    """A private copy of data/tasks that load_task reads."""
    dst = tmp_path / "tasks"
    shutil.copytree(tasks.TASKS_DIR, dst)
    monkeypatch.setattr(tasks, "TASKS_DIR", dst)
    return dst


def test_corrupted_missing_or_stale_files_raise_one_line_errors(tasks_copy):
    path = tasks_copy / "var_if-test.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(tasks.TaskDataError, match=r"sha256 .*python -m sparsecirc tasks") as err:
        tasks.load_task("var_if", "test")
    assert "\n" not in str(err.value)
    tasks.load_task("var_if", "train")  # other files unaffected
    (tasks_copy / "var_if-train.parquet").unlink()
    with pytest.raises(tasks.TaskDataError, match="missing.*python -m sparsecirc tasks"):
        tasks.load_task("var_if", "train")
    manifest = json.loads((tasks_copy / "MANIFEST.json").read_text())
    manifest["tokenizer_sha256"] = "0" * 64
    (tasks_copy / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(tasks.TaskDataError, match="tokenizer"):
        tasks.load_task("for_while", "test")
    (tasks_copy / "MANIFEST.json").unlink()
    with pytest.raises(tasks.TaskDataError, match="MANIFEST.json is missing"):
        tasks.load_task("for_while", "test")


def _mixed_rows(n_per_task=3):
    rows = {"prompt_ids": [], "target_id": [], "distractor_id": []}
    for name in ["bracket_counting", "var_if", "class_init", "fstring_brace"]:
        ds = tasks.load_task(name, "test").select(range(n_per_task))
        for k in rows:
            rows[k] += ds[k]
    return rows


@pytest.mark.parametrize("n_ctx", [128, 24])  # 24: prompts are left-truncated to the last n_ctx tokens
def test_pair_logits_equal_a_direct_forward_per_example(n_ctx):
    model = GPT(ModelConfig(n_layer=2, d_model=32, n_ctx=n_ctx, attn_sink=True))
    rows = _mixed_rows()
    assert len({len(p) for p in rows["prompt_ids"]}) > 5  # lengths differ, so padding matters
    model.train()
    got = tasks.pair_logits(model, rows, batch_size=4)
    assert model.training  # mode restored
    model.eval()
    for i, ids in enumerate(rows["prompt_ids"]):
        with torch.no_grad():
            last = model(torch.tensor([ids[-n_ctx:]]))[0, -1]
        want = last[[rows["target_id"][i], rows["distractor_id"][i]]]
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-5)


def test_task_loss_and_accuracy_formulas():
    lg = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.5, 1.5], [-4.0, 2.0]])
    want = [-torch.log_softmax(row, 0)[0].item() for row in lg]
    torch.testing.assert_close(tasks.task_loss(lg), torch.tensor(want))
    assert tasks.task_loss(lg)[0].item() == pytest.approx(math.log1p(math.exp(-1.0)))
    assert tasks.task_loss(lg)[2].item() == pytest.approx(math.log(2.0))
    assert tasks.task_accuracy(lg).tolist() == [1.0, 0.0, 0.0, 0.0]  # a tie is not correct


def test_task_metrics_and_evaluate_all_on_a_tiny_model():
    model = GPT(ModelConfig(n_layer=1, d_model=32))
    m = tasks.task_metrics(model, "with_open", max_examples=9)
    ds = tasks.load_task("with_open", "test").select(range(8))
    lg = tasks.pair_logits(model, ds)
    assert m["n"] == 8
    assert m["loss"] == pytest.approx(tasks.task_loss(lg).mean().item(), abs=1e-6)
    assert m["accuracy"] == pytest.approx(tasks.task_accuracy(lg).mean().item())
    res = tasks.evaluate_all(model, max_examples=4)
    assert list(res) == P1_TASKS
    assert all(r["n"] == 4 and 0.0 <= r["accuracy"] <= 1.0 and math.isfinite(r["loss"]) for r in res.values())


def test_corpus_index_is_an_exact_substring_test():
    docs = ["a = 1\nfor x in xs:\n    print(x)\nb = 2\n", "if y:\n    z = 3\n"]
    index = tasks.CorpusIndex(docs)
    assert "= 1\nfor x in xs:\n    print(x)\nb" in index  # starts and ends mid-line
    assert "for x in xs:\n    pri" in index and "z = 3" in index
    assert "a = 1\nfor x in xs:\n    print(y)" not in index
    assert "2\nif y" not in index  # never across documents


def test_no_test_prompt_occurs_in_the_training_corpus():
    from sparsecirc.data import corpus
    index = tasks.CorpusIndex(corpus.load_corpus("train")["text"])  # default settings: stdlib + 20k simple
    found = [(n, p) for n in P1_TASKS for p in tasks.load_task(n, "test")["prompt"] if p in index]
    assert not found, f"{len(found)} test prompts occur in the training corpus, e.g. {found[0]}"


@pytest.mark.slow
def test_all_committed_data_regenerates_with_the_corpus_check(tmp_path):
    tasks.save_task_data(tmp_path, MANIFEST["n_train_pairs"], MANIFEST["n_test_pairs"], MANIFEST["seed"])
    for name in P1_TASKS:
        for split in tasks.SPLITS:
            fresh = tasks.datasets.Dataset(tasks.pq.read_table(tmp_path / f"{name}-{split}.parquet"))
            assert fresh.to_dict() == tasks.load_task(name, split).to_dict(), (name, split)
