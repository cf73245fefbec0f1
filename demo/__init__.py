"""The Gradio demo (issue #5)."""
