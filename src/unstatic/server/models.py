"""The models a server offers: listed by name at start-up, each loaded on first use and then kept warm, one of
them current (what requests without an explicit model use, and what A1111's ``sd_model_checkpoint`` names)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from unstatic.pipelines.generation import DEFAULT_GUIDANCE
from unstatic.pipelines.txt2img import TextToImagePipeline
from unstatic.sampling.from_model import downsampling_factor
from unstatic.server.errors import ApiError


@dataclass(frozen=True)
class ModelInfo:
    """What a client needs to know to build a valid request for a model."""

    name: str
    folder: Path
    conditioning: str  # "text", "class" or "none"
    image_size: int  # the training resolution: the default width and height
    size_factor: int  # width and height must be multiples of this
    class_names: tuple[str, ...]
    channels: int
    guidance: float  # the model's default guidance scale (the web page's starting value)


class ModelRegistry:
    """Named model folders; ``pipeline(name)`` loads a folder once (thread-safe) and keeps it loaded."""

    def __init__(self, folders: Mapping[str, str | Path], device: str = "cpu", dtype: torch.dtype | None = None) -> None:
        if not folders:
            raise ValueError("a server needs at least one model")
        self.folders = {name: Path(folder) for name, folder in folders.items()}
        self.device, self.dtype = device, dtype
        self.current = next(iter(self.folders))
        self._pipelines: dict[str, TextToImagePipeline] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.folders)

    def resolve(self, title: str | None) -> str:
        """The model name for what a client sent: a name, A1111's ``name [hash]`` title form, any case;
        None or "" means the current model. Unknown names are a 404 listing the known ones."""
        if title is None or not str(title).strip():
            return self.current
        text = str(title).strip()
        candidates = [text, text.split(" [")[0].strip()]
        for candidate in candidates:
            if candidate in self.folders:
                return candidate
        by_lower = {name.lower(): name for name in self.folders}
        for candidate in candidates:
            if candidate.lower() in by_lower:
                return by_lower[candidate.lower()]
        raise ApiError(404, "unknown model", f"unknown model {text!r}; this server has: {', '.join(self.folders)}")

    def pipeline(self, name: str | None = None) -> TextToImagePipeline:
        """The loaded pipeline of a model (loading it on first use); folders that fail to load are a 500 with
        the reason, since the server's own configuration is at fault, not the request."""
        name = self.resolve(name)
        with self._lock:  # two requests for a cold model load it once
            if name not in self._pipelines:
                try:
                    pipe = TextToImagePipeline.from_folder(self.folders[name], device=self.device, dtype=self.dtype)
                except (OSError, ValueError) as error:
                    raise ApiError(500, "model failed to load", f"model {name!r}: {error}") from error
                pipe.name = name
                self._pipelines[name] = pipe
            return self._pipelines[name]

    def select(self, title: str) -> str:
        """Make a model current, loading it now so the first request after a switch is not the slow one."""
        name = self.resolve(title)
        self.pipeline(name)
        self.current = name
        return name

    def info(self, name: str | None = None) -> ModelInfo:
        pipe = self.pipeline(name)
        spec = pipe.model.spec
        return ModelInfo(pipe.name, self.folders[pipe.name], spec.conditioning, spec.image_size,
                         downsampling_factor(pipe.model), tuple(spec.class_names), spec.channels,
                         spec.default_guidance or DEFAULT_GUIDANCE)

    def is_loaded(self, name: str) -> bool:
        return name in self._pipelines
