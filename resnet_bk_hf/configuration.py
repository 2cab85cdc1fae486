"""ResNetBKConfig: every hyper-parameter of the ResNet-BK language model, validated."""
from __future__ import annotations

import math
from numbers import Integral, Real

from transformers import PretrainedConfig

from .layers.bk import check_arguments as check_bk_layer_arguments
from .ops.bk.scan_config import ScanConfig
from .validation import FieldError, build_dataclass, check_choice, check_float, check_int, need

FFN_TYPES = ("mlp", "swiglu")
# BKLayer's argument names (those a config sets), and the config field of each where the names differ
BK_LAYER_ARGUMENTS = ("hidden_size", "num_heads", "num_shifts", "mode", "hopping_mode", "hop_value", "hop_max",
                      "h0_diag", "eta_min", "eta_init_range", "lambda_init_range", "potential_clamp", "feature_clamp",
                      "positional_potential", "positional_potential_length", "positional_potential_learned",
                      "prime_bump_eps", "prime_bump_scale", "scan_backend")
CONFIG_FIELD = {"mode": "mixer_mode"}


def _where(name: str) -> str:
    return f"ResNetBKConfig.{name}"


def _int(name, value, low, high=None):
    check_int(_where(name), value, low, high)


def _float(name, value, low=None, high=None, low_open=False, allow_none=False):
    check_float(_where(name), value, low, high, low_open=low_open, allow_none=allow_none)


def _choice(name, value, choices):
    check_choice(_where(name), value, choices)


def _scan_config(value):
    """None, or a dict of ScanConfig fields that builds a valid ScanConfig; returns it with YAML-style values
    coerced to the fields' types (so the layer builds the very ScanConfig checked here)."""
    if value is None:
        return None
    where = _where("scan_config")
    need(where, isinstance(value, dict), "a dict of ScanConfig fields, or None for the tuned defaults", value)
    try:
        built = build_dataclass(where, value, ScanConfig)
    except FieldError:
        raise
    except (TypeError, ValueError) as err:   # ScanConfig's own checks name the ScanConfig field
        raise FieldError(f"{where}: {err}") from err
    return {name: getattr(built, name) for name in value}


class ResNetBKConfig(PretrainedConfig):
    r"""Configuration of a ResNet-BK causal language model (see docs/design.md sections 2 and 3).

    Args:
        vocab_size: size of the token vocabulary.
        hidden_size: model width d_model (alias `d_model`).
        num_hidden_layers: number of residual blocks (alias `n_layers`).
        num_heads: BK heads; each head has its own tridiagonal Hamiltonian. Must divide hidden_size.
        num_shifts: spectral shifts z_k per head (K): the state size per channel.
        mixer_mode: "resolvent" (values + readout, docs/design.md 2.5) or "diag" (the seeds' features [Re g, Im g]).
        ffn_type: "mlp" (GELU) or "swiglu". intermediate_size: FFN hidden width (default 4 * hidden_size,
            or 8/3 * hidden_size rounded for swiglu).
        h0_diag: diagonal of the free Hamiltonian H0 (-2 = discrete Laplacian).
        hopping_mode: "constant" (every b_t = hop_value), "learned" (one b per head, initialised at
            hop_value) or "input" (b_t = hop_max * sigmoid(linear(x_t))).
        hop_value: hopping of the constant mode and initial hopping of the learned mode.
        hop_max: upper bound of the hopping in the learned and input modes.
        eta_min: floor of Im z; |g_t| <= 1 / eta_min holds at every position.
        eta_init_range: (low, high) of the initial Im z, spread log-uniformly over the shifts.
        lambda_init_range: (low, high) of the initial Re z; None = the band of H0,
            [h0_diag - 2 hop_value, h0_diag + 2 hop_value].
        potential_clamp: soft bound on the potential, v = c * tanh(v_raw / c) (seeds' v clamp); None disables.
        feature_clamp: bound on the diag-mode features (seeds' feature clamp); None disables.
        rms_norm_eps, initializer_range, tie_word_embeddings: as usual in transformers.
        scan_backend: "auto" (Triton on CUDA, else the recurrent CPU path), "naive", "recurrent", "triton",
            "parallel" (log-depth, real arithmetic: the form the ONNX export uses). How "auto", the environment
            variable RESNET_BK_SCAN_BACKEND and the fallbacks (float64 -> recurrent) decide: ops/bk/dispatch.py.
        scan_config: block sizes and options of the Triton kernels, a dict of `ops.bk.scan_config.ScanConfig`
            fields (fields left out take ScanConfig's defaults); None = `default_config(head_dim, num_shifts)`,
            the blocks measured fastest. Checked here by building the ScanConfig.
        positional_potential: None (off) or "prime_bump": a bias added to every head's raw potential by token
            position t, initialised to prime_bump_scale * V_eps(log(t + 1)) (`theory.primes`; positions past
            positional_potential_length use the last entry). Counted in real tokens (padding does not advance
            it), or taken from position_ids when given (packed documents restart at 0).
        positional_potential_learned: train the bias (a parameter per position and head) or keep it fixed.
        prime_bump_eps: eps of the prime-bump construction, in (0, 1].
        prime_bump_scale: multiplies the prime-bump values.
        positional_potential_length: positions with their own bias entry.
    """

    model_type = "resnet_bk"
    # Trainer.predict must not gather the recurrent state (named `cache` from transformers 5.24 on)
    keys_to_ignore_at_inference = ["cache", "cache_params"]
    attribute_map = {"d_model": "hidden_size", "n_layers": "num_hidden_layers", "num_attention_heads": "num_heads"}

    def __init__(
        self,
        vocab_size: int = 8192,
        hidden_size: int = 256,
        num_hidden_layers: int = 4,
        num_heads: int = 4,
        num_shifts: int = 4,
        mixer_mode: str = "resolvent",
        ffn_type: str = "swiglu",
        intermediate_size: int | None = None,
        h0_diag: float = -2.0,
        hopping_mode: str = "input",
        hop_value: float = 1.0,
        hop_max: float = 1.0,
        eta_min: float = 0.05,
        eta_init_range=(0.25, 2.0),
        lambda_init_range=None,
        potential_clamp: float | None = 8.0,
        feature_clamp: float | None = 20.0,
        rms_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = True,
        scan_backend: str = "auto",
        scan_config: dict | None = None,
        positional_potential: str | None = None,
        positional_potential_learned: bool = False,
        prime_bump_eps: float = 0.5,
        prime_bump_scale: float = 1.0,
        positional_potential_length: int = 1024,
        use_cache: bool = True,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = 1,
        eos_token_id: int | None = 1,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_heads = num_heads
        self.num_shifts = num_shifts
        self.mixer_mode = mixer_mode
        self.ffn_type = ffn_type
        if intermediate_size is None and isinstance(hidden_size, Integral):
            intermediate_size = 4 * hidden_size if ffn_type == "mlp" else 64 * math.ceil(8 * hidden_size / 3 / 64)
        self.intermediate_size = intermediate_size
        self.h0_diag = h0_diag
        self.hopping_mode = hopping_mode
        self.hop_value = hop_value
        self.hop_max = hop_max
        self.eta_min = eta_min
        self.eta_init_range = list(eta_init_range) if eta_init_range is not None else eta_init_range
        if lambda_init_range is None and isinstance(h0_diag, Real) and isinstance(hop_value, Real):
            lambda_init_range = (h0_diag - 2 * hop_value, h0_diag + 2 * hop_value)
        self.lambda_init_range = list(lambda_init_range) if lambda_init_range is not None else lambda_init_range
        self.potential_clamp = potential_clamp
        self.feature_clamp = feature_clamp
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        self.scan_backend = scan_backend
        self.scan_config = _scan_config(scan_config)
        self.positional_potential = positional_potential
        self.positional_potential_learned = positional_potential_learned
        self.prime_bump_eps = prime_bump_eps
        self.prime_bump_scale = prime_bump_scale
        self.positional_potential_length = positional_potential_length
        self.use_cache = use_cache
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.validate_fields()

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def validate_fields(self) -> None:
        """Raise ValueError naming the first impossible field and its allowed range."""
        _int("vocab_size", self.vocab_size, 2)
        _int("hidden_size", self.hidden_size, 1)
        _int("num_hidden_layers", self.num_hidden_layers, 1)
        _choice("ffn_type", self.ffn_type, FFN_TYPES)
        _int("intermediate_size", self.intermediate_size, 1)
        _float("rms_norm_eps", self.rms_norm_eps, 0.0, low_open=True)
        _float("initializer_range", self.initializer_range, 0.0, low_open=True)
        # the mixer's fields: the BK layer's own checks, under this config's field names
        layer_args = {name: getattr(self, CONFIG_FIELD.get(name, name)) for name in BK_LAYER_ARGUMENTS}
        check_bk_layer_arguments(layer_args, where=lambda name: _where(CONFIG_FIELD.get(name, name)))
        _scan_config(self.scan_config)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name, None)
            if value is not None:
                _int(name, value, 0, self.vocab_size - 1)
