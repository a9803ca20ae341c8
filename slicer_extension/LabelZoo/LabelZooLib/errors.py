"""The one error type of the LabelZoo Slicer Lib.

Every failure the annotator can act on (an unreachable server, a server-side error, an illegal move in
the session, a label map of the wrong shape) is a :class:`LabelZooLibError`. The Slicer module shows its
message in one dialog; nothing else needs to be caught.
"""

from __future__ import annotations


class LabelZooLibError(Exception):
    """An error explained in one sentence for the annotator."""


class ServerError(LabelZooLibError):
    """A request to the LabelZoo (MONAI Label) server failed.

    Attributes:
        message: the server's own message (FastAPI's ``detail``) or the transport error.
        status: the HTTP status code, or ``None`` when the server could not be reached.
        method: the HTTP method of the request.
        url: the URL requested (without the auth token).
    """

    def __init__(self, message: str, status: int | None = None, method: str = "", url: str = ""):
        self.message = message
        self.status = status
        self.method = method
        self.url = url
        where = f"{method} {url}".strip()
        code = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{where}: {code}: {message}" if where else f"{code}: {message}")


class SessionError(LabelZooLibError):
    """A move the annotation session does not allow in its current state."""
