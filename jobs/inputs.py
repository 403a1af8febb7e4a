"""One input as a model takes it, shared by the API (a submit) and the feeder (a batch line):
base64 text to bytes, a tensor instance packed as the worker unpacks it, and the error a bad
one gets (an HTTP status, a code, a message that names the input)."""
import base64
import binascii


class InputError(ValueError):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def pack_tensor(inst, model_input: dict, where: str) -> bytes:
    """One instance as the worker unpacks it: little-endian values of the model's dtype."""
    import numpy as np  # here, not at the top: image submits never need it
    shape, names = tuple(model_input["shape"]), model_input.get("names") or []
    dtype = np.dtype(model_input["dtype"]).newbyteorder("<")
    if isinstance(inst, dict):
        missing = [n for n in names if n not in inst]
        if not names or missing or len(inst) != len(names):
            raise InputError(400, "invalid_input", f"{where} must have exactly the keys {names}"
                           if names else f"{where}: this model's features have no names; "
                           "send a list")
        inst = [inst[n] for n in names]
    try:
        arr = np.asarray(inst, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if arr is None or arr.shape != shape or not np.isfinite(arr).all():
        raise InputError(400, "invalid_input", f"{where} must be finite numbers of shape "
                       f"{list(shape)}")
    if dtype.kind in "iu" and not (arr == np.round(arr)).all():
        raise InputError(400, "invalid_input", f"{where} must be whole numbers")
    return arr.astype(dtype).tobytes()


def decode_b64(value, where: str) -> bytes:
    """Base64 text (or a data URL) to bytes."""
    if not isinstance(value, str):
        raise InputError(400, "invalid_input", f"{where} must be a base64 string")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]  # accept data URLs as browsers make them
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(400, "invalid_base64", f"{where} is not valid base64") from None
