"""What a person sees when a console action fails: one sentence in the page, not a trace."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from app.render import EngineBusy
from app.store import ConflictError

logger = logging.getLogger(__name__)

# The store and the uploads say what was wrong in their messages (InputError is a ValueError).
USER_ERRORS = (ValueError, LookupError, ConflictError, EngineBusy)


def user_errors(action: Callable[..., Any]) -> Callable[..., Any]:
    """Show the library's and the uploads' own messages as a gr.Error (the action changed
    nothing: the store saves all or nothing)."""

    @functools.wraps(action)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return action(*args, **kwargs)
        except USER_ERRORS as err:
            message = str(err).strip("'\"")  # LookupError's str() quotes its message
            logger.info("console action refused", extra={"action": action.__name__, "why": message})
            raise gr.Error(message, print_exception=False) from None

    return run
