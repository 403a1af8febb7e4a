"""One batch input as the model takes it: an archive member or a JSONL line's `b64` must be an
image the API would accept; a JSONL line's `inputs` a tensor instance of the model's shape.
A bad input gets the same error codes a job's input gets."""
import json

from jobs.batchfile import Item
from jobs.images import check_image
from jobs.inputs import InputError, decode_b64, pack_tensor


def model_input(item: Item, spec: dict, max_pixels: int) -> bytes:
    """The bytes the worker gets for `item`; raises InputError. `spec`: what the model takes
    (the batch's `input`: kind, and for tensors shape, dtype, names)."""
    where = f"input {item.custom_id!r}"
    if item.error:
        raise InputError(400, *item.error)
    if spec["kind"] == "tensor":
        if item.fields is None:
            raise InputError(400, "invalid_input", f"{where}: this model takes tensors; send "
                             "a JSONL file of {\"custom_id\", \"inputs\"} lines")
        if "inputs" not in item.fields:
            raise InputError(400, "invalid_input", f"{where} needs \"inputs\": an instance "
                             "of the model's shape")
        return pack_tensor(item.fields["inputs"], spec, where)
    data = item.data
    if item.fields is not None:
        if "b64" not in item.fields:
            raise InputError(400, "invalid_input", f"{where} needs \"b64\": the image, base64")
        data = decode_b64(item.fields["b64"], where)
    check_image(data, max_pixels, where)
    return data


def error_line(item: Item, code: str, message: str) -> str:
    return json.dumps({"custom_id": item.custom_id, "index": item.index,
                       "error": {"code": code, "message": message}})
