import pytest

from resnet_bk_hf import ResNetBKConfig

BAD = [
    ("vocab_size", 0, "vocab_size must be an integer >= 2"),
    ("hidden_size", 16.5, "hidden_size must be an integer"),
    ("num_hidden_layers", 0, "num_hidden_layers must be an integer >= 1"),
    ("num_heads", 3, "num_heads must be a divisor of hidden_size=256"),
    ("num_shifts", 0, "num_shifts must be an integer >= 1"),
    ("mixer_mode", "attention", "mixer_mode must be one of"),
    ("ffn_type", "moe", "ffn_type must be one of"),
    ("h0_diag", float("nan"), "h0_diag must be a finite number"),
    ("hopping_mode", "random", "hopping_mode must be one of"),
    ("hop_value", -1.0, "hop_value must be a finite number > 0"),
    ("eta_min", 0.0, "eta_min must be a finite number > 0"),
    ("eta_init_range", (0.01, 1.0), "eta_init_range must be a pair"),
    ("eta_init_range", (2.0, 1.0), "eta_init_range must be a pair"),
    ("lambda_init_range", (0.0,), "lambda_init_range must be a pair"),
    ("potential_clamp", -3, "potential_clamp must be a finite number > 0"),
    ("feature_clamp", float("inf"), "feature_clamp must be a finite number"),
    ("rms_norm_eps", 0, "rms_norm_eps must be a finite number > 0"),
    ("scan_backend", "cuda", "scan_backend must be one of"),
    ("pad_token_id", 9000, "pad_token_id must be an integer >= 0 and <= 8191"),
]


@pytest.mark.parametrize("field,value,message", BAD)
def test_invalid_values_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=f"ResNetBKConfig.{message}"):
        ResNetBKConfig(**{field: value})


def test_learned_hopping_needs_room_below_max():
    with pytest.raises(ValueError, match="hop_value must be < hop_max"):
        ResNetBKConfig(hopping_mode="learned", hop_value=1.0, hop_max=1.0)


def test_defaults_and_aliases_round_trip(tmp_path):
    cfg = ResNetBKConfig(d_model=64, n_layers=3, num_heads=4)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.head_dim) == (64, 3, 16)
    assert cfg.lambda_init_range == [-4.0, 0.0]
    cfg.save_pretrained(tmp_path)
    again = ResNetBKConfig.from_pretrained(tmp_path)
    assert again.to_dict()["num_shifts"] == cfg.num_shifts and again.hidden_size == 64
    assert ResNetBKConfig(potential_clamp=None, feature_clamp=None).potential_clamp is None


def test_scan_config_is_checked_by_building_the_scan_config(tmp_path):
    from resnet_bk_hf.validation import FieldError
    with pytest.raises(FieldError, match=r"ResNetBKConfig\.scan_config: ScanConfig\.block_t must be a power of two"):
        ResNetBKConfig(scan_config={"block_t": 3})
    with pytest.raises(FieldError, match=r"ResNetBKConfig\.scan_config: unknown key\(s\) \['blok_t'\]"):
        ResNetBKConfig(scan_config={"blok_t": 64})
    with pytest.raises(FieldError, match=r"ResNetBKConfig\.scan_config must be a dict of ScanConfig fields"):
        ResNetBKConfig(scan_config=64)
    assert ResNetBKConfig().scan_config is None                      # the tuned default_config(P, K)
    cfg = ResNetBKConfig(scan_config={"block_t": "64", "num_warps": 8.0})   # as YAML may spell them
    assert cfg.scan_config == {"block_t": 64, "num_warps": 8}
    cfg.save_pretrained(tmp_path)
    assert ResNetBKConfig.from_pretrained(tmp_path).scan_config == {"block_t": 64, "num_warps": 8}


def test_model_hands_scan_settings_to_its_layers():
    from resnet_bk_hf import ResNetBKForCausalLM
    from resnet_bk_hf.ops.bk import ScanConfig
    model = ResNetBKForCausalLM(ResNetBKConfig(vocab_size=32, hidden_size=16, num_heads=2, num_hidden_layers=2,
                                               scan_backend="naive", scan_config={"block_t": 64}))
    for block in model.model.layers:
        assert block.mixer.scan_backend == "naive" and block.mixer.scan_config == ScanConfig(block_t=64)
