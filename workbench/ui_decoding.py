"""Decoding controls shared by the Transcribe and Evaluate tabs, mapped to ``DecodingOptions``."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from workbench.options import DecodingOptions, parse_decoding

PRESET_NAMES = ("greedy", "official", "beam3", "t0.7", "t0.7-p0.9")


def decoding_options(beam_size, temperature, top_p, repetition_penalty, max_tokens, seed) -> DecodingOptions:
    """Control values -> options; 0 / empty max tokens means the official rule (one per speech frame)."""
    beam_size = int(beam_size or 1)
    temperature = float(temperature or 0.0) if beam_size == 1 else 0.0
    return DecodingOptions(
        beam_size=beam_size, temperature=temperature, top_p=float(top_p or 1.0) if temperature > 0 else 1.0,
        repetition_penalty=float(repetition_penalty or 1.0),
        max_tokens=int(max_tokens) if max_tokens else None,
        seed=int(seed) if seed is not None and temperature > 0 else None,
    )


def preset_values(name: str) -> tuple:
    """A preset name -> the control values (beam, temperature, top_p, penalty, max tokens, seed)."""
    o = parse_decoding(name)
    return o.beam_size, o.temperature, o.top_p, o.repetition_penalty, o.max_tokens or 0, o.seed or 0


@dataclass
class DecodingControls:
    preset: gr.Dropdown
    beam_size: gr.Slider
    temperature: gr.Slider
    top_p: gr.Slider
    repetition_penalty: gr.Slider
    max_tokens: gr.Number
    seed: gr.Number

    @property
    def inputs(self) -> list:
        """The components whose values ``decoding_options`` takes, in order."""
        return [self.beam_size, self.temperature, self.top_p, self.repetition_penalty, self.max_tokens, self.seed]


def decoding_controls(prefix: str) -> DecodingControls:
    """Render the controls (inside the current layout) and wire the preset picker."""
    with gr.Accordion("Decoding", open=False, elem_id=f"{prefix}-decoding"):
        preset = gr.Dropdown(list(PRESET_NAMES), value="greedy", label="preset", elem_id=f"{prefix}-preset",
                             info="fills the controls below; 'official' = beam 3, repetition penalty 3")
        with gr.Row():
            beam_size = gr.Slider(1, 8, value=1, step=1, label="beam size")
            temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="temperature (beam size 1 only)")
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p (sampling only)")
        with gr.Row():
            repetition_penalty = gr.Slider(1.0, 5.0, value=1.0, step=0.1, label="repetition penalty")
            max_tokens = gr.Number(0, precision=0, minimum=0, label="max new tokens (0 = one per speech frame)")
            seed = gr.Number(0, precision=0, minimum=0, label="seed (sampling only)")
    controls = DecodingControls(preset, beam_size, temperature, top_p, repetition_penalty, max_tokens, seed)
    preset.change(preset_values, preset, controls.inputs, queue=False)
    return controls
