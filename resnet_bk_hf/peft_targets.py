"""Which linear maps PEFT adapts in a ResNet-BK model by default.

PEFT picks default `target_modules` from per-architecture tables
(`peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING` and one table per
method); there is no public call to add an architecture to them, so pass these lists yourself:

    from peft import LoraConfig, IA3Config, get_peft_model
    from resnet_bk_hf.peft_targets import TARGET_MODULES, IA3_FEEDFORWARD_MODULES
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", target_modules=TARGET_MODULES))
    model = get_peft_model(model, IA3Config(task_type="CAUSAL_LM", target_modules=TARGET_MODULES,
                                            feedforward_modules=IA3_FEEDFORWARD_MODULES))

The maps, per block (`model.model.layers[i]`):
    mixer.in_proj   D -> potential v, hopping b, values u, readout C, gate (one matmul, split)
    mixer.out_proj  D -> D after the gated scan output
    ffn.up_proj     D -> intermediate (x2 for SwiGLU)
    ffn.down_proj   intermediate -> D
The spectral shifts (shift_energy, shift_width) and the norms stay frozen; list them in
`modules_to_save` to train them fully as well.
"""
TARGET_MODULES = ["in_proj", "out_proj", "up_proj", "down_proj"]
# (IA)^3 scales the input of "feedforward" modules and the output of the others.
IA3_FEEDFORWARD_MODULES = ["down_proj"]
