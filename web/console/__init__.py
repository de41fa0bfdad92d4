"""The creator console (Gradio 6): a character library, a scene builder, preview renders and
links to start calls, over the data directory of app.store."""

from web.console.layout import build_console

__all__ = ["build_console"]
