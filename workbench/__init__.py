"""The Gradio app (``python -m workbench``): tabs to transcribe, evaluate, benchmark and compare runs, on
one engine from ``fireredasr_engine`` shared by everyone using the page."""
