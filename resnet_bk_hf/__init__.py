"""resnet_bk_hf: a transformers-native causal LM whose sequence mixer is the causal
resolvent of a learned tridiagonal Hamiltonian (the BK layer), computed in O(N)."""
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from .configuration import ResNetBKConfig
from .layers import BKLayer
from .modeling import (ResNetBKCache, ResNetBKForCausalLM, ResNetBKForSequenceClassification, ResNetBKModel,
                       ResNetBKPreTrainedModel)
from .ops.bk import BKState

__version__ = "0.1.0"

AutoConfig.register("resnet_bk", ResNetBKConfig, exist_ok=True)
AutoModel.register(ResNetBKConfig, ResNetBKModel, exist_ok=True)
AutoModelForCausalLM.register(ResNetBKConfig, ResNetBKForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(ResNetBKConfig, ResNetBKForSequenceClassification, exist_ok=True)

__all__ = ["BKLayer", "BKState", "ResNetBKCache", "ResNetBKConfig", "ResNetBKForCausalLM",
           "ResNetBKForSequenceClassification", "ResNetBKModel", "ResNetBKPreTrainedModel", "__version__"]
