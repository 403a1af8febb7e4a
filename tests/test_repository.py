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
    assert spec.size == (32, 24) and spec.labels == ("a", "b") and spec.top_k == 1
    assert spec.max_batch_size == 32 and spec.preprocessing == "scale_0_1"
    assert model_names(str(tmp_path)) == ["m"]
    assert model_names(str(tmp_path / "missing")) == []


@pytest.mark.parametrize("filename,platform", [
    ("model.keras", "tensorflow_keras"), ("model.h5", "tensorflow_keras"),
    ("saved_model.pb", "tensorflow_savedmodel")])
def test_the_platform_follows_the_model_file(tmp_path, filename, platform):
    make(tmp_path, "m", config=CONFIG, filename=filename)
    assert load_spec(str(tmp_path), "m").platform == platform


def test_a_version_config_overrides_the_model_config(tmp_path):
    make(tmp_path, "m", config=CONFIG)
    (tmp_path / "m" / "1" / "config.json").write_text(json.dumps({"top_k": 2,
                                                                  "max_batch_size": 8}))
    spec = load_spec(str(tmp_path), "m")
    assert spec.top_k == 2 and spec.max_batch_size == 8 and spec.labels == ("a", "b")


@pytest.mark.parametrize("config,message", [
    ({"input": {}}, "input.size must be"),
    ({"input": {"size": [8, 8], "preprocessing": "magic"}}, "input.preprocessing must be"),
    ({"input": {"size": [8, 8], "color_mode": "cmyk"}}, "input.color_mode must be"),
    ({"input": {"size": [8, 8], "channels": 1}}, "does not match color_mode"),
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


def test_version_policies(tmp_path):
    from jobs.repository import served_versions
    make(tmp_path, "m", versions=(1, 2, 3), config=CONFIG)
    assert [s.version for s in served_versions(str(tmp_path), "m")] == [3]
    for policy, expected in [("all", [1, 2, 3]), ({"specific": [1, 3, 7]}, [1, 3]),
                             ({"latest": {}}, [3])]:
        (tmp_path / "m" / "config.json").write_text(json.dumps({**CONFIG,
                                                                "version_policy": policy}))
        assert [s.version for s in served_versions(str(tmp_path), "m")] == expected
    (tmp_path / "m" / "config.json").write_text(json.dumps({**CONFIG, "version_policy": "some"}))
    [state] = served_versions(str(tmp_path), "m")
    assert state.spec is None and "version_policy" in state.error


def test_one_broken_version_does_not_hide_the_others(tmp_path):
    from jobs.repository import served_versions
    make(tmp_path, "m", versions=(1, 2), config={**CONFIG, "version_policy": "all"})
    (tmp_path / "m" / "2" / "config.json").write_text(json.dumps({"top_k": -1}))
    v1, v2 = served_versions(str(tmp_path), "m")
    assert v1.spec is not None and v2.spec is None and "top_k" in v2.error


def test_tensor_inputs_labels_files_and_buckets(tmp_path):
    make(tmp_path, "t", config={"input": {"kind": "tensor", "dtype": "float32", "shape": [3],
                                          "names": ["a", "b", "c"]},
                                "labels": {"file": "labels.txt"}, "max_batch_size": 16,
                                "buckets": [1, 4, 16]})
    (tmp_path / "t" / "labels.txt").write_text("yes\nno\n")
    spec = load_spec(str(tmp_path), "t")
    assert spec.kind == "tensor" and spec.input_shape == (3,) and spec.names == ("a", "b", "c")
    assert spec.labels == ("yes", "no") and spec.buckets == (1, 4, 16)
    for bad, message in [({"input": {"kind": "tensor", "shape": [3], "names": ["a"]}}, "names"),
                         ({"input": {"kind": "tensor", "shape": "3"}}, "input.shape"),
                         ({"input": {"kind": "audio"}}, "input.kind"),
                         ({**CONFIG, "buckets": [1, 8]}, "largest bucket")]:
        (tmp_path / "t" / "config.json").write_text(json.dumps(bad))
        with pytest.raises(ModelConfigError, match=message):
            load_spec(str(tmp_path), "t")


def test_fingerprint_changes_with_the_config_or_the_model_file(tmp_path):
    import os
    make(tmp_path, "m", config=CONFIG)
    first = load_spec(str(tmp_path), "m").fingerprint
    assert load_spec(str(tmp_path), "m").fingerprint == first
    (tmp_path / "m" / "config.json").write_text(json.dumps({**CONFIG, "top_k": 2}))
    second = load_spec(str(tmp_path), "m").fingerprint
    assert second != first
    os.utime(tmp_path / "m" / "1" / "model.keras", ns=(1, 1))
    assert load_spec(str(tmp_path), "m").fingerprint != second
