"""Task data plumbing for data version 2: generated into a tmp folder with a few pairs (data/tasks_v2 is built
once the v2 task generators are merged), loaded, evaluated in the model's version; v1 stays the default."""
import json
import random
import shutil

import pytest

from sparsecirc.core.config import ModelConfig
from sparsecirc.core.model import GPT
from sparsecirc.data import corpus_v2, simple_python_v2, tasks
from sparsecirc.data.tokenizer import load_tokenizer
from sparsecirc.paths import DATA_DIR

N_TRAIN, N_TEST, CHECK_PROGRAMS = 4, 2, 300


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory):
    """All 20 tasks in data version 2, a few pairs each, test prompts checked against a small v2 corpus sample."""
    out = tmp_path_factory.mktemp("tasks_v2")
    tasks.save_task_data(out, N_TRAIN, N_TEST, version="v2", check_programs=CHECK_PROGRAMS)
    return out


@pytest.fixture
def use_v2_dir(v2_dir, monkeypatch):
    monkeypatch.setitem(tasks.TASKS_DIRS, "v2", v2_dir)
    return v2_dir


def test_v2_manifest_names_its_version_tokenizer_and_corpus_check(v2_dir):
    m = json.loads((v2_dir / "MANIFEST.json").read_text())
    tok2 = load_tokenizer(version="v2")
    assert m["data_version"] == "v2" and m["tokenizer_file"] == "tinypy2-2048.json"
    assert m["tokenizer_sha256"] == tok2.sha256 != load_tokenizer().sha256
    assert m["made_by"] == "python -m sparsecirc tasks --version v2"
    assert m["generator_version"] == tasks.GENERATOR_VERSION
    assert m["test_prompts_checked_against_corpus"]["programs"] == [0, CHECK_PROGRAMS]
    assert set(m["tasks"]) == set(tasks.TASKS)
    assert all(isinstance(t["generator_takes_version"], bool) for t in m["tasks"].values())


def test_v2_task_data_load_and_are_tokenised_with_the_v2_tokenizer(use_v2_dir):
    tok2 = load_tokenizer(version="v2")
    for name in ("bracket_counting", "single_double_quote", "var_if"):
        ds = tasks.load_task(name, "test", version="v2")
        assert ds.num_rows == 2 * N_TEST and tasks.load_task(name, "train", version="v2").num_rows == 2 * N_TRAIN
        for row in ds:
            assert row["prompt_ids"] == tok2.encode(row["prompt"])
            assert row["target_id"] == tok2.single_token_id(row["target"])
    nested = tasks.load_task("bracket_counting", "test", version="v2")
    a = nested[0]
    pieces = [tok2.id_to_token(i) for i in a["prompt_ids"]]
    assert a["target"] == "]]" and all(p.count("[") <= 1 for p in pieces)  # `[[` is two tokens in v2


def test_v1_stays_the_default_and_v2_needs_its_own_folder(use_v2_dir, tmp_path, monkeypatch):
    assert tasks.load_task("var_if").to_dict() == tasks.load_task("var_if", version="v1").to_dict()
    assert tasks.load_task("var_if").to_dict() != tasks.load_task("var_if", version="v2").to_dict()
    monkeypatch.setitem(tasks.TASKS_DIRS, "v2", tmp_path / "nowhere")
    with pytest.raises(tasks.TaskDataError, match=r"MANIFEST.json is missing; rebuild with `python -m sparsecirc "
                                                   r"tasks --version v2`"):
        tasks.load_task("var_if", version="v2")
    with pytest.raises(ValueError, match="unknown data version 'v7'"):
        tasks.load_task("var_if", version="v7")


def test_a_v2_tokenizer_mismatch_is_refused(v2_dir, tmp_path, monkeypatch):
    copy = tmp_path / "tasks_v2"
    shutil.copytree(v2_dir, copy)
    m = json.loads((copy / "MANIFEST.json").read_text())
    m["tokenizer_sha256"] = load_tokenizer().sha256  # as if tokenised with v1's
    (copy / "MANIFEST.json").write_text(json.dumps(m))
    monkeypatch.setitem(tasks.TASKS_DIRS, "v2", copy)
    with pytest.raises(tasks.TaskDataError, match="current v2 one"):
        tasks.load_task("var_if", version="v2")


def test_evaluate_all_reads_the_models_data_version(use_v2_dir):
    v2_model = GPT(ModelConfig(n_layer=1, d_model=32, data_version="v2"))
    res = tasks.evaluate_all(v2_model, max_examples=4)
    assert list(res) == list(tasks.TASKS) and all(r["n"] == 4 for r in res.values())
    ds = tasks.load_task("with_open", "test", version="v2").select(range(4))
    lg = tasks.pair_logits(v2_model, ds)
    assert res["with_open"]["loss"] == pytest.approx(tasks.task_loss(lg).mean().item(), abs=1e-6)
    assert tasks.task_metrics(v2_model, "with_open", max_examples=4) == res["with_open"]
    v1_model = GPT(ModelConfig(n_layer=1, d_model=32))
    assert tasks.task_metrics(v1_model, "with_open", max_examples=4, version="v2") != \
        tasks.task_metrics(v1_model, "with_open", max_examples=4)  # an explicit version wins


def test_lm_task_metrics_of_named_tasks_match_the_full_evaluation(use_v2_dir):
    from sparsecirc.data.lm import lm_task_metrics
    model = GPT(ModelConfig(n_layer=1, d_model=32, data_version="v2")).eval()
    some = lm_task_metrics(model, ["bracket_counting", "var_if"])
    assert list(some) == ["bracket_counting", "var_if"]
    assert some == {t: m for t, m in lm_task_metrics(model).items() if t in some}


def test_refreshing_named_task_metrics_needs_a_reason():
    from sparsecirc import build
    with pytest.raises(ValueError, match="reason and tasks"):
        build.refresh_lm_metrics("wst-zoo2-l4d128-sparse", tasks=["bracket_counting"])
    with pytest.raises(ValueError, match="reason and tasks"):
        build.refresh_lm_metrics("wst-zoo2-l4d128-sparse", reason="data regenerated")


def test_the_data_version_reaches_generators_that_take_it(monkeypatch):
    seen = []

    def versioned(d, version="v1"):
        seen.append(version)
        return ("x = 1\nif x == True", ":"), ("x = 1\nx = True", "\n")

    def plain(d):
        return ("y = 2\nif y == True", ":"), ("y = 2\ny = True", "\n")

    assert tasks.takes_version(versioned) and not tasks.takes_version(plain)
    t1 = tasks.Task("versioned", "a task whose generator takes the version", versioned, (":", "\n"), ("", ""))
    t2 = tasks.Task("plain", "a task whose generator does not", plain, (":", "\n"), ("", ""))
    a, _ = t1.make_pair(random.Random(0), version="v2")
    assert seen == ["v2"] and a.prompt_ids == tuple(load_tokenizer(version="v2").encode(a.prompt))
    t1.make_pair(random.Random(0))
    assert seen == ["v2", "v1"]
    assert t2.make_pair(random.Random(0), version="v2")[0].prompt == "y = 2\nif y == True"


def test_tasks_command_line_takes_a_version():
    from sparsecirc import __main__ as cli
    with pytest.raises(SystemExit):
        tasks.main(["--version", "v9"])
    with pytest.raises(SystemExit):
        cli.main(["tasks", "--version", "v9"])


def _check_no_overlap(n_programs: int) -> None:
    """Train and test prompts of every task are disjoint, and no test prompt is a substring of a v2 training
    document (stdlib train + the first ``n_programs`` programs of the train stream, a bounded sample)."""
    index = tasks.CorpusIndex(corpus_v2.load_corpus_v2("train", n_programs=n_programs)["text"])
    for name in tasks.TASKS:
        train, test = (set(tasks.load_task(name, s, version="v2")["prompt"]) for s in tasks.SPLITS)
        assert not train & test, name
        found = [p for p in test if p in index]
        assert not found, (name, found[:1])


def test_generated_v2_test_prompts_avoid_the_v2_training_corpus(use_v2_dir):
    _check_no_overlap(CHECK_PROGRAMS)


def test_committed_v2_test_prompts_avoid_the_v2_training_corpus(monkeypatch):
    if not (DATA_DIR / "tasks_v2" / "MANIFEST.json").exists():
        pytest.skip("data/tasks_v2 is not built yet (`python -m sparsecirc tasks --version v2`)")
    monkeypatch.setitem(tasks.TASKS_DIRS, "v2", DATA_DIR / "tasks_v2")
    _check_no_overlap(tasks.N_CHECK_PROGRAMS_V2)


@pytest.mark.parametrize("version", [4, 5])
def test_committed_v2_test_prompts_avoid_the_opt_in_generator_streams(monkeypatch, version):
    """Version 4 writes other file names into some ``open`` lines, version 5 draws other programs altogether: the
    committed test prompts must not occur in the first programs of their training streams either."""
    if not (DATA_DIR / "tasks_v2" / "MANIFEST.json").exists():
        pytest.skip("data/tasks_v2 is not built yet (`python -m sparsecirc tasks --version v2`)")
    monkeypatch.setitem(tasks.TASKS_DIRS, "v2", DATA_DIR / "tasks_v2")
    programs = simple_python_v2.generate_programs(tasks.N_CHECK_PROGRAMS_V2, 0, version=version)
    index = tasks.CorpusIndex(programs)
    for name in tasks.TASKS:
        found = [p for p in tasks.load_task(name, "test", version="v2")["prompt"] if p in index]
        assert not found, (name, found[:1])
    assert any(p in index for p in programs[:: len(programs) // 5])  # the index finds what it holds


def test_model_task_reads_the_data_version_of_the_model():
    from sparsecirc.core.config import ModelConfig
    from sparsecirc.core.model import GPT
    from sparsecirc.data import tasks

    v1 = GPT(ModelConfig(n_layer=1, d_model=16, d_head=8, n_ctx=16, d_vocab=2048))
    v2 = GPT(ModelConfig(n_layer=1, d_model=16, d_head=8, n_ctx=16, d_vocab=2048, data_version="v2"))
    a, b = tasks.model_task(v1, "bracket_counting", "test"), tasks.model_task(v2, "bracket_counting", "test")
    assert a["prompt"] == tasks.load_task("bracket_counting", "test")["prompt"]
    assert b["prompt"] == tasks.load_task("bracket_counting", "test", version="v2")["prompt"]
    assert a["prompt"] != b["prompt"]
