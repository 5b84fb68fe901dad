"""A tiny, randomly initialised Qwen2.5-VL saved like a real checkpoint, built with no network.

Tests, notebooks and training smoke runs load it through exactly the code path of the released
``vvangfaye/SocioReasoner-3B``: ``TransformersVLM.from_pretrained(folder)``. Everything a real
checkpoint folder holds is here, at toy scale:

- ``Qwen2_5_VLForConditionalGeneration`` with a 2-layer, 64-wide text model and a 2-block vision
  tower that keeps Qwen's patch size 14, spatial merge 2 and temporal patch 2 (so the 28-pixel
  ``smart_resize`` factor holds);
- a byte-level BPE tokenizer (Qwen's pre-tokenizer: digits split one by one) trained here on the
  SocioReasoner prompts and answers, with Qwen's special tokens, wrapped in ``Qwen2Tokenizer``;
- a ``Qwen2_5_VLProcessor`` (Qwen2-VL image processor bounded to 56*56 .. 768*768 pixels) carrying
  a Qwen-style chat template written here.

The folder is about 2 MB and the model answers in well under a second on a CPU; its answers
are random until a test trains it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..geo.modelspace import MAX_PIXELS, MIN_PIXELS
from ..reasoner.kind import write_kind
from ..reasoner.prompts import stage1_text, stage2_text

# Qwen2's special tokens, in Qwen's order. The config's image/video/vision ids point at these.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# A Qwen-style chat template: default system turn, <|im_start|>role\n...<|im_end|>\n turns,
# one <|vision_start|><|image_pad|><|vision_end|> per image in the order given.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

VOCAB_SIZE = 1024  # BPE target: room for whole-word merges of the prompt and answer vocabulary

_QUERIES = (
    "school", "park", "hospital", "Jinan Zoo", "college", "Express Delivery", "Commercial service",
    "Sport and cultural", "Administrative", "Park and greenspace", "Business office",
    "Transportation stations", "Educational", "Industrial", "Medical", "Residential",
    "shopping mall", "university", "stadium", "railway station", "museum", "hotel",
)
_THOUGHTS = (
    "The map shows the label of the {q} in the north east.",
    "The satellite image shows buildings and a playground near the road.",
    "Compare the map and the satellite image to find the {q}.",
    "The object is a large area with green space and several buildings.",
    "There is one matched object, so I output one bbox.",
    "The bbox covers the area of interest; the points are inside it.",
    "I add points at the center of the object.",
)


def make_tiny_vlm(directory, seed: int = 0, *, hidden_size: int = 64, layers: int = 2, vision_hidden_size: int = 32,
                  vision_depth: int = 2) -> Path:
    """Build and save the tiny Qwen2.5-VL checkpoint into ``directory``; return its path.

    Deterministic for a given ``seed`` (weights and tokenizer). Needs torch and transformers,
    no network. The sizes default to the 2-layer, 64-wide test model; the demo model
    (``scripts/train_demo_model.py``) starts from a wider one. ``hidden_size`` must be a multiple
    of 32 (4 heads of a head size divisible by 8), ``vision_hidden_size`` a multiple of 16.
    """
    from .._optional import require

    torch = require("torch", purpose="building the tiny test VLM")
    require("transformers", purpose="building the tiny test VLM")
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(seed)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    half = hidden_size // 4 // 2  # rotary frequencies per head
    mrope = [half // 4, (half - half // 4) // 2, (half - half // 4) // 2]  # (time, height, width) as Qwen splits
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 8192,
            # head_dim 16 -> 8 rotary frequencies split over (time, height, width) as Qwen's
            # [16, 24, 24] splits 64.
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": 2 * vision_hidden_size,
            "num_heads": vision_hidden_size // 16,
            "out_hidden_size": hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(directory)
    _processor(tokenizer).save_pretrained(directory)
    write_kind(directory, "untrained")  # loaded from this folder, it is still labelled untrained
    return directory


def _tokenizer(seed: int):
    """A Qwen2Tokenizer over a byte-level BPE trained on SocioReasoner-style text."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    # The same pre-tokenizer as Qwen2: digits stay single tokens, bytes map to printable chars.
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays expressible
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(seed), trainer)
    trained = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=merges,
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(SPECIAL_TOKENS[3:]),
        model_max_length=32768,
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True)
    tokenizer.padding_side = "left"
    return tokenizer


def _corpus(seed: int) -> list[str]:
    """Prompts, thoughts and JSON answers like those the model reads and writes."""
    rng = random.Random(seed)

    def box() -> list[int]:
        x1, y1 = rng.randrange(0, 700), rng.randrange(0, 700)
        return [x1, y1, rng.randrange(x1 + 1, 757), rng.randrange(y1 + 1, 757)]

    texts = []
    for query in _QUERIES:
        boxes = [{"bbox_2d": box()} for _ in range(rng.randint(1, 3))]
        boxes_json = json.dumps(boxes)
        texts.append(stage1_text(query))
        texts.append(stage2_text(query, boxes_json))
        thought = " ".join(t.format(q=query) for t in rng.sample(_THOUGHTS, 3))
        texts.append(f"<think>{thought}</think><answer>{boxes_json}</answer>")
        with_points = [
            {**b, "points": [[rng.randrange(0, 757), rng.randrange(0, 757)] for _ in range(3)]} for b in boxes
        ]
        texts.append(f"<think>{thought}</think>\n<answer>{json.dumps(with_points)}</answer>")
    texts.append(" ".join(str(i) for i in range(1000)))
    texts.append("You are a helpful assistant. system user assistant")
    return texts * 2  # min_frequency 2: every word of the corpus can become a token


def _processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor()
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "make_tiny_vlm"]
