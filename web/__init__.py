"""The Gradio console and the call page, served by one FastAPI app."""
