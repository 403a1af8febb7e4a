"""Reading the model repository (no TensorFlow)."""
import json

import pytest

from jobs.repository import ModelConfigError, load_spec, model_names


def make(repo, name, versions=(1,), config=None, filename="model.keras"):
    for v in versions:
        (repo / name / str(v)).mkdir(parents=True)
        (repo / name / str(v) / filename).write_bytes(b"x")
    if config is not None:
        (repo / name / "config.json").write_text(json.dumps(config))


CONFIG = {"input": {"size": [32, 24]}, "labels": ["a", "b"], "top_k": 1}


def test_highest_integer_version_serves_and_other_dirs_are_ignored(tmp_path):
    make(tmp_path, "m", versions=(1, 2, 10), config=CONFIG)
    (tmp_path / "m" / "latest").mkdir()
    (tmp_path / "not-a-model").mkdir()
    spec = load_spec(str(tmp_path), "m")
    assert spec.version == 10 and spec.path.endswith("m/10/model.keras")
    assert spec.size == (32, 24) and spec.labels == ["a", "b"] and spec.top_k == 1
    assert spec.max_batch_size == 32 and spec.preprocessing == "scale_0_1"
    assert model_names(str(tmp_path)) == ["m"]
    assert model_names(str(tmp_path / "missing")) == []


def test_a_version_config_overrides_the_model_config(tmp_path):
    make(tmp_path, "m", config=CONFIG)
    (tmp_path / "m" / "1" / "config.json").write_text(json.dumps({"top_k": 2,
                                                                  "max_batch_size": 8}))
    spec = load_spec(str(tmp_path), "m")
    assert spec.top_k == 2 and spec.max_batch_size == 8 and spec.labels == ["a", "b"]


@pytest.mark.parametrize("config,message", [
    ({"input": {}}, "input.size must be"),
    ({"input": {"size": [8, 8], "preprocessing": "magic"}}, "input.preprocessing must be"),
    ({"input": {"size": [8, 8], "color_mode": "cmyk"}}, "input.color_mode must be"),
    ({"input": {"size": [8, 8]}, "labels": "a,b"}, "labels must be a list"),
    ({"input": {"size": [8, 8]}, "max_batch_size": 0}, "max_batch_size must be a positive"),
])
def test_broken_configs_are_refused_with_the_reason(tmp_path, config, message):
    make(tmp_path, "m", config=config)
    with pytest.raises(ModelConfigError, match=message):
        load_spec(str(tmp_path), "m")


def test_a_version_without_a_model_file_is_refused(tmp_path):
    make(tmp_path, "m", config=CONFIG, filename="weights.bin")
    with pytest.raises(ModelConfigError, match="holds none of"):
        load_spec(str(tmp_path), "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match="config.json"):
        load_spec(str(tmp_path), "m")
