"""FireRedASR-LLM for vLLM: an out-of-tree model plugin (entry point ``vllm.general_plugins``)."""

from fireredasr_vllm.compat import patch_transformers_without_torchvision

ARCHITECTURE = "FireRedASRLLMForConditionalGeneration"
BUILTIN_ARCHITECTURE = "FireRedASR2ForConditionalGeneration"  # vLLM's own FireRedASR2 classes: the baseline
LLM_DIR = "Qwen2-7B-Instruct"  # the LLM folder inside an official release
DEFAULT_MODEL = "trained"  # the embedded tiny model trained on the bundled clips (fireredasr_vllm/trained)
MODEL_HELP = ("trained (default: embedded tiny model trained on the bundled clips) | tiny (random weights) | "
              "official release dir | converted dir | hub id")


def register() -> None:
    """Register the model class with vLLM (runs in every vLLM process through the entry point)."""
    from vllm import ModelRegistry  # here, not on import: the constants above are read without vLLM (cli_args)

    patch_transformers_without_torchvision()
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, f"fireredasr_vllm.model:{ARCHITECTURE}")
