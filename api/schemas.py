"""The shapes of requests and answers, as pydantic models. Request models validate what the
handlers read (api/inputs.py, api/options.py, api/jobs.py); every model here also feeds the
OpenAPI document (api/openapi.py), so the document and the checks cannot drift apart.

Request models are checked in strict mode (`validate`), on what json.loads or the form gave.
Response models only describe: the handlers build their JSON themselves. So do the TF Serving
and KServe request models: api/tfserving.py and api/kserve.py parse their bodies by hand."""
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from api.errors import ApiError
from jobs import batch
from jobs.repository import NAME_RE
from jobs.record import WEBHOOK_EVENTS

# A tiny PNG for the document's examples (schemathesis sends them too, so some submits pass).
PNG_1X1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElF"
           "TkSuQmCC")
MODEL_NAME = NAME_RE.pattern
JOB_ID = r"^[A-Za-z0-9_-]{16,64}$"  # as jobs.record.is_job_id (ASCII: the ids we make)
BATCH_ID = r"^batch_[A-Za-z0-9_-]{16,64}$"  # as jobs.batch.is_batch_id
MAX_METADATA_BYTES = 16 * 1024
MAX_EXPIRES_AFTER_S = 365 * 86400
# A one-line JSONL batch for the document's examples (schemathesis sends it too).
JSONL_EXAMPLE = '{"custom_id": "photo-1", "b64": "%s"}\n' % PNG_1X1


def _strip(value):
    return value.strip() if isinstance(value, str) else value


VersionStateName = Literal["available", "loading", "unloading", "unavailable"]
Event = Annotated[Literal[WEBHOOK_EVENTS], BeforeValidator(_strip)]


# --- requests ---------------------------------------------------------------------------------

class WebhookOptions(BaseModel):
    webhook: str | None = Field(None, max_length=2048, description=(
        "An http(s) URL that gets a signed POST for each event (Standard Webhooks): "
        "`{\"type\": \"job.started\" or \"job.completed\", \"timestamp\", \"data\": the job "
        "as it was then}`. Needs INFERQ_WEBHOOK_SECRET on the server."))
    webhook_events_filter: list[Event] | None = Field(None, min_length=1, description=(
        "Which events to send; the default is [\"completed\"]. Needs a webhook."))


class ImageB64(BaseModel):
    b64: str = Field(description="The encoded image (JPEG, PNG, WebP, BMP or GIF) in base64, "
                     "or as a data URL", examples=[PNG_1X1])


class Images(BaseModel):
    images: list[ImageB64] = Field(min_length=1, description="One input of the job each")


# Bases are listed options last so that their fields come last: in the document, and in
# which error is reported first.
class SubmitImages(WebhookOptions, Images):
    """JSON submit to an image model."""
    model_config = ConfigDict(json_schema_extra={"examples": [{"images": [{"b64": PNG_1X1}]}]})


Instance = float | list[Any] | dict[str, Any]


class TensorInstances(BaseModel):
    """TF Serving's row format. Each instance is a (nested) list of numbers of the model's
    input shape (a number for a scalar input), or an object keyed by the model's feature
    names."""
    instances: list[Instance] = Field(min_length=1)


class SubmitInstances(WebhookOptions, TensorInstances):
    """JSON submit to a tensor model."""
    model_config = ConfigDict(json_schema_extra={
        "examples": [{"instances": [[1, 0, 1, 0, 0, 0, 0, 0, 0, 0]]}]})


class SubmitForm(BaseModel):
    """Multipart submit to an image model."""
    image: list[bytes] = Field(min_length=1, description="Encoded images, one input each "
                               "(repeat the field)")
    webhook: str | None = Field(None, max_length=2048)
    webhook_events_filter: list[str] | None = Field(
        None, description="started, completed: comma-separated, or the field repeated")


class UploadForm(BaseModel):
    """Multipart model upload (needs INFERQ_MODEL_ADMIN=1)."""
    model: bytes = Field(description="A .keras or .h5 file, or a .zip of a SavedModel")
    config: str | None = Field(None, description="The model's config.json (needed for a new "
                               "model; a new version without one takes its model's)")


class JobQuery(BaseModel):
    wait: float = Field(0, ge=0, allow_inf_nan=False, description=(
        "Long-poll: answer as soon as the job ends, or after this many seconds (capped by "
        "INFERQ_MAX_LONG_POLL_S)"))


class JobListQuery(BaseModel):
    limit: int = Field(20, ge=1, le=100, description="How many jobs to answer")
    after: str | None = Field(None, max_length=256, description=(
        "The `next` cursor of the previous page"))


class BatchOptions(BaseModel):
    """A batch's options: form fields beside the file, or query parameters."""
    webhook: str | None = Field(None, max_length=2048, description=(
        "An http(s) URL that gets a signed POST when the batch ends: `{\"type\": "
        "\"batch.completed\" (or failed, cancelled, expired), \"timestamp\", \"data\": the "
        "batch}`. Needs INFERQ_WEBHOOK_SECRET on the server."))
    webhook_events_filter: list[str] | None = Field(None, description=(
        "Which of completed, failed, cancelled, expired to send (comma-separated, or "
        "repeated); the default is all four. Needs a webhook."))
    version: int | None = Field(None, ge=0, description=(
        "Run on this version; the default is the model's default version"))
    metadata: str | None = Field(None, max_length=MAX_METADATA_BYTES, description=(
        f"A JSON object of at most {MAX_METADATA_BYTES} bytes, kept on the batch"),
        examples=['{"project": "photos-2024"}'])
    expires_after_s: float | None = Field(None, gt=0, le=MAX_EXPIRES_AFTER_S,
                                          allow_inf_nan=False, description=(
        "Seconds after which a batch that has not ended stops (status expired)"))


class BatchQueryOptions(BatchOptions):
    """The options as query parameters: the request line has a limit (gunicorn's 4094
    bytes), so larger metadata goes as a form field."""
    metadata: str | None = Field(None, max_length=1024, description=(
        "A JSON object kept on the batch (in the query string, at most 1024 characters; "
        f"as a form field, {MAX_METADATA_BYTES} bytes)"), examples=['{"project": "photos"}'])


class BatchForm(BatchOptions):
    """Multipart batch upload."""
    model_config = ConfigDict(json_schema_extra={"examples": [{"input": JSONL_EXAMPLE}]})
    input: bytes = Field(description="The file: a tar (or .tar.gz) or zip of images, each "
                         "member's path its custom_id; or JSONL, one {\"custom_id\", \"b64\"} "
                         "or {\"custom_id\", \"inputs\"} object a line. Its content decides "
                         "the format, not its name.")


class BatchQuery(BaseModel):
    wait: float = Field(0, ge=0, allow_inf_nan=False, description=(
        "Long-poll: answer as soon as the batch's status changes, or after this many "
        "seconds (capped by INFERQ_MAX_LONG_POLL_S)"))


class BatchListQuery(BaseModel):
    limit: int = Field(20, ge=1, le=100, description="How many batches to answer")
    after: str | None = Field(None, description="The id of the last batch of the previous "
                              "page (its `last_id`)")


class SubmitHeaders(BaseModel):
    prefer: str | None = Field(None, alias="Prefer", description=(
        "`wait=N`: answer 200 with the finished job if it ends within N seconds"))
    idempotency_key: str | None = Field(None, alias="Idempotency-Key", min_length=1,
                                        max_length=255, description=(
                                            "1 to 255 printable characters; the same key and "
                                            "request within 24 h answer with the original job"))


# --- responses --------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    code: str
    message: str


class Error(BaseModel):
    error: ErrorDetail


class Metrics(BaseModel):
    queue_ms: float
    predict_ms: float
    batch_size: int


class TopK(BaseModel):
    label: str
    index: int
    score: float


class Output(BaseModel):
    index: int
    status: Literal["pending", "succeeded", "failed", "canceled"] = Field(description=(
        "canceled: the job was canceled before this input finished"))
    top_k: list[TopK] | None = Field(None, description="Models with labels")
    output: list[Any] | None = Field(None, description="Tensor models: the raw output row")
    error: str | None = None
    metrics: Metrics | None = None


class JobUrls(BaseModel):
    get: str
    cancel: str


class Job(BaseModel):
    id: str
    model: str
    version: str | None
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    inputs: int
    outputs: list[Output]
    error: str | None
    metrics: Metrics | None
    finished: bool
    urls: JobUrls


class JobSummary(BaseModel):
    """A job in a list: no outputs (GET its url for them)."""
    id: str
    model: str
    version: str | None
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    created_at: datetime | None
    finished_at: datetime | None = Field(description="null until the job ends")
    inputs: int = Field(description="How many inputs the job has")
    url: str = Field(description="The job's path, /v1/jobs/{id}")


class JobList(BaseModel):
    jobs: list[JobSummary] = Field(description="Newest first; jobs whose result expired are "
                                   "gone")
    next: str | None = Field(description="Pass as `after` for the next page; null on the "
                             "last page")


class VersionStats(BaseModel):
    model: str
    version: int
    backlog: int = Field(description="Inputs queued or being run")
    workers: int = Field(description="Live workers serving or loading the version")
    jobs_per_s: float = Field(description="Jobs finished per second over the window")
    inputs_per_s: float = Field(description="Inputs finished per second over the window "
                                "(bulk batch inputs too)")
    p50_ms: float | None = Field(description="Median submit-to-finish time of the jobs "
                                 "finished in the window (within 9%); null when none")
    p99_ms: float | None = Field(description="99th percentile of the same; null when none")


class Stats(BaseModel):
    window_s: int = Field(description="The seconds the figures cover (the last minute)")
    models: list[VersionStats]


class WorkerModel(BaseModel):
    model: str
    version: int
    state: VersionStateName


class Worker(BaseModel):
    name: str
    host: str
    gpu: str | None
    models: list[WorkerModel]
    heartbeat_age_s: float = Field(description="Seconds since its last heartbeat")
    batches_per_s: float = Field(description="Model runs per second over the last minute")
    mean_batch_size: float | None = Field(description="Inputs per model run over the last "
                                          "minute; null when it ran none")


class Workers(BaseModel):
    workers: list[Worker]


class Attempt(BaseModel):
    at: datetime | None
    duration_ms: float
    status_code: int | None
    error: str | None


class Delivery(BaseModel):
    id: str
    event: Literal[WEBHOOK_EVENTS]
    url: str
    status: Literal["pending", "delivered", "failed", "stopped"]
    created_at: datetime | None
    next_attempt_at: datetime | None
    attempts: list[Attempt]


class Deliveries(BaseModel):
    deliveries: list[Delivery]


class BatchCounts(BaseModel):
    total: int = Field(description="Inputs in the file (0 until it is validated)")
    completed: int
    failed: int


class BatchProgress(BaseModel):
    inputs_per_s: float
    eta_s: float | None = Field(description="Seconds left at this rate")


class BatchFileError(BaseModel):
    """Why the file as a whole could not be used."""
    code: str
    message: str
    line: int | None = Field(description="The JSONL line or archive member, when one is to "
                             "blame")


class BatchUrls(BaseModel):
    get: str
    cancel: str
    results: str
    errors: str


class Batch(BaseModel):
    id: str
    object: Literal["batch"]
    model: str
    version: int | None
    status: Literal[batch.VALIDATING, batch.IN_PROGRESS, batch.FINALIZING, batch.COMPLETED,
                    batch.FAILED, batch.CANCELLING, batch.CANCELLED, batch.EXPIRED]
    input_format: Literal["tar", "tar.gz", "zip", "jsonl"] | None
    request_counts: BatchCounts
    metadata: dict[str, Any] | None
    errors: list[BatchFileError] | None = Field(description="status failed: what is wrong "
                                                "with the file")
    created_at: datetime | None
    expires_at: datetime | None
    in_progress_at: datetime | None
    finalizing_at: datetime | None
    completed_at: datetime | None
    failed_at: datetime | None
    cancelling_at: datetime | None
    cancelled_at: datetime | None
    expired_at: datetime | None
    progress: BatchProgress | None = Field(description="While in_progress")
    urls: BatchUrls


class BatchList(BaseModel):
    object: Literal["list"]
    data: list[Batch] = Field(description="Newest first")
    first_id: str | None
    last_id: str | None
    has_more: bool


class ModelVersion(BaseModel):
    version: int
    state: VersionStateName
    reason: str | None = None
    workers: int
    backlog: int


class TFServingStatus(BaseModel):
    """A version's state as TF Serving reports it."""
    version: str
    state: Literal["AVAILABLE", "LOADING", "UNLOADING", "END"]
    status: dict[str, str] = Field(description="{error_code, error_message}")


class Model(BaseModel):
    name: str
    state: VersionStateName
    default_version: int | None
    versions: list[ModelVersion]
    workers: int
    backlog: int
    # Only once a worker serves a version:
    kind: Literal["image", "tensor"] | None = None
    labels: list[str] | None = None
    input_shape: list[int] | None = None
    max_batch_size: int | None = None
    model_version_status: list[TFServingStatus] = Field(
        description="The versions as TF Serving's GET /v1/models/{m} reports them")


class Models(BaseModel):
    models: list[Model]


class ModelChange(BaseModel):
    name: str
    version: int | None = None
    state: Literal["loading", "unloading"]


class IndexLinks(BaseModel):
    console: str
    openapi: str
    docs: str
    models: str
    health: str


class KeyCheck(BaseModel):
    valid: bool
    tenant: str | None = None
    admin: bool | None = None


class Index(BaseModel):
    name: str
    description: str
    links: IndexLinks
    authentication: str | None = Field(None, description="How to send a key, when the server "
                                       "has keys")
    key: KeyCheck | None = Field(None, description="The key sent, checked (when the server has "
                                 "keys): valid or not, its tenant, whether an admin's")


class Example(BaseModel):
    name: str
    url: str


class Examples(BaseModel):
    examples: list[Example]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    models: list[str]
    workers: int


# --- TF Serving REST and KServe V2 (api/tfserving.py, api/kserve.py) -------------------------

class ProtocolError(BaseModel):
    """The standard protocols' error body: a bare message."""
    error: str


class TimeoutQuery(BaseModel):
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False, description=(
        "Seconds to wait for the result (default 30, capped by INFERQ_MAX_LONG_POLL_S); the "
        "request is canceled after"))


class TFServingPredict(BaseModel):
    """Row (`instances`) or columnar (`inputs`) format; encoded images as {"b64": ...}."""
    model_config = ConfigDict(json_schema_extra={
        "examples": [{"instances": [{"b64": PNG_1X1}]}],
        "anyOf": [{"required": ["instances"]}, {"required": ["inputs"]}]})
    # Defaults that are no null: the server takes an absent field, never a null one.
    signature_name: str = Field("", description="\"\" or \"serving_default\"")
    instances: list[Any] = Field(default_factory=list)
    inputs: list[Any] | dict[str, Any] = Field(default_factory=list)


class TFServingPredictions(BaseModel):
    predictions: list[Any]


class TFServingOutputs(BaseModel):
    outputs: list[Any]


class TFServingVersions(BaseModel):
    model_version_status: list[TFServingStatus]


class TFServingSpec(BaseModel):
    name: str
    signature_name: str
    version: str


class TFServingMetadata(BaseModel):
    model_spec: TFServingSpec
    metadata: dict[str, Any] = Field(description="{\"signature_def\": ...} as TF Serving "
                                     "answers it")


class V2Server(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2Model(BaseModel):
    name: str
    platform: str
    versions: list[str]
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2InputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: Literal["BYTES", "FP32", "FP64", "INT32", "INT64", "UINT8"]
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size: the "
                                              "tensor's bytes after the JSON header")
    data: list[Any] | None = Field(None, description="BYTES as base64 strings, or numbers")


class V2RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class V2InferRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"inputs": [
        {"name": "image", "shape": [1], "datatype": "BYTES", "data": [PNG_1X1]}]}]})
    id: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="timeout (seconds), "
                                              "binary_data_output")
    inputs: list[V2InputTensor] = Field(min_length=1, max_length=1)
    outputs: list[V2RequestedOutput] | None = None


class V2OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float] | None = None
    parameters: dict[str, Any] | None = None


class V2InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: Any = None
    outputs: list[V2OutputTensor]


# --- validating a request with these models ---------------------------------------------------

def validate(model: type[BaseModel], data, errors: dict[str, tuple[str, str]],
             strict: bool = True):
    """`data` checked against `model`, or ApiError(400) for the first problem. Strict (no
    coercion) for what json.loads gave; lax for query strings. `errors` maps a top-level field
    to (code, message), and "field[]" to those for one bad item of a list field, with "{i}"
    in the message standing for its index."""
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        field = str(loc[0]) if loc else ""
        item = len(loc) > 1 and isinstance(loc[1], int)
        code, message = (item and errors.get(field + "[]")) or errors.get(field) or (
            "invalid_input", f"{field}: {first['msg']}")
        raise ApiError(400, code, message.replace("{i}", str(loc[1]) if item else "")) from None
