"""The model repository on disk: `<repo>/<name>/<int version>/` holding `model.keras`, `model.h5`
or a SavedModel, with `config.json` beside the versions (a version may hold its own
`config.json` that overrides keys). Reading it needs no TensorFlow, so the API reads it too."""
import hashlib
import json
import os
import re
from dataclasses import dataclass

MODEL_FILES = ("model.keras", "model.h5", "saved_model.pb")
PREPROCESSING = ("scale_0_1", "tf", "caffe", "torch", "none")
COLOR_MODES = {"rgb": 3, "grayscale": 1}
DTYPES = ("float32", "float64", "int32", "int64", "uint8")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ModelConfigError(ValueError):
    """A model's directory or config cannot be served; the message says why."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: int
    path: str  # the model file, or the SavedModel directory
    kind: str = "image"  # or "tensor"
    size: tuple[int, int] = (0, 0)  # images: width, height
    color_mode: str = "rgb"
    preprocessing: str = "scale_0_1"
    dtype: str = "float32"  # tensors: element type, shape of one instance, names of features
    shape: tuple[int, ...] = ()
    names: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    top_k: int = 5
    max_batch_size: int = 32
    buckets: tuple[int, ...] = ()  # padded batch sizes; empty: powers of two
    custom_objects: str = ""  # "module:attribute", a dict of custom layers/functions
    input_name: str = "input"  # what the standard protocols call the input
    jit_compile: bool = False  # compile the model function with XLA
    mixed_precision: bool = False  # float16 compute on a GPU (Keras models)
    fingerprint: str = ""  # changes when the config or the model files change

    @property
    def platform(self) -> str:
        """What the model is, as KServe's metadata names it. A SavedModel has its name there;
        a .keras or .h5 file has none (Triton's names are framework_format, e.g.
        tensorflow_graphdef), so it is `tensorflow_keras` in the same form."""
        return "tensorflow_keras" if self.path.endswith((".keras", ".h5")) else \
            "tensorflow_savedmodel"

    @property
    def channels(self) -> int:
        return COLOR_MODES[self.color_mode]

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.kind == "image":
            return (self.size[1], self.size[0], self.channels)
        return self.shape


@dataclass
class VersionState:
    """One version the repository asks to serve: its spec, or why it cannot be served."""
    name: str
    version: int
    spec: ModelSpec | None = None
    error: str | None = None


def model_names(repository: str) -> list[str]:
    """Names of the model directories that hold at least one integer version."""
    try:
        entries = sorted(os.scandir(repository), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    return [e.name for e in entries if e.is_dir() and NAME_RE.match(e.name) and versions(e.path)]


def versions(model_dir: str) -> list[int]:
    try:
        return sorted(int(e.name) for e in os.scandir(model_dir)
                      if e.is_dir() and e.name.isdigit())
    except (FileNotFoundError, NotADirectoryError):
        return []


def served_versions(repository: str, name: str, default_max_batch_size: int = 32
                    ) -> list[VersionState]:
    """The versions `name`'s version policy serves, each with its spec or its error."""
    model_dir = os.path.join(repository, name)
    found = versions(model_dir)
    try:
        config = _read_json(os.path.join(model_dir, "config.json"))
        chosen = _apply_policy(config.get("version_policy", "latest"), found)
    except ModelConfigError as exc:
        return [VersionState(name, v, error=str(exc)) for v in found[-1:]]
    states = []
    for version in chosen:
        try:
            states.append(VersionState(name, version, spec=load_spec(
                repository, name, version, default_max_batch_size)))
        except ModelConfigError as exc:
            states.append(VersionState(name, version, error=str(exc)))
    return states


def _apply_policy(policy, found: list[int]) -> list[int]:
    if policy == "latest" or policy == {"latest": {}}:
        return found[-1:]
    if policy == "all":
        return found
    if isinstance(policy, dict) and isinstance(policy.get("specific"), list):
        wanted = policy["specific"]
        if all(isinstance(v, int) for v in wanted):
            return [v for v in found if v in wanted]
    raise ModelConfigError(f"version_policy must be \"latest\", \"all\" or "
                           f"{{\"specific\": [versions]}}, got {policy!r}")


def load_spec(repository: str, name: str, version: int | None = None,
              default_max_batch_size: int = 32) -> ModelSpec:
    """The spec of `version` of model `name` (default: the highest)."""
    model_dir = os.path.join(repository, name)
    if version is None:
        found = versions(model_dir)
        if not found:
            raise ModelConfigError(f"model {name!r}: no integer version directory in {model_dir}")
        version = found[-1]
    version_dir = os.path.join(model_dir, str(version))
    config = _read_json(os.path.join(model_dir, "config.json"))
    config.update(_read_json(os.path.join(version_dir, "config.json")))
    path = _model_path(version_dir)
    return _spec(name, version, path, config, model_dir, default_max_batch_size,
                 _fingerprint(config, path))


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            value = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelConfigError(f"{path}: {exc}") from exc
    if not isinstance(value, dict):
        raise ModelConfigError(f"{path}: must hold a JSON object")
    return value


def _model_path(version_dir: str) -> str:
    for filename in MODEL_FILES:
        path = os.path.join(version_dir, filename)
        if os.path.exists(path):
            return version_dir if filename == "saved_model.pb" else path
    raise ModelConfigError(f"{version_dir}: holds none of {', '.join(MODEL_FILES)}")


def _fingerprint(config: dict, path: str) -> str:
    """A digest of the config and the model files' sizes and times: a new one means reload."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    files = [path] if os.path.isfile(path) else [
        os.path.join(d, f) for d, _, fs in os.walk(path) for f in sorted(fs)]
    for f in sorted(files):
        st = os.stat(f)
        digest.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _positive_int(name, key, value):
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise ModelConfigError(f"model {name!r}: {key} must be a positive integer, got {value!r}")
    return value


def _labels(name, config, model_dir) -> tuple[str, ...]:
    labels = config.get("labels", [])
    if isinstance(labels, dict) and isinstance(labels.get("file"), str):
        path = os.path.join(model_dir, labels["file"])
        try:
            with open(path) as f:
                labels = [line.strip() for line in f if line.strip()]
        except OSError as exc:
            raise ModelConfigError(f"model {name!r}: labels file: {exc}") from exc
    if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise ModelConfigError(f"model {name!r}: labels must be a list of strings or "
                               f"{{\"file\": \"labels.txt\"}}")
    return tuple(labels)


def _spec(name, version, path, config, model_dir, default_max_batch_size, fingerprint):
    inp = config.get("input", {})
    if not isinstance(inp, dict):
        raise ModelConfigError(f"model {name!r}: input must be an object")
    common = {"labels": _labels(name, config, model_dir),
              "top_k": _positive_int(name, "top_k", config.get("top_k", 5)),
              "max_batch_size": _positive_int(name, "max_batch_size",
                                              config.get("max_batch_size",
                                                         default_max_batch_size)),
              "custom_objects": config.get("custom_objects", ""),
              "input_name": inp.get("name", "image" if inp.get("kind", "image") == "image"
                                    else "input")}
    if not (isinstance(common["input_name"], str) and NAME_RE.match(common["input_name"])):
        raise ModelConfigError(f"model {name!r}: input.name must be a plain name")
    for key in ("jit_compile", "mixed_precision"):
        common[key] = config.get(key, False)
        if not isinstance(common[key], bool):
            raise ModelConfigError(f"model {name!r}: {key} must be true or false, "
                                   f"got {common[key]!r}")
    buckets = config.get("buckets", [])
    if not isinstance(buckets, list):
        raise ModelConfigError(f"model {name!r}: buckets must be a list of batch sizes")
    for b in buckets:
        _positive_int(name, "buckets", b)
    if buckets and max(buckets) != common["max_batch_size"]:
        raise ModelConfigError(f"model {name!r}: the largest bucket must be max_batch_size")
    common["buckets"] = tuple(sorted(set(buckets)))
    kind = inp.get("kind", "image")
    if kind == "image":
        return ModelSpec(name=name, version=version, path=path, kind=kind, fingerprint=fingerprint,
                         **_image_input(name, inp), **common)
    if kind == "tensor":
        return ModelSpec(name=name, version=version, path=path, kind=kind, fingerprint=fingerprint,
                         **_tensor_input(name, inp), **common)
    raise ModelConfigError(f"model {name!r}: input.kind must be \"image\" or \"tensor\", "
                           f"got {kind!r}")


def _image_input(name, inp) -> dict:
    size = inp.get("size")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(s, int) and s > 0 for s in size)):
        raise ModelConfigError(f"model {name!r}: input.size must be [width, height], got {size!r}")
    color_mode = inp.get("color_mode", "rgb")
    if color_mode not in COLOR_MODES:
        raise ModelConfigError(f"model {name!r}: input.color_mode must be one of "
                               f"{sorted(COLOR_MODES)}, got {color_mode!r}")
    channels = inp.get("channels", COLOR_MODES[color_mode])
    if channels != COLOR_MODES[color_mode]:
        raise ModelConfigError(f"model {name!r}: input.channels {channels!r} does not match "
                               f"color_mode {color_mode!r} ({COLOR_MODES[color_mode]} channels)")
    preprocessing = inp.get("preprocessing", "scale_0_1")
    if preprocessing not in PREPROCESSING:
        raise ModelConfigError(f"model {name!r}: input.preprocessing must be one of "
                               f"{PREPROCESSING}, got {preprocessing!r}")
    return {"size": (size[0], size[1]), "color_mode": color_mode, "preprocessing": preprocessing}


def _tensor_input(name, inp) -> dict:
    shape, dtype, names = inp.get("shape"), inp.get("dtype", "float32"), inp.get("names", [])
    if not (isinstance(shape, list) and all(isinstance(s, int) and s > 0 for s in shape)):
        raise ModelConfigError(f"model {name!r}: input.shape must be a list of positive sizes "
                               f"(one instance, no batch axis), got {shape!r}")
    if dtype not in DTYPES:
        raise ModelConfigError(f"model {name!r}: input.dtype must be one of {DTYPES}")
    if names and not (len(shape) == 1 and len(names) == shape[0]
                      and all(isinstance(n, str) for n in names)):
        raise ModelConfigError(f"model {name!r}: input.names must name each of the "
                               f"{shape[0] if len(shape) == 1 else '?'} features of a 1-D input")
    return {"shape": tuple(shape), "dtype": dtype, "names": tuple(names)}
