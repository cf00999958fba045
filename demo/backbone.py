"""A tiny SmolVLM backbone with random weights, built offline: the stand-in for SmolVLM2 in tests and the demo.

SmolVLA needs a SmolVLM-architecture backbone directory (config + processor + tokenizer) to build its
VLM and its tokenizer step. The real one (`HuggingFaceTB/SmolVLM2-500M-Video-Instruct`) cannot be
downloaded on machines without internet, so this module writes a small one:

- a `SmolVLMConfig` with a tiny llama text model and a tiny vision tower (`image_size` 64 by default,
  so SmolVLA's `resize_imgs_with_padding` follows it and images stay small);
- a `SmolVLMProcessor` (image + video processor) around a byte-level BPE tokenizer trained with the
  `tokenizers` library on a few sentences, whose special tokens are the ones SmolVLA reads
  (`fake_image_token`, `image_token`, `end_of_utterance_token`, `global_image_token`).

The output is deterministic: the same arguments always write the same files. No weights are written:
SmolVLA builds the VLM from the config (`load_vlm_weights=False`) and initialises it at random.

`--architecture smolvlm2-500m` writes the same kind of directory with the real SmolVLM2-500M sizes
(`SMOLVLM2_500M`: SmolLM2-360M text model, SigLIP base patch16-512 vision tower), so that step times
and memory are those of the real model without its weights (SmolVLA on it: ~450 M parameters). Its
tokenizer is still the small local BPE (~490 tokens, not the real 49,280); the text embedding keeps
the real 49,280 rows, so the parameter count and shapes are the real ones.

    b1k-tiny-backbone --output-dir /tmp/tiny-smolvlm
    b1k-tiny-backbone --output-dir /tmp/smolvlm2-500m-random --architecture smolvlm2-500m
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import click

from shards.command import Exits, command

SPECIAL_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
BASE_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]

# A few sentences so the BPE learns the words of BEHAVIOR task prompts; the vocabulary stays tiny.
_CORPUS = [
    "pick up the radio and put it on the table",
    "turn on the radio receiver that's on the table in the living room",
    "hiding easter eggs in the garden behind the bushes",
    "put the dishes away after cleaning them in the kitchen",
    "open the door and move the boxes into the room",
    "clean up the broken glass on the floor with a towel",
    "set up a coffee station in the kitchen with cups and a coffee maker",
    "tidy the bedroom, make the bed and hang the clothes",
    "carry the laundry basket to the washer and load it",
    "pour water from the bottle into the glass",
    "The robot grasps the object with its left gripper and its right gripper.",
    "0 1 2 3 4 5 6 7 8 9 a b c d e f g h i j k l m n o p q r s t u v w x y z",
]


@dataclass(frozen=True)
class TinyBackboneSpec:
    """Sizes of the tiny backbone (the defaults build a ~0.5 M-parameter SmolVLA policy)."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 32
    vision_intermediate: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    text_hidden: int = 64
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    scale_factor: int = 2
    vocab_size: int = 512  # the BPE's target; on its small corpus it stops at ~490 tokens
    embedding_rows: int | None = None  # rows of the text embedding; None: the tokenizer's size
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6


# The published HuggingFaceTB/SmolVLM2-500M-Video-Instruct sizes (no download here; sources found by
# search, 2026-12): text model = SmolLM2-360M (hidden 960, 32 layers, 15 heads, 5 kv heads, head dim
# 64, intermediate 2560, rope_theta 100000, rms_norm_eps 1e-5, max positions 8192) as in the SmolVLM-500M config.json
# (e.g. huggingface.co/vidore/ColSmolVLM-Instruct-500M-base/blob/27476f0/config.json: "hidden_size":
# 960, "intermediate_size": 2560, "num_attention_heads": 15, "num_key_value_heads": 5, "head_dim": 64,
# "max_position_embeddings": 8192, "scale_factor": 4); vision tower = SigLIP base patch16-512 (hidden
# 768, 12 layers, 12 heads, intermediate 3072, image 512, patch 16) and vocab 49280, as listed for
# SmolVLM2-500M at mintlify.wiki/kvark/meganeura/models/smolvlm2; scale_factor 4 also follows from
# the model's own processor_config.json ("image_seq_len": 64 = (512/16)^2 / 4^2).
SMOLVLM2_500M = TinyBackboneSpec(
    image_size=512,
    patch_size=16,
    vision_hidden=768,
    vision_intermediate=3072,
    vision_layers=12,
    vision_heads=12,
    text_hidden=960,
    text_layers=32,
    text_heads=15,
    text_kv_heads=5,
    text_intermediate=2560,
    scale_factor=4,
    vocab_size=512,
    embedding_rows=49280,
    max_position_embeddings=8192,
    rope_theta=100000.0,
    rms_norm_eps=1e-5,
)
ARCHITECTURES = {"tiny": TinyBackboneSpec(), "smolvlm2-500m": SMOLVLM2_500M}


def _build_tokenizer(vocab_size: int):
    """A byte-level BPE trained on `_CORPUS` (deterministic), wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [*BASE_SPECIAL, *SPECIAL_TOKENS.values()]
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
        extra_special_tokens=dict(SPECIAL_TOKENS),
        model_max_length=2048,
    )


def build_tiny_backbone(output_dir: str | Path, spec: TinyBackboneSpec | None = None) -> Path:
    """Write a tiny SmolVLM backbone (config, processor, tokenizer; no weights) to `output_dir`.

    Returns the directory, usable as SmolVLA's `vlm_model_name` (and as `b1k-train --vlm-model`).
    """
    from transformers import SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    spec = spec or TinyBackboneSpec()
    tile = spec.patch_size * spec.scale_factor
    if spec.image_size < tile or spec.image_size % tile:
        raise ValueError(
            f"image_size must be a multiple of patch_size x scale_factor = {tile}, got {spec.image_size}"
        )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer(spec.vocab_size)
    image_token_id = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS["image_token"])
    config = SmolVLMConfig(
        image_token_id=image_token_id,
        pad_token_id=tokenizer.pad_token_id,
        scale_factor=spec.scale_factor,
        vision_config={
            "hidden_size": spec.vision_hidden,
            "intermediate_size": spec.vision_intermediate,
            "num_hidden_layers": spec.vision_layers,
            "num_attention_heads": spec.vision_heads,
            "image_size": spec.image_size,
            "patch_size": spec.patch_size,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": spec.embedding_rows or len(tokenizer),
            "hidden_size": spec.text_hidden,
            "intermediate_size": spec.text_intermediate,
            "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads,
            "num_key_value_heads": spec.text_kv_heads,
            "head_dim": spec.text_hidden // spec.text_heads,
            "max_position_embeddings": spec.max_position_embeddings,
            "rope_parameters": {"rope_type": "default", "rope_theta": spec.rope_theta},
            "rms_norm_eps": spec.rms_norm_eps,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        },
    )
    config.save_pretrained(out)

    patches = spec.image_size // spec.patch_size
    image_seq_len = (patches * patches) // (spec.scale_factor**2)
    size = {"longest_edge": spec.image_size}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(
            size=size, max_image_size=size, do_image_splitting=False, do_resize=True
        ),
        video_processor=SmolVLMVideoProcessor(),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
    )
    processor.save_pretrained(out)
    return out


@command("b1k-tiny-backbone", Exits(error=1))
@click.option(
    "--output-dir",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the backbone into (created if missing).",
)
@click.option(
    "--architecture",
    type=click.Choice(sorted(ARCHITECTURES)),
    default="tiny",
    show_default=True,
    help="tiny: a ~0.5 M-parameter SmolVLA for tests; smolvlm2-500m: the real SmolVLM2-500M sizes "
    "(random weights; SmolVLA ~450 M parameters) to measure real step times.",
)
@click.option(
    "--image-size",
    "image_size",
    default=None,
    type=click.IntRange(min=16),
    help="Vision tower input size in pixels, a multiple of patch x scale factor (SmolVLA resizes "
    "images to it). [default: the architecture's: 64 for tiny, 512 for smolvlm2-500m]",
)
def main(output_dir: Path, architecture: str, image_size: int | None) -> None:
    """Build a random-weight SmolVLM backbone (config + processor + tokenizer) offline."""
    spec = ARCHITECTURES[architecture]
    if image_size is not None:
        spec = replace(spec, image_size=image_size)
    try:
        path = build_tiny_backbone(output_dir, spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--image-size") from None
    click.echo(f"{architecture} SmolVLM backbone written to {path} (vision image_size {spec.image_size})")


if __name__ == "__main__":
    main()
