"""The workbench: the engine facade (engine.py), its CLIs and the Gradio app.

Importing it keeps vLLM's start-up log quiet (workbench/quiet.py; ``--verbose`` shows it)."""

from workbench.quiet import quiet_by_default

quiet_by_default()
