"""FireRedASR-LLM for vLLM: an out-of-tree model plugin (entry point ``vllm.general_plugins``)."""

ARCHITECTURE = "FireRedASRLLMForConditionalGeneration"
DEFAULT_MODEL = "trained"  # the embedded tiny model trained on the bundled clips (fireredasr_vllm/trained)
MODEL_HELP = ("trained (default: embedded tiny model trained on the bundled clips) | tiny (random weights) | "
              "official release dir | converted dir | hub id")


def register() -> None:
    """Register the model class with vLLM (runs in every vLLM process through the entry point)."""
    from vllm import ModelRegistry

    from fireredasr_vllm.compat import patch_transformers_without_torchvision

    patch_transformers_without_torchvision()
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, f"fireredasr_vllm.model:{ARCHITECTURE}")
