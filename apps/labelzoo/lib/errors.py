"""HTTP errors with a clear message: raised anywhere in the app, FastAPI answers with the status and
``{"detail": message}`` instead of a 500 and a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import HTTPException

from labelzoo.errors import LabelZooError


class AppError(HTTPException):
    """A client error: ``status`` is the HTTP code, ``detail`` the message naming what is wrong."""

    def __init__(self, status: int, detail: str):
        super().__init__(status_code=status, detail=detail)

    def __str__(self) -> str:
        return f"{self.status_code}: {self.detail}"


def bad_request(msg: str) -> AppError:
    return AppError(400, msg)


def not_found(msg: str) -> AppError:
    return AppError(404, msg)


def conflict(msg: str) -> AppError:
    return AppError(409, msg)


def forbidden(msg: str) -> AppError:
    return AppError(403, msg)


def too_large(msg: str) -> AppError:
    return AppError(413, msg)


def too_many(msg: str) -> AppError:
    return AppError(429, msg)


def unsupported(msg: str) -> AppError:
    return AppError(415, msg)


def unprocessable(msg: str) -> AppError:
    return AppError(422, msg)


@contextmanager
def as_http(make: Callable[[str], AppError] = bad_request) -> Iterator[None]:
    """Turn a :class:`LabelZooError` raised inside the block into an HTTP error built by ``make``."""
    try:
        yield
    except LabelZooError as e:
        raise make(str(e)) from None
