"""How a model's exception is told to users and logs."""


def describe(exc: Exception) -> str:
    """The message of an exception without TensorFlow's graph traceback, which names our
    threads and files rather than what went wrong."""
    lines = [line.strip() for line in str(exc).splitlines()]
    files = [i for i, line in enumerate(lines) if line.startswith("File ")]
    if files:
        lines = lines[files[-1] + 1:]
    text = " ".join(line for line in lines if line and not line.startswith("[[")).strip()
    return (text or type(exc).__name__)[:400]
