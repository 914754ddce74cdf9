"""Error kinds raised by the shim package.

Every error carries a `kind`; the one table in `cri.instrument` maps kinds to
gRPC status codes, so code here raises and never decides a status itself.
Messages name the object and its id.
"""

from __future__ import annotations

import sys
import traceback
from typing import ClassVar


class Error(Exception):
    """Base of every shim error; `kind` names the category."""

    kind: ClassVar[str] = "internal"


class NotFound(Error):
    """The named object does not exist."""

    kind = "not_found"


class AlreadyExists(Error):
    """An object with that name or id exists already."""

    kind = "already_exists"


class InvalidArgument(Error):
    """The request itself is malformed or asks for something impossible."""

    kind = "invalid_argument"


class FailedPrecondition(Error):
    """The object is not in a state that allows the operation."""

    kind = "failed_precondition"


class Unavailable(Error):
    """A dependency (registry, OCI runtime, shim, CNI plugin) could not be reached."""

    kind = "unavailable"


class DeadlineExceeded(Error):
    """The operation did not finish in the time it was given."""

    kind = "deadline_exceeded"


def report(exc: BaseException) -> None:
    """An unexpected exception (not one of these kinds) goes to stderr (shim.log), traced."""
    if not isinstance(exc, Error | ConnectionError):
        traceback.print_exception(exc, file=sys.stderr)
