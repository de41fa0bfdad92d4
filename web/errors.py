"""One error shape for the HTTP API: `{"error": CODE, "detail": "what was wrong, for people"}`.

CODE is a short, stable word a program can branch on (the table in docs/WEB.md, "Errors");
`detail` is a sentence that says what was wrong and what to do. Refusals that may pass
(busy, too many attempts) carry a Retry-After header when the wait is known.
"""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.local_call import CallerLimited, CallsBusy, OfferError

CODES = {  # the code for a status when the refusal names none
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "busy",
    503: "busy",
}


class ApiError(HTTPException):
    """A refusal with its code, its sentence and, for one that may pass, when to retry."""

    def __init__(
        self, status: int, error: str, detail: str, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(status, detail)
        self.error, self.retry_after_s = error, retry_after_s


def error_response(
    status: int,
    error: str,
    detail: str,
    *,
    retry_after_s: float | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    headers = dict(headers or {})
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal of `app`'s own routes in the one shape (a mounted app keeps its own)."""

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        detail = err.detail if isinstance(err.detail, str) else str(err.detail)
        return error_response(
            err.status_code,
            getattr(err, "error", CODES.get(err.status_code, "error")),
            detail,
            retry_after_s=getattr(err, "retry_after_s", None),
            headers={k: v for k, v in (err.headers or {}).items() if k.lower() != "retry-after"},
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in err.errors()
        )
        return error_response(400, "bad_request", problems)

    @app.exception_handler(OfferError)
    async def bad_offer(_: Request, err: OfferError) -> JSONResponse:
        return error_response(400, "bad_offer", str(err))

    @app.exception_handler(CallsBusy)
    async def busy(_: Request, err: CallsBusy) -> JSONResponse:
        status = 429 if isinstance(err, CallerLimited) else 503
        return error_response(status, "busy", str(err), retry_after_s=err.retry_after_s)

    @app.exception_handler(Exception)
    async def server_error(_: Request, __: Exception) -> JSONResponse:
        # Starlette raises it on after this answer, and uvicorn logs it with its traceback
        return error_response(
            500, "server_error", "the server failed on this request; its log says why"
        )
