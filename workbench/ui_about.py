"""About / health tab: model, engine configuration, versions, device, and the model verifier."""

from __future__ import annotations

import importlib.metadata as md

import gradio as gr
import pandas as pd

from fireredasr_vllm.verify import check_engine, verify


def engine_facts(engine) -> dict:
    facts = engine.describe()
    facts["versions"] = {**facts.get("versions", {}), "gradio": md.version("gradio")}
    return facts


def headline(facts: dict) -> str:
    return (f"**Model:** `{facts['model']}` ({facts['architecture']})  \n**Model dir:** `{facts['model_dir']}`  \n"
            f"**Device:** {facts['device']}  \n**vLLM:** {facts['vllm_distribution']}  \n"
            f"**Max audio per request:** {facts['max_audio_seconds']:g} s  \n"
            f"**Engine start:** {facts['engine_build_seconds']} s")


def run_verifier(engine) -> pd.DataFrame:
    """``fireredasr_vllm.verify`` static checks of the engine's model directory, then a bundled clip
    through the running engine (no second engine)."""
    checks = verify(engine.model_dir, engine=False) + [check_engine(engine)]
    return pd.DataFrame([{"check": c.name, "ok": "✓" if c.ok else "✗", "detail": c.detail, "fix": c.fix}
                         for c in checks])


def build_about_tab(engine) -> None:
    facts = engine_facts(engine)
    gr.Markdown(headline(facts), elem_id="about-model")
    gr.JSON(facts, label="engine.describe()", open=True)
    button = gr.Button("Run the model verifier", elem_id="about-verify")
    checks = gr.Dataframe(label="verifier checks", interactive=False, wrap=True, elem_id="about-checks")

    def run_checks():
        try:
            return run_verifier(engine)
        except Exception as error:
            raise gr.Error(f"verifier failed: {type(error).__name__}: {error}") from None

    button.click(run_checks, None, checks, concurrency_limit=1)
