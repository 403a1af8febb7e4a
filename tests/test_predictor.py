"""The per-model compile options: XLA (`jit_compile`) and mixed precision (`mixed_precision`),
on a small Keras model run through worker.predictor.Predictor."""
import json
import shutil

import numpy as np
import pytest

from jobs.repository import served_versions
from worker.predictor import Predictor

tf = pytest.importorskip("tensorflow")


def write_config(repo, name, **config):
    (repo / name / "config.json").write_text(json.dumps({
        "input": {"kind": "image", "size": [16, 16]}, "max_batch_size": 4, **config}))
    state = served_versions(str(repo), name)[0]
    assert state.error is None, state.error
    return state.spec


def make_model(repo, name, **config):
    inputs = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(4, activation="softmax")(x)
    model = tf.keras.Model(inputs, outputs)
    # Weights away from their initial values, so a copy that dropped them would show.
    model.set_weights([w + np.random.default_rng(i).normal(0, 0.1, w.shape).astype(w.dtype)
                       for i, w in enumerate(model.get_weights())])
    (repo / name / "1").mkdir(parents=True)
    model.save(repo / name / "1" / "model.keras")
    return write_config(repo, name, **config)


@pytest.fixture(scope="module")
def pixels():
    return [np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
            for i in range(3)]


def test_xla_gives_the_same_outputs(tmp_path, pixels):
    plain = Predictor(make_model(tmp_path, "plain"))
    (tmp_path / "xla" / "1").mkdir(parents=True)
    # The same model file, compiled with XLA.
    shutil.copy(tmp_path / "plain" / "1" / "model.keras", tmp_path / "xla" / "1")
    xla = Predictor(write_config(tmp_path, "xla", jit_compile=True))
    plain.warm_up()
    xla.warm_up()
    for a, b in zip(plain.predict(pixels), xla.predict(pixels)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_mixed_precision_computes_in_float16_on_a_gpu_with_the_same_weights(tmp_path, pixels):
    spec = make_model(tmp_path, "mixed", mixed_precision=True)
    plain = Predictor(spec)
    assert plain.precision == "float32"  # no GPU here: float16 would only be slower
    # The GPU path, forced on this CPU: the model rebuilt with float16 compute.
    mixed = Predictor.__new__(Predictor)
    mixed.spec, mixed.device, mixed._owner = spec, "GPU", plain._owner
    call = mixed._mixed(tf, lambda x: plain._owner(x, training=False))
    assert mixed.precision == "mixed_float16"
    assert {layer.compute_dtype for layer in mixed._owner.layers[1:]} == {"float16"}
    x = tf.constant(np.stack(pixels), tf.float32) / 255.0
    got = tf.cast(call(x), tf.float32).numpy()
    want = plain._owner(x, training=False).numpy()
    np.testing.assert_allclose(got, want, atol=1e-2)
    assert not np.allclose(got, want, atol=1e-7)  # float16 arithmetic really ran


def test_mixed_precision_keeps_float32_for_a_model_it_cannot_rebuild(tmp_path, caplog):
    mixed = Predictor.__new__(Predictor)
    mixed.spec = make_model(tmp_path, "saved", mixed_precision=True)
    mixed.device, mixed.precision = "GPU", "float32"
    mixed._owner = object()  # as a SavedModel: no Keras layers to clone
    call = lambda x: x  # noqa: E731
    assert mixed._mixed(tf, call) is call
    assert mixed.precision == "float32"
    assert "mixed_precision is not possible" in caplog.text


@pytest.mark.parametrize("key", ["jit_compile", "mixed_precision"])
def test_compile_options_must_be_booleans(tmp_path, key):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.keras").write_bytes(b"x")
    (tmp_path / "m" / "config.json").write_text(json.dumps({
        "input": {"kind": "image", "size": [8, 8]}, key: "yes"}))
    state = served_versions(str(tmp_path), "m")[0]
    assert state.spec is None and f"{key} must be true or false" in state.error


def test_top_k_ranks_as_a_stable_sort_of_the_whole_row():
    from worker.predictor import _best

    rng = np.random.default_rng(0)
    rows = [rng.random(1000).astype(np.float32),
            rng.integers(0, 4, 50).astype(np.float32),  # many ties, across the k-th place
            np.array([0.1, np.nan, 0.7, 0.7, np.nan], dtype=np.float32),
            np.array([0.2, 0.9], dtype=np.float32)]
    for row in rows:
        for k in (1, 3, 5, len(row), len(row) + 2):
            expected = np.argsort(-row, kind="stable")[:k]
            assert _best(row, k).tolist() == expected.tolist(), (row, k)
