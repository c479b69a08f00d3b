"""Decoding controls shared by the Transcribe and Evaluate tabs, mapped to ``DecodingOptions``.

The preset box always names what the controls say: a preset when they match one, else ``custom`` with the
label exports use (``beam8``). Controls a mode ignores are greyed out (temperature, top-p and seed under beam
search; top-p and seed under greedy). A value no decoding can take raises ``ControlError`` naming the control.
The hotword box takes a list typed in (docs/hotwords.md), never a file path: the page reads no server files.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from fireredasr_engine.options import DEFAULT_HOTWORD_WEIGHT, DecodingOptions, parse_decoding
from fireredasr_vllm.hotwords import HotwordError, parse_hotwords

PRESET_NAMES = ("greedy", "official", "beam3", "t0.7", "t0.7-p0.9")
CUSTOM = "custom"
PRESET_INFO = "fills the controls below; 'official' = beam 3, repetition penalty 3"
MAX_TOKENS_LABEL = "max new tokens"
SEED_LABEL = "seed"
HOTWORDS_LABEL = "hotwords"
HOTWORDS_PLACEHOLDER = "one word a line, or comma separated; optional weight: 张三:2"
SLIDER_DECIMALS = 2  # the sliders' steps are 0.05 / 0.1: round away float noise before comparing


class ControlError(ValueError):
    """A control holds a value no decoding can take; the message names the control and the fix."""


def whole_number(value, label: str, hint: str) -> int | None:
    if value is None or value == "":
        return None
    if float(value) < 0 or float(value) != int(float(value)):
        raise ControlError(f'"{label}" is {value:g}: {hint}')
    return int(float(value))


def decoding_from_controls(beam_size, temperature, top_p, repetition_penalty, max_tokens, seed, hotwords="",
                           hotword_weight=DEFAULT_HOTWORD_WEIGHT) -> DecodingOptions:
    """Control values -> options; 0 / empty max tokens means the official rule (one per speech frame)."""
    try:
        hotword_list = parse_hotwords(hotwords or "")
    except HotwordError as error:
        raise ControlError(f'"{HOTWORDS_LABEL}": {error}') from None
    max_tokens = whole_number(max_tokens, MAX_TOKENS_LABEL,
                              "enter 0 (one token per speech frame) or a positive whole number")
    seed = whole_number(seed, SEED_LABEL, "enter 0 or a positive whole number")
    beam_size = int(beam_size or 1)
    temperature = round(float(temperature or 0.0), SLIDER_DECIMALS) if beam_size == 1 else 0.0
    sampling = temperature > 0
    return DecodingOptions(
        beam_size=beam_size, temperature=temperature,
        top_p=round(float(top_p or 1.0), SLIDER_DECIMALS) if sampling else 1.0,
        repetition_penalty=round(float(repetition_penalty or 1.0), SLIDER_DECIMALS),
        max_tokens=max_tokens or None, seed=(seed or 0) if sampling else None,
        hotwords=hotword_list, hotword_weight=round(float(hotword_weight or 0.0), SLIDER_DECIMALS),
    )


def preset_values(name: str) -> tuple:
    """A preset name -> the control values (beam, temperature, top_p, penalty, max tokens, seed; the hotword
    list and weight are kept)."""
    if name not in PRESET_NAMES:  # "custom" changes nothing
        return tuple(gr.skip() for _ in range(8))
    o = parse_decoding(name)
    kept = (gr.skip(), gr.skip())
    return o.beam_size, o.temperature, o.top_p, o.repetition_penalty, o.max_tokens or 0, o.seed or 0, *kept


def preset_for(*values) -> gr.Dropdown:
    """The preset box for the current control values: the matching preset, or ``custom`` and its label."""
    try:
        options = decoding_from_controls(*values)
    except ControlError as error:
        return gr.Dropdown(value=CUSTOM, info=str(error))
    match = next((name for name in PRESET_NAMES if parse_decoding(name) == options), None)
    if match:
        return gr.Dropdown(value=match, info=PRESET_INFO)
    return gr.Dropdown(value=CUSTOM, info=f"custom: {options.label} (exports and run folders name it so)")


def sampling_interactivity(beam_size, temperature) -> tuple:
    """Grey out what the chosen mode ignores: beam search uses no temperature, greedy no top-p or seed."""
    beam = int(beam_size or 1) > 1
    sampling = not beam and float(temperature or 0) > 0
    return (gr.Slider(interactive=not beam, info="unused with beam search (beam size > 1)" if beam else None),
            gr.Slider(interactive=sampling, info=None if sampling else "used only when sampling (temperature > 0)"),
            gr.Number(interactive=sampling))


@dataclass
class DecodingControls:
    preset: gr.Dropdown
    beam_size: gr.Slider
    temperature: gr.Slider
    top_p: gr.Slider
    repetition_penalty: gr.Slider
    max_tokens: gr.Number
    seed: gr.Number
    hotwords: gr.Textbox
    hotword_weight: gr.Slider

    @property
    def inputs(self) -> list:
        """The components whose values ``decoding_from_controls`` takes, in order."""
        return [self.beam_size, self.temperature, self.top_p, self.repetition_penalty, self.max_tokens, self.seed,
                self.hotwords, self.hotword_weight]


def decoding_controls(prefix: str) -> DecodingControls:
    """Render the controls (inside the current layout) and wire the preset picker both ways."""
    with gr.Accordion("Decoding", open=False, elem_id=f"{prefix}-decoding"):
        preset = gr.Dropdown([*PRESET_NAMES, CUSTOM], value="greedy", label="preset", elem_id=f"{prefix}-preset",
                             info=PRESET_INFO)
        with gr.Row():
            beam_size = gr.Slider(1, 8, value=1, step=1, label="beam size", elem_id=f"{prefix}-beam")
            temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="temperature (beam size 1 only)",
                                    elem_id=f"{prefix}-temperature")
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top-p (sampling only)", interactive=False,
                              elem_id=f"{prefix}-top-p")
        with gr.Row():
            repetition_penalty = gr.Slider(1.0, 5.0, value=1.0, step=0.1, label="repetition penalty",
                                           elem_id=f"{prefix}-penalty")
            # no ``minimum``: Gradio's own bound check fails every output panel without naming the field
            max_tokens = gr.Number(0, precision=0, label=f"{MAX_TOKENS_LABEL} (0 = one per speech frame)",
                                   elem_id=f"{prefix}-max-tokens")
            seed = gr.Number(0, precision=0, label=f"{SEED_LABEL} (sampling only)", interactive=False,
                             elem_id=f"{prefix}-seed")
        with gr.Row():
            hotwords = gr.Textbox(label=f"{HOTWORDS_LABEL} (words to bias toward)", lines=3, scale=3,
                                  placeholder=HOTWORDS_PLACEHOLDER, elem_id=f"{prefix}-hotwords")
            hotword_weight = gr.Slider(0.0, 10.0, value=DEFAULT_HOTWORD_WEIGHT, step=0.5, label="hotword weight",
                                       info="boost per token of a listed word; 0 = off", scale=1,
                                       elem_id=f"{prefix}-hotword-weight")
    controls = DecodingControls(preset, beam_size, temperature, top_p, repetition_penalty, max_tokens, seed,
                                hotwords, hotword_weight)
    preset.input(preset_values, preset, controls.inputs, queue=False).then(
        preset_for, controls.inputs, preset, queue=False)
    # On every change of a value, by the user or by the preset's own fills (which give back the preset itself).
    # One listener for all the controls: Gradio runs it once at a time and again with the last values, where a
    # listener per control answers in any order and an older answer could be shown last.
    gr.on([control.change for control in controls.inputs], preset_for, controls.inputs, preset, queue=False)
    gr.on([beam_size.change, temperature.change], sampling_interactivity, [beam_size, temperature],
          [temperature, top_p, seed], queue=False)
    return controls
