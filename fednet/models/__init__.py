"""Base-model registry, LoRA classifiers, pooling and adapters on disk."""

from fednet.models.adapters import (
    ADAPTER_FILES,
    HEAD_FILE,
    SavedAdapter,
    load_adapter,
    save_adapter,
)
from fednet.models.classifier import (
    HEAD_KEYS,
    LoraClassifier,
    build_classifier,
    init_head,
    mean_pool,
)
from fednet.models.registry import (
    BaseModelSpec,
    available_base_models,
    create_base_model,
    get_base_model_spec,
    load_tokenizer,
    lora_targets,
    minilm_path,
    register_base_model,
)

__all__ = [
    "ADAPTER_FILES",
    "HEAD_FILE",
    "HEAD_KEYS",
    "BaseModelSpec",
    "LoraClassifier",
    "SavedAdapter",
    "available_base_models",
    "build_classifier",
    "create_base_model",
    "get_base_model_spec",
    "init_head",
    "load_adapter",
    "load_tokenizer",
    "lora_targets",
    "mean_pool",
    "minilm_path",
    "register_base_model",
    "save_adapter",
]
