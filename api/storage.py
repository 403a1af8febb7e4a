"""Writes to a directory on disk the API keeps (the model repository, the batch store): a failure
that whoever runs the API must fix (permissions, a read-only or full disk) is a 507 that says
what to do, not a 500."""
import errno
import logging
import os
from contextlib import contextmanager

from api.errors import ApiError

log = logging.getLogger("inferq.api")
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
FULL = {errno.ENOSPC, errno.EDQUOT}


@contextmanager
def writing(name: str, path: str, variable: str):
    """Writes to `path`, the `name` ("the model repository") set by `variable`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in NOT_WRITABLE | FULL:
            raise
        where = f"{name} {os.path.abspath(path)} ({variable})"
        log.error("%s write failed: %s", name, exc)
        if exc.errno in FULL:
            raise ApiError(507, "insufficient_storage", f"{where} has no space left: free some "
                           "space there, or give it a larger volume") from None
        raise ApiError(507, "insufficient_storage", f"{where} is not writable by the API "
                       f"process (uid {os.geteuid()}): {exc.strerror}; make it writable by that "
                       "user (chown or chmod), or mount there a volume that user owns and "
                       "can write") from None
