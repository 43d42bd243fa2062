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
