"""The `inferq` logger's handler for the API's processes: gunicorn configures only its own
loggers. Made once per process; a forked worker inherits the master's."""
import logging


def setup_logging(level: str):
    log = logging.getLogger("inferq")
    log.setLevel(level)
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] "
                                               "%(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
