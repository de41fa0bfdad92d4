"""What a person sees when a console action fails: one sentence in the page, not a trace."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

import gradio as gr

from app.render import EngineBusy
from app.store import ConflictError
from web.console.preview import PreviewRefused

logger = logging.getLogger(__name__)

# The store and the uploads say what was wrong in their messages (InputError is a ValueError).
USER_ERRORS = (ValueError, LookupError, ConflictError, EngineBusy, PreviewRefused)

P = ParamSpec("P")
R = TypeVar("R")


def user_errors(action: Callable[P, R]) -> Callable[P, R]:
    """Show the library's and the uploads' own messages as a gr.Error (the action changed
    nothing: the store saves all or nothing). Plain and async actions alike."""

    def shown(err: Exception) -> gr.Error:
        message = str(err).strip("'\"")  # LookupError's str() quotes its message
        logger.info("console action refused", extra={"action": action.__name__, "why": message})
        return gr.Error(message, print_exception=False)

    if inspect.iscoroutinefunction(action):

        @functools.wraps(action)
        async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await cast(Any, action)(*args, **kwargs)
            except USER_ERRORS as err:
                raise shown(err) from None

        return cast(Callable[P, R], run_async)

    @functools.wraps(action)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return action(*args, **kwargs)
        except USER_ERRORS as err:
            raise shown(err) from None

    return run
