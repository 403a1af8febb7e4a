"""A tiny image model that raises on any input holding a pure white pixel: the tests' poison.
Build it with `python -m tests.poison_model <repository dir>` (a subprocess, so the test
process itself never imports TensorFlow)."""
import json
import sys
from pathlib import Path

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="inferq_tests")
class FailOnWhite(keras.layers.Layer):
    def call(self, x):
        check = tf.debugging.assert_less(tf.reduce_max(x), 0.999,
                                         message="poison input: a white pixel")
        with tf.control_dependencies([check]):
            return tf.identity(x)


CUSTOM_OBJECTS = {"FailOnWhite": FailOnWhite}


def build(repository: Path, name: str = "poison"):
    version_dir = repository / name / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(FailOnWhite()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.save(version_dir / "model.keras")
    (repository / name / "config.json").write_text(json.dumps({
        "input": {"kind": "image", "size": [8, 8], "preprocessing": "scale_0_1"},
        "labels": ["a", "b"], "top_k": 2, "max_batch_size": 8,
        "custom_objects": "tests.poison_model:CUSTOM_OBJECTS"}))


if __name__ == "__main__":
    build(Path(sys.argv[1]))
