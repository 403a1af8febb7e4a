"""A model version, loaded once and called through a compiled function. The only module that
imports TensorFlow, and only inside a model's own child process (worker/child.py)."""
import importlib
import logging
import os

import numpy as np

from batching import bucket_for, buckets, pad, split
from jobs.repository import ModelSpec
from worker.errors import describe

log = logging.getLogger("inferq.worker")

# In-graph normalisation of uint8 pixels, per config `input.preprocessing`.
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def pin_gpu(gpu: str | None):
    """Restrict this process to one GPU. Must run before TensorFlow is imported."""
    if gpu not in (None, ""):
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


def _normalise(tf, x, mode: str, channels: int):
    x = tf.cast(x, tf.float32)
    if mode == "scale_0_1":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "caffe" and channels == 3:
        return x[..., ::-1] - tf.constant(_CAFFE_BGR_MEAN)
    if mode == "torch" and channels == 3:
        return (x / 255.0 - tf.constant(_TORCH_MEAN)) / tf.constant(_TORCH_STD)
    return x


def _custom_objects(ref: str) -> dict:
    if not ref:
        return {}
    module, _, attr = ref.partition(":")
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else {}


def _load(tf, spec: ModelSpec):
    """A callable batch -> outputs: Keras files through Keras (compile=False, so a metric used
    only in training never blocks serving), a SavedModel through its serving signature."""
    if os.path.isdir(spec.path):
        saved = tf.saved_model.load(spec.path)
        signature = saved.signatures["serving_default"]
        _, kwargs = signature.structured_input_signature
        if len(kwargs) != 1:
            raise ValueError(f"SavedModel serving_default takes {len(kwargs)} inputs; "
                             f"inferq serves models with one input")
        input_name = next(iter(kwargs))
        input_dtype = kwargs[input_name].dtype
        return lambda x: signature(**{input_name: tf.cast(x, input_dtype)}), saved
    model = tf.keras.models.load_model(spec.path, compile=False,
                                       custom_objects=_custom_objects(spec.custom_objects))
    return lambda x: model(x, training=False), model


class Predictor:
    """Runs batches through one model version; pads each to its bucket."""

    def __init__(self, spec: ModelSpec):
        import tensorflow as tf  # here, not at module level: after any fork

        for device in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(device, True)
        self.spec = spec
        self.device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
        call, self._owner = _load(tf, spec)  # _owner keeps the model alive
        self.precision = "float32"
        if spec.mixed_precision:
            call = self._mixed(tf, call)
        image = spec.kind == "image"
        mode, channels = spec.preprocessing, spec.channels

        @tf.function(jit_compile=spec.jit_compile)
        def run(x):
            x = _normalise(tf, x, mode, channels) if image else tf.cast(x, tf.float32)
            out = call(x)
            if isinstance(out, dict):
                out = out[sorted(out)[0]]
            elif isinstance(out, (list, tuple)):
                out = out[0]
            return tf.cast(out, tf.float32) if out.dtype == tf.float16 else out  # mixed

        self._run = run
        self.buckets = list(spec.buckets) or buckets(spec.max_batch_size)
        self.input_dtype = np.uint8 if image else np.dtype(spec.dtype)

    def _mixed(self, tf, call):
        """The model rebuilt with float16 compute and float32 weights (Keras' mixed_float16),
        on a GPU only: on a CPU float16 is slower, not faster. A model that cannot be rebuilt
        (a SavedModel, a subclassed model) keeps float32, with a warning."""
        name = f"model {self.spec.name} v{self.spec.version}"
        if self.device != "GPU":
            log.warning("%s: mixed_precision applies on a GPU; serving float32 on the CPU", name)
            return call
        model = self._owner
        try:
            mixed = tf.keras.models.clone_model(model, clone_function=lambda layer: (
                layer.__class__.from_config({**layer.get_config(), "dtype": "mixed_float16"})))
            mixed.set_weights(model.get_weights())
        except Exception as exc:  # SavedModels and subclassed models cannot be cloned
            log.warning("%s: mixed_precision is not possible (%s); serving float32", name,
                        describe(exc))
            return call
        self._owner, self.precision = mixed, "mixed_float16"
        return lambda x: mixed(x, training=False)

    def warm_up(self):
        """Trace and run every bucket once, so no request pays for a trace. Each trace is asked
        for (get_concrete_function), so TensorFlow does not take the warm-up's one trace per
        batch size for accidental retracing and warn about it."""
        import tensorflow as tf

        for size in self.buckets:
            shape = (size,) + self.spec.input_shape
            self._run.get_concrete_function(tf.TensorSpec(shape, self.input_dtype))
            out = self._run(np.zeros(shape, dtype=self.input_dtype))
        self.output_shape = list(out.shape[1:])  # one input's output, for protocol metadata
        log.info("model %s v%d warm on %s (%s%s) for batch sizes %s", self.spec.name,
                 self.spec.version, self.device, self.precision,
                 ", XLA" if self.spec.jit_compile else "", self.buckets)

    def predict(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One output row per input."""
        size = bucket_for(len(inputs), self.buckets)
        out = self._run(pad(np.stack(inputs), size))
        return split(np.asarray(out), len(inputs), size)

    def result(self, row: np.ndarray) -> dict:
        """A classifier's top-k (image models, or any model with labels), else the raw row."""
        if self.spec.kind == "image" or self.spec.labels:
            return {"top_k": self.top_k(row)}
        return {"output": self.raw(row)}

    @staticmethod
    def raw(row: np.ndarray) -> list:
        """The model's output row as it is (nested lists keep its shape)."""
        return np.asarray(row, dtype=np.float64).tolist()

    def top_k(self, row: np.ndarray) -> list[dict]:
        row = np.ravel(row)
        k = min(self.spec.top_k, row.shape[0])
        best = _best(row, k)
        labels = self.spec.labels
        return [{"label": labels[i] if i < len(labels) else str(i), "index": int(i),
                 "score": float(row[i])} for i in best]


def _best(row: np.ndarray, k: int) -> np.ndarray:
    """The indices of the `k` highest values, highest first, ties by index: as a stable sort
    of the whole row ranks them, at a third of its cost on a thousand classes (~10 us, not
    ~26). Only the values at least the k-th highest are sorted."""
    n = row.shape[0]
    if k < n and not np.isnan(row).any():  # partition ranks NaN highest, the sort lowest
        kth = np.partition(row, n - k)[n - k]
        candidates = np.flatnonzero(row >= kth)
        return candidates[np.argsort(-row[candidates], kind="stable")][:k]
    return np.argsort(-row, kind="stable")[:k]
