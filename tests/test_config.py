import json

import pytest

from sparsecirc.core.config import ConfigError, ModelConfig, RunConfig, TrainConfig, make_config


def test_round_trip_through_json():
    cfg = make_config("book", model={"act_keep_frac": 0.25, "attn_sink": True}, train={"steps": 7})
    again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.model.n_head == 128 // 16 and again.model.d_mlp == 4 * 128


def test_unknown_key_names_the_key_and_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['d_modle'\].*d_model"):
        ModelConfig.from_dict({"d_modle": 64})
    with pytest.raises(ConfigError, match="unknown section"):
        make_config("ci", optim={"lr": 1})
    with pytest.raises(ConfigError, match="unknown scale"):
        make_config("huge")


@pytest.mark.parametrize("kw, msg", [({"d_model": 100, "d_head": 16}, "not a multiple"),
                                     ({"n_layer": 0}, "positive int"),
                                     ({"act_keep_frac": 1.5}, "act_keep_frac"),
                                     ({"act_sparsity_sites": ("attn_q", "nope")}, "unknown site")])
def test_bad_model_values(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        ModelConfig(**kw)


def test_bad_train_values():
    with pytest.raises(ConfigError, match="grad_rms"):
        TrainConfig(grad_rms="sometimes")
    with pytest.raises(ConfigError, match="steps"):
        TrainConfig(steps=0)


def test_scales_differ_in_size():
    assert make_config("ci").model.d_model < make_config("book").model.d_model < make_config("paper").model.d_model


def test_data_version_dial_defaults_to_v1_and_v1_configs_serialise_as_before():
    cfg = make_config("book")
    assert cfg.model.data_version == "v1" and "data_version" not in cfg.to_dict()["model"]
    assert "n_simple_tokens" not in cfg.to_dict()["data"]  # a stored v1 config has neither key
    old = json.loads(json.dumps(cfg.to_dict()))
    assert RunConfig.from_dict(old) == cfg  # absent key = the default
    explicit = {**old, "model": {**old["model"], "data_version": "v1"}}
    assert RunConfig.from_dict(explicit) == cfg and RunConfig.from_dict(explicit).to_dict() == old


def test_data_version_v2_round_trips_and_bad_values_name_the_valid_ones():
    from sparsecirc.core.config import DATA_VERSION_NAMES
    from sparsecirc.data.versions import DATA_VERSIONS
    assert DATA_VERSION_NAMES == tuple(DATA_VERSIONS)  # core may not import data: the two lists must agree
    cfg = make_config("ci", model={"data_version": "v2"}, data={"n_simple_tokens": 60_000_000})
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["model"]["data_version"] == "v2" and d["data"]["n_simple_tokens"] == 60_000_000
    assert RunConfig.from_dict(d) == cfg
    with pytest.raises(ConfigError, match=r"unknown data version 'v3'; valid: v1, v2"):
        ModelConfig(data_version="v3")
    with pytest.raises(ConfigError, match=r"n_simple_tokens=1000 sizes data v2's program stream.*'v1'"):
        make_config("ci", data={"n_simple_tokens": 1000})
    with pytest.raises(ConfigError, match="n_simple_tokens must be a positive int"):
        make_config("ci", model={"data_version": "v2"}, data={"n_simple_tokens": 0})


def test_generator_version_is_v2_only_round_trips_and_is_checked():
    from sparsecirc.core.config import GENERATOR_VERSIONS
    from sparsecirc.data import simple_python_v2
    assert GENERATOR_VERSIONS == simple_python_v2.VERSIONS  # core may not import data: the two lists must agree
    plain = make_config("ci", model={"data_version": "v2"}, data={"n_simple_tokens": 1000})
    assert "generator_version" not in plain.to_dict()["data"]  # committed v2 configs serialise as before
    cfg = make_config("ci", model={"data_version": "v2"}, data={"n_simple_tokens": 1000, "generator_version": 4})
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["data"]["generator_version"] == 4 and RunConfig.from_dict(d) == cfg and cfg != plain
    with pytest.raises(ConfigError, match="generator_version must be one of"):
        make_config("ci", model={"data_version": "v2"}, data={"n_simple_tokens": 1000, "generator_version": 2})
    with pytest.raises(ConfigError, match="generator_version=4 picks data v2's program generator"):
        make_config("ci", data={"generator_version": 4})
