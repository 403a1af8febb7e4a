"""The bulk lane in a model's loop: the result lines bulk batch inputs get (the feeder moves
them into the batch's results and errors files), with the error codes jobs use."""
from jobs.consumer import BulkResult
from jobs.stream import Entry

INPUT_GONE, MODEL_ERROR, POISON = "input_gone", "model_error", "poison"


def where(entry: Entry) -> str:
    """An input as logs name it."""
    return (f"batch {entry.batch} input {entry.idx}" if entry.bulk
            else f"job {entry.job_id} input {entry.idx}")


def decode_error_code(kind: str) -> str:
    """The code of an input the worker cannot turn into a model input."""
    return "invalid_image" if kind == "image" else "invalid_input"


def succeeded(entry: Entry, predictor, row) -> BulkResult:
    """A result line: image models give the top-k list a job's output has under "top_k";
    other models their raw output."""
    spec = predictor.spec
    outputs = (predictor.result(row)["top_k"] if spec.kind == "image"
               else predictor.raw(row))
    return BulkResult(entry.id, entry.batch, entry.idx, entry.custom_id, outputs=outputs,
                      model_version=int(spec.version))


def failed(entry: Entry, code: str, message: str) -> BulkResult:
    return BulkResult(entry.id, entry.batch, entry.idx, entry.custom_id, error=(code, message))
