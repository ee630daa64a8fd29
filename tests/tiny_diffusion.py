"""Tiny random-weight diffusion pipelines, saved with diffusers' own `save_pretrained`, served by the test hub.

Each is the real pipeline class the catalog's repo holds, with its real component classes at toy sizes
(the configs of diffusers' own pipeline tests), and a VAE that keeps the real models' downsampling
factor, so the service's size rules are the real ones:
- SD-Turbo (`stabilityai/sd-turbo`): `StableDiffusionPipeline`, UNet2D + AutoencoderKL (factor 8) +
  CLIP text encoder, Euler scheduler with trailing timesteps as in the release.
- SD3 Medium (`stabilityai/stable-diffusion-3-medium-diffusers`): `StableDiffusion3Pipeline`, an MMDiT
  transformer (patch 2: sizes a multiple of 16), two CLIP encoders with projection and a T5 encoder.
- Inpainting (`stable-diffusion-v1-5/stable-diffusion-inpainting`): `StableDiffusionInpaintPipeline`, a 9-channel UNet.
- ModelScope text-to-video (`damo-vilab/text-to-video-ms-1.7b`): `TextToVideoSDPipeline`, a UNet3D.
- LTX-Video (`Lightricks/LTX-Video`): `LTXPipeline` (the service runs its image-to-video twin on the
  same components), its video VAE at 4x spatial and 4x temporal compression, a T5 encoder.
Tokenizers: a CLIP byte-level BPE whose vocabulary is the 256 byte symbols (any text tokenizes) and the
T5 sentencepiece tokenizer of tests/tiny_musicgen. Everything is seeded: same request, same pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SD_TURBO_REPO = "stabilityai/sd-turbo"
SD3_REPO = "stabilityai/stable-diffusion-3-medium-diffusers"
INPAINT_REPO = "stable-diffusion-v1-5/stable-diffusion-inpainting"
T2V_REPO = "damo-vilab/text-to-video-ms-1.7b"
LTX_REPO = "Lightricks/LTX-Video"

# Options the test app deploys these families with: two concurrent requests share a pipeline call.
KINDS = ("image-generation",)  # the family kinds whose user_config the test app takes from DEPLOYMENT_OPTIONS
DEPLOYMENT_OPTIONS: dict = {"user_config": {"max_batch_size": 4, "batch_wait_timeout_s": 0.5}}


def _seeded(seed: int, make):
    import torch

    torch.manual_seed(seed)
    return make()


def build_clip_tokenizer():
    """CLIP's tokenizer over a vocabulary of the byte symbols (alone and word-final), no merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {token: i for i, token in enumerate([*symbols, *(s + "</w>" for s in symbols)])}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    return tokenizer


def _clip_config(tokenizer, **changes):
    from transformers import CLIPTextConfig

    options = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
               "vocab_size": len(tokenizer), "max_position_embeddings": 77, "hidden_act": "gelu",
               "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    return CLIPTextConfig(**{**options, **changes})


def _t5(work: Path):
    """(T5 encoder with d_model 32, its sentencepiece tokenizer)."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    from tests.tiny_musicgen import build_tokenizer

    build_tokenizer(work / "t5-tokenizer")
    tokenizer = T5Tokenizer.from_pretrained(work / "t5-tokenizer")
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(config), tokenizer


def _vae(latent_channels: int = 4, **changes):
    """AutoencoderKL with four blocks: the real 8x downsampling at toy width."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**{"in_channels": 3, "out_channels": 3, "latent_channels": latent_channels,
                            "block_out_channels": (8, 8, 8, 8), "layers_per_block": 1, "norm_num_groups": 4,
                            "down_block_types": ["DownEncoderBlock2D"] * 4,
                            "up_block_types": ["UpDecoderBlock2D"] * 4, "sample_size": 64, **changes})


def _unet(in_channels: int = 4):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8,
                                in_channels=in_channels, out_channels=4, cross_attention_dim=32,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
                                attention_head_dim=4)


def build_sd_turbo(folder: Path, seed: int = 10) -> Path:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    tokenizer = build_clip_tokenizer()

    def make():
        return StableDiffusionPipeline(
            vae=_vae(), text_encoder=CLIPTextModel(_clip_config(tokenizer)), tokenizer=tokenizer, unet=_unet(),
            scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                             timestep_spacing="trailing"),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    _seeded(seed, make).save_pretrained(folder)
    return folder


def build_inpainting(folder: Path, seed: int = 11) -> Path:
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline
    from transformers import CLIPTextModel

    tokenizer = build_clip_tokenizer()

    def make():
        return StableDiffusionInpaintPipeline(
            vae=_vae(), text_encoder=CLIPTextModel(_clip_config(tokenizer)), tokenizer=tokenizer,
            unet=_unet(in_channels=9),  # latents + mask + masked-image latents
            scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                    clip_sample=False, set_alpha_to_one=False, steps_offset=1),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)

    _seeded(seed, make).save_pretrained(folder)
    return folder


def build_sd3(folder: Path, seed: int = 12) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    tokenizer = build_clip_tokenizer()

    def make():
        text_encoder_3, tokenizer_3 = _t5(folder.parent / f"{folder.name}-work")
        config = _clip_config(tokenizer, projection_dim=32)
        return StableDiffusion3Pipeline(
            transformer=SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=4,
                                              num_layers=1, attention_head_dim=8, num_attention_heads=4,
                                              caption_projection_dim=32, joint_attention_dim=32,
                                              pooled_projection_dim=64),
            vae=_vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
            text_encoder=CLIPTextModelWithProjection(config), tokenizer=tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(config), tokenizer_2=tokenizer,
            text_encoder_3=text_encoder_3, tokenizer_3=tokenizer_3,
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))

    _seeded(seed, make).save_pretrained(folder)
    return folder


def build_text_to_video(folder: Path, seed: int = 13) -> Path:
    from diffusers import DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextModel

    tokenizer = build_clip_tokenizer()

    def make():
        # attention only below full latent resolution: seed 003's 48 frames at 256x256 take seconds, not a minute
        unet = UNet3DConditionModel(
            block_out_channels=(8, 8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
            down_block_types=("DownBlock3D", "DownBlock3D", "CrossAttnDownBlock3D"),
            up_block_types=("CrossAttnUpBlock3D", "UpBlock3D", "UpBlock3D"), cross_attention_dim=32,
            attention_head_dim=4, norm_num_groups=4)
        return TextToVideoSDPipeline(
            vae=_vae(), text_encoder=CLIPTextModel(_clip_config(tokenizer)), tokenizer=tokenizer, unet=unet,
            scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                    clip_sample=False, set_alpha_to_one=False, steps_offset=1))

    _seeded(seed, make).save_pretrained(folder)
    return folder


def build_ltx(folder: Path, seed: int = 14) -> Path:
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    def make():
        text_encoder, tokenizer = _t5(folder.parent / f"{folder.name}-work")
        transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                                 num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                                 num_layers=1, caption_channels=32)
        vae = AutoencoderKLLTXVideo(
            in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False),
            decoder_inject_noise=(False, False, False, False, False), upsample_residual=(False, False, False, False),
            upsample_factor=(1, 1, 1, 1), timestep_conditioning=False, patch_size=1, patch_size_t=1,
            encoder_causal=True, decoder_causal=False)
        return LTXPipeline(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                           scheduler=FlowMatchEulerDiscreteScheduler())

    _seeded(seed, make).save_pretrained(folder)
    return folder


BUILDERS = {SD_TURBO_REPO: ("sd-turbo", build_sd_turbo), SD3_REPO: ("sd3", build_sd3),
            INPAINT_REPO: ("sd-inpainting", build_inpainting), T2V_REPO: ("text-to-video-ms", build_text_to_video),
            LTX_REPO: ("ltx-video", build_ltx)}


def add_repos(hub, folder) -> None:
    """Build the tiny pipelines into subfolders of `folder` and serve them under the catalog's repo ids."""
    for repo_id, (name, build) in BUILDERS.items():
        hub.add_repo(repo_id, build(Path(folder) / name))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write random-weight diffusion pipelines into subfolders.")
    parser.add_argument("folder", type=Path)
    arguments = parser.parse_args()
    for _, (name, build) in BUILDERS.items():
        print(build(arguments.folder / name))
