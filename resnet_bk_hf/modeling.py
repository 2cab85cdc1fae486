"""ResNet-BK causal language model for Hugging Face transformers.

Read top to bottom: the cache -> the block (RMSNorm, BK layer, FFN) -> the pretrained base (init, saving) ->
output classes and input checks -> the model -> the heads. The layers themselves live in `layers/` with
explicit constructor arguments; this file only translates a `ResNetBKConfig` into them
(`bk_layer_arguments`). The BK layer is the causal resolvent of a learned tridiagonal Hamiltonian
(docs/design.md 2.1, 2.5): per head and spectral shift z_k,

    g_t = 1 / (a_t - z_k - b_t^2 g_{t-1}),   y_t = g_t (u_t - b_t y_{t-1}),
    o_t = sum_k Re(conj(C_{t,k}) y_t^(k))

with potential a_t = h0_diag + v(x_t), hopping b_t, values u(x_t) and readout C(x_t) all computed from the
token's hidden state. The scan lives in `ops/bk/` (one dispatcher over the readable reference, the CPU
recurrent path, the log-depth form and the Triton kernels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
import transformers
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast
from transformers.utils import ModelOutput

from .configuration import BK_LAYER_ARGUMENTS, CONFIG_FIELD, ResNetBKConfig
from .layers import BKLayer, FeedForward, RMSNorm
from .ops.bk import BKState

try:  # transformers >= 5: init helpers that skip weights already loaded from a checkpoint
    from transformers import initialization as _init
except ImportError:  # transformers 4.x
    _init = None

TRANSFORMERS_V5 = int(transformers.__version__.split(".")[0]) >= 5

try:  # the names generate() reads a model's cache under, newest first
    from transformers.generation.utils import ALL_CACHE_NAMES as _CACHE_NAMES
except ImportError:  # pragma: no cover
    _CACHE_NAMES = ["cache_params"]
# transformers 5.24 renamed every model's cache argument and output field to `cache` (ModelOutput turns a
# `cache_params=` keyword into `cache=`); before, recurrent models (Mamba, 4.57 included) used `cache_params`.
# The outputs below carry the field under this version's name and read under both; forward takes both.
CACHE_FIELD = "cache" if _CACHE_NAMES[0] == "cache" else "cache_params"

# The old names of the layers (checkpoints are unaffected: parameter names come from attributes).
ResNetBKMixer = BKLayer
ResNetBKRMSNorm = RMSNorm
ResNetBKFeedForward = FeedForward


def _one_cache(cache, cache_params):
    if cache is not None and cache_params is not None:
        raise ValueError("pass the recurrent state as `cache` or as `cache_params` (its older name), not both")
    return cache if cache is not None else cache_params


def _normal_(t, std):
    return _init.normal_(t, mean=0.0, std=std) if _init else nn.init.normal_(t, mean=0.0, std=std)


def _zeros_(t):
    return _init.zeros_(t) if _init else nn.init.zeros_(t)


def _ones_(t):
    return _init.ones_(t) if _init else nn.init.ones_(t)


def _copy_(t, value):
    if _init:
        return _init.copy_(t, value)
    with torch.no_grad():
        return t.copy_(value)


class ResNetBKCache:
    """Recurrent state of every layer: O(1) memory in the context length.

    `states[i]` is layer i's `BKState` (g (B, H, K, 2), y (B, H, K, P, 2), P = 0 in diag mode; float32, or
    float64 for a float64 model), or None before the first token. `seqlen_offset` counts the tokens already
    absorbed; `last_mask` is the attention mask of the last absorbed position (a padded last position must
    not couple to the next token); `positions` the real tokens absorbed per row (positional potential only).
    """

    is_compileable = False

    def __init__(self, config: ResNetBKConfig, batch_size: int, device=None):
        self.config = config
        self.batch_size = batch_size
        self.device = device
        self.states: List[Optional[BKState]] = [None] * config.num_hidden_layers
        self.seqlen_offset = 0
        self.last_mask: Optional[torch.Tensor] = None
        self.positions: Optional[torch.Tensor] = None

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seqlen_offset

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Select batch rows (beam search)."""
        self.states = [None if s is None else BKState(*s).index_select(beam_idx) for s in self.states]
        if self.last_mask is not None:
            self.last_mask = self.last_mask.index_select(0, beam_idx.to(self.last_mask.device))
        if self.positions is not None:
            self.positions = self.positions.index_select(0, beam_idx.to(self.positions.device))

    def advance(self, length: int, attention_mask: Optional[torch.Tensor],
                next_positions: Optional[torch.Tensor]) -> None:
        """After a forward of `length` tokens (the layers have stored their states already)."""
        self.seqlen_offset += length
        if next_positions is not None:
            self.positions = next_positions
        if attention_mask is not None:
            self.last_mask = attention_mask[:, -1].clone()
        elif self.last_mask is not None:
            self.last_mask = torch.ones_like(self.last_mask)

    def reset(self) -> None:
        self.states = [None] * len(self.states)
        self.seqlen_offset = 0
        self.last_mask = None
        self.positions = None


def bk_layer_arguments(config: ResNetBKConfig) -> dict:
    """The BKLayer constructor arguments a config describes (everything but layer_idx)."""
    args = {name: getattr(config, CONFIG_FIELD.get(name, name)) for name in BK_LAYER_ARGUMENTS}
    args.update(eta_init_range=tuple(config.eta_init_range), lambda_init_range=tuple(config.lambda_init_range))
    return dict(args, scan_config=config.scan_config)


class ResNetBKBlock(nn.Module):
    """x = x + Mixer(RMSNorm(x)); x = x + FFN(RMSNorm(x))."""

    def __init__(self, config: ResNetBKConfig, layer_idx: int):
        super().__init__()
        self.mixer_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mixer = BKLayer(**bk_layer_arguments(config), layer_idx=layer_idx)
        self.ffn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.ffn = FeedForward(config.hidden_size, config.intermediate_size, config.ffn_type)

    def forward(self, x, attention_mask=None, prev_mask=None, state=None, doc_start=None, positions=None):
        mixed, new_state = self.mixer(self.mixer_norm(x), state=state, attention_mask=attention_mask,
                                      prev_mask=prev_mask, doc_start=doc_start, positions=positions)
        x = x + mixed
        x = x + self.ffn(self.ffn_norm(x))
        return x, new_state


class ResNetBKPreTrainedModel(PreTrainedModel):
    config_class = ResNetBKConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ResNetBKBlock"]
    _keep_in_fp32_modules = ["shift_energy", "shift_width"]
    _is_stateful = True

    def _init_weights(self, module):
        # Each module initialises only its own parameters: transformers 5 skips a module without parameters
        # of its own (the FFN) under custom code, and ZeRO-3 gathers only a module's (and its children's)
        # parameters, so an init reaching into a child would depend on the path taken.
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "is_residual_output", False):
                std = std / math.sqrt(2 * self.config.num_hidden_layers)   # GPT-2 style: scaled with depth
            _normal_(module.weight, std)
            if module.bias is not None:
                _zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            _normal_(module.weight, std)
        elif isinstance(module, RMSNorm):
            _ones_(module.weight)
        elif isinstance(module, BKLayer):
            module.reset_shift_parameters(_copy_)   # with the helper that leaves loaded weights alone
            module.reset_positional_potential(_copy_)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the recurrent state lives in ResNetBKCache, passed as `cache` (`cache_params` before 5.24)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """As transformers', plus this model's code and `auto_map` (remote_code.py): the directory
        then loads with `trust_remote_code=True` where this package is not installed."""
        from .remote_code import set_auto_map, write_remote_code
        if kwargs.get("is_main_process", True):
            set_auto_map(self.config)
            write_remote_code(save_directory)   # before saving: push_to_hub uploads what is there
        # A class loaded from a directory's code (the model's and the config's) has _auto_class set; transformers'
        # own copy of the code would then point auto_map at modeling.py / configuration.py, whose deeper imports
        # transformers 4.57 does not copy (remote_code.py).
        classes = (type(self), type(self.config))
        saved = [cls.__dict__.get("_auto_class") for cls in classes]
        for cls in classes:
            cls._auto_class = None
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            for cls, auto_class in zip(classes, saved):
                if auto_class is None:
                    del cls._auto_class      # back to the inherited None
                else:
                    cls._auto_class = auto_class


class _BothCacheNames:
    """`out.cache` and `out.cache_params` both read the recurrent state: the dataclass field (named CACHE_FIELD)
    shadows the property of its own name, the other property reads the field."""

    @property
    def cache(self) -> Optional[ResNetBKCache]:
        return self.cache_params

    @property
    def cache_params(self) -> Optional[ResNetBKCache]:
        return self.cache


@dataclass
class ResNetBKOutput(_BothCacheNames, ModelOutput):
    last_hidden_state: Optional[torch.FloatTensor] = None
    if CACHE_FIELD == "cache":
        cache: Optional[ResNetBKCache] = None
    else:
        cache_params: Optional[ResNetBKCache] = None
    hidden_states: Optional[Tuple[torch.FloatTensor, ...]] = None


@dataclass
class ResNetBKCausalLMOutput(_BothCacheNames, ModelOutput):
    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    if CACHE_FIELD == "cache":
        cache: Optional[ResNetBKCache] = None
    else:
        cache_params: Optional[ResNetBKCache] = None
    hidden_states: Optional[Tuple[torch.FloatTensor, ...]] = None


def _host_reads_forbidden() -> bool:
    """True while torch.compile traces or a CUDA graph records: reading a tensor's value on the host would break
    the graph or fail the capture. The value checks of the inputs are then skipped (an out-of-range token id
    fails in the embedding lookup instead: IndexError on the CPU, a device-side assert on CUDA) and the shortcuts
    that look at the mask or the positions take their general path."""
    if torch.compiler.is_compiling():
        return True
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _check_inputs(config, input_ids, inputs_embeds, attention_mask):
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")
    if input_ids is not None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex:
            raise ValueError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
        batch, length = input_ids.shape
        if input_ids.numel() > 0 and not _host_reads_forbidden():
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= config.vocab_size:
                raise ValueError(f"token ids must be in [0, {config.vocab_size - 1}] (vocab_size={config.vocab_size}), "
                                 f"got ids in [{low}, {high}]")
    else:
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.hidden_size:
            raise ValueError(f"inputs_embeds must have shape (batch, seq_len, {config.hidden_size}), "
                             f"got {tuple(inputs_embeds.shape)}")
        batch, length = inputs_embeds.shape[:2]
    if batch == 0 or length == 0:
        raise ValueError(f"empty input: got batch={batch}, seq_len={length}; need at least one token")
    if attention_mask is not None:
        if tuple(attention_mask.shape) != (batch, length):
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} does not match the input's "
                             f"(batch, seq_len) = {(batch, length)}")
        if attention_mask.numel() and not _host_reads_forbidden() and \
                not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise ValueError("attention_mask must contain only 0 and 1")


def _check_position_ids(position_ids, batch: int, length: int) -> None:
    if position_ids is None:
        return
    if position_ids.dim() != 2 or position_ids.shape[1] != length or position_ids.shape[0] not in (1, batch):
        raise ValueError(f"position_ids shape {tuple(position_ids.shape)} does not match the input's "
                         f"(batch, seq_len) = {(batch, length)}")
    if position_ids.dtype.is_floating_point or position_ids.dtype.is_complex or position_ids.dtype == torch.bool:
        raise ValueError(f"position_ids must be integers, got dtype {position_ids.dtype}")
    if position_ids.numel() and not _host_reads_forbidden() and int(position_ids.min()) < 0:
        raise ValueError(f"position_ids must be >= 0, got min {int(position_ids.min())}")


def _document_starts(position_ids, batch_and_length, has_state: bool):
    """Where a packed document starts (position_ids == 0, as DataCollatorWithFlattening makes them), or None.

    Position 0 of a call without carried state has no predecessor anyway, so plain 0..N-1 positions cost
    nothing; with a cache, a 0 at the first position starts a new document (the carried state is dropped).
    """
    if position_ids is None:
        return None
    batch, length = batch_and_length
    starts = position_ids == 0
    if not has_state:
        starts[:, 0] = False
    if not _host_reads_forbidden() and not bool(starts.any()):   # traced: keep the (all-False) mask
        return None
    return starts.expand(batch, length)


def _potential_positions(config, position_ids, attention_mask, cache, x):
    """(positions (B, N) for the positional potential, the cache's `positions` after this call), or (None, None).

    Given position_ids (packed documents restart at 0) are the positions: a packed document sees the positional
    potential it would see alone. Otherwise a position counts the real tokens before it in its row (padding does
    not count), continued from the cache.
    """
    if config.positional_potential is None:
        return None, None
    batch, length = x.shape[:2]
    if position_ids is not None:
        positions = position_ids.to(x.device).long().expand(batch, length)
        return positions, positions[:, -1] + 1
    seen = cache.positions if cache is not None and cache.positions is not None \
        else torch.zeros(batch, dtype=torch.long, device=x.device)
    real = attention_mask.long() if attention_mask is not None else torch.ones(batch, length, dtype=torch.long,
                                                                              device=x.device)
    return (seen[:, None] + real.cumsum(1) - 1).clamp(min=0), seen + real.sum(1)


class ResNetBKModel(ResNetBKPreTrainedModel):
    def __init__(self, config: ResNetBKConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=None)
        self.layers = nn.ModuleList([ResNetBKBlock(config, i) for i in range(config.num_hidden_layers)])
        self.norm_f = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, cache=None,
                use_cache=None, output_hidden_states=None, return_dict=None, position_ids=None, cache_params=None,
                **kwargs):
        _check_inputs(self.config, input_ids, inputs_embeds, attention_mask)
        cache = _one_cache(cache, cache_params)
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = bool(output_hidden_states)
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        _check_position_ids(position_ids, x.shape[0], x.shape[1])
        positions, next_positions = _potential_positions(self.config, position_ids, attention_mask, cache, x)
        # (traced or recorded: the mask is kept; the masked path gives the same result for an all-ones mask)
        if attention_mask is not None and not _host_reads_forbidden() and bool(attention_mask.all()) and (
                cache is None or cache.last_mask is None or bool(cache.last_mask.all())):
            attention_mask = None  # nothing is masked: skip the masking work
        if use_cache and cache is None:
            cache = ResNetBKCache(self.config, x.shape[0], x.device)
        if cache is not None and cache.batch_size != x.shape[0]:
            raise ValueError(f"the cache holds batch {cache.batch_size}, input has batch {x.shape[0]}")
        prev_mask = cache.last_mask if cache is not None else None
        doc_start = _document_starts(position_ids, x.shape[:2], has_state=cache is not None
                                     and cache.seqlen_offset > 0)
        all_hidden = []
        for i, block in enumerate(self.layers):
            if output_hidden_states:
                all_hidden.append(x)
            state = cache.states[i] if cache is not None else None
            if self.gradient_checkpointing and self.training:
                x, new_state = torch.utils.checkpoint.checkpoint(block, x, attention_mask, prev_mask, state,
                                                                 doc_start, positions, use_reentrant=False)
            else:
                x, new_state = block(x, attention_mask, prev_mask, state, doc_start, positions)
            if cache is not None:
                cache.states[i] = new_state if torch.is_grad_enabled() else new_state.detach()
        x = self.norm_f(x)
        if output_hidden_states:
            all_hidden.append(x)
        if cache is not None:
            cache.advance(x.shape[1], attention_mask, next_positions)
        out = ResNetBKOutput(last_hidden_state=x, **{CACHE_FIELD: cache if use_cache else None},
                             hidden_states=tuple(all_hidden) if output_hidden_states else None)
        return out if return_dict else out.to_tuple()


class ResNetBKForCausalLM(ResNetBKPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"} if TRANSFORMERS_V5 else ["lm_head.weight"]

    def __init__(self, config: ResNetBKConfig):
        super().__init__(config)
        self.model = ResNetBKModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def prepare_inputs_for_generation(self, input_ids, cache=None, attention_mask=None, inputs_embeds=None,
                                      use_cache=None, cache_params=None, **kwargs):
        cache = _one_cache(cache, cache_params)
        # The cache has absorbed `seqlen_offset` tokens: feed only the new ones (O(1) per generated token).
        if cache is not None and cache.seqlen_offset > 0:
            offset = cache.seqlen_offset
            input_ids = input_ids[:, offset:]
            if attention_mask is not None:
                attention_mask = attention_mask[:, offset:]
            inputs_embeds = None
        model_inputs = {CACHE_FIELD: cache, "use_cache": use_cache, "attention_mask": attention_mask,
                        "logits_to_keep": 1}
        if inputs_embeds is not None:
            model_inputs["inputs_embeds"] = inputs_embeds
        else:
            model_inputs["input_ids"] = input_ids.contiguous()
        return model_inputs

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, cache=None, labels=None,
                use_cache=None, output_hidden_states=None, return_dict=None, logits_to_keep: int = 0,
                position_ids=None, cache_params=None, **kwargs):
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                             cache=_one_cache(cache, cache_params), use_cache=use_cache,
                             output_hidden_states=output_hidden_states, return_dict=True,
                             position_ids=position_ids)
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden).float()
        loss = None
        if labels is not None:
            if labels.shape != hidden.shape[:2]:
                raise ValueError(f"labels shape {tuple(labels.shape)} does not match the input's "
                                 f"{tuple(hidden.shape[:2])}")
            # Trainer passes num_items_in_batch (label tokens over all accumulated micro-batches): then the
            # loss is a sum over that count, so gradient accumulation weighs every token equally.
            num_items = kwargs.get("num_items_in_batch")
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                   labels[:, 1:].reshape(-1).to(logits.device), ignore_index=-100,
                                   reduction="mean" if num_items is None else "sum")
            if num_items is not None:
                loss = loss / torch.as_tensor(num_items, device=loss.device, dtype=loss.dtype)
        out = ResNetBKCausalLMOutput(loss=loss, logits=logits, **{CACHE_FIELD: outputs.cache},
                                     hidden_states=outputs.hidden_states)
        return out if return_dict else out.to_tuple()


class ResNetBKForSequenceClassification(ResNetBKPreTrainedModel):
    """Last-token pooling: the recurrent state at the last real token summarises the sequence."""

    def __init__(self, config: ResNetBKConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = ResNetBKModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None,
                output_hidden_states=None, return_dict=None, **kwargs):
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                             use_cache=False, output_hidden_states=output_hidden_states, return_dict=True)
        hidden = outputs.last_hidden_state
        B, N = hidden.shape[:2]
        if attention_mask is not None:
            positions = torch.arange(N, device=hidden.device).expand(B, N)
            last = torch.where(attention_mask.bool().to(hidden.device), positions, -1).max(dim=1).values
            if bool((last < 0).any()):
                raise ValueError("a row of attention_mask is all zeros: nothing to classify")
        elif input_ids is not None and self.config.pad_token_id is not None:
            positions = torch.arange(N, device=hidden.device).expand(B, N)
            not_pad = input_ids.to(hidden.device) != self.config.pad_token_id
            last = torch.where(not_pad, positions, -1).max(dim=1).values.clamp(min=0)
        else:
            last = torch.full((B,), N - 1, device=hidden.device)
        logits = self.score(hidden[torch.arange(B, device=hidden.device), last]).float()
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif labels.dtype in (torch.long, torch.int):
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"
            if self.config.problem_type == "regression":
                loss = F.mse_loss(logits.squeeze(-1), labels.float().view(-1)) if self.num_labels == 1 \
                    else F.mse_loss(logits, labels.float())
            elif self.config.problem_type == "single_label_classification":
                loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
            else:
                loss = F.binary_cross_entropy_with_logits(logits, labels.float())
        out = SequenceClassifierOutputWithPast(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return out if return_dict else out.to_tuple()
