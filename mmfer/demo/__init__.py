"""The Gradio demo (``mmfer demo``): photos, videos, audio and webcam through the fusion pipeline."""
