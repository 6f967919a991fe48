"""Build a tiny LLaVA (CLIP vision + Llama text) with random weights, in the Hugging Face cache layout.

Run by the interpreter of `.cache/tf-serve` (a recent transformers, for `transformers serve`):
`python tests/openai_tiny_vlm.py HUB_DIR ORG/NAME`. Nothing is downloaded: the tokenizer is a
byte-level BPE trained here on a few sentences. The model never stops by itself (no end-of-text
token) and writes printable ASCII only, so every answer is exactly `max_tokens` pieces long:
tests can count them and cut one off mid-stream.
"""

from __future__ import annotations

import sys
from pathlib import Path

REVISION = "0" * 40  # the cache layout wants a commit hash; any fixed one does

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "a red car drives past the door",
    "two people walk along the street",
    "nothing changes in the scene",
    "the light turns green and a bus arrives",
]


def build(hub: Path, repo_id: str, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    org, name = repo_id.split("/")
    repo = hub / f"models--{org}--{name}"
    out = repo / "snapshots" / REVISION
    out.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)

    specials = ["<pad>", "<image>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        # Printable ASCII only (byte-level BPE writes a space as "Ġ"): every token decodes to
        # whole characters, so the server streams one piece per token, never a half character.
        initial_alphabet=[chr(b) for b in range(0x21, 0x7F)] + ["Ġ"],
        limit_alphabet=96,
    )
    bpe.train_from_iterator(CORPUS * 10, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", chat_template=TEMPLATE
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=TEMPLATE,
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            projection_dim=32,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=None,
            bos_token_id=None,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        # Special tokens decode to nothing: never sampled, every token streams a piece.
        suppress_tokens=tokenizer.convert_tokens_to_ids(specials),
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


if __name__ == "__main__":
    for n, repo_id in enumerate(sys.argv[2:]):
        print(build(Path(sys.argv[1]), repo_id, seed=n))
