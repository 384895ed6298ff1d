"""Renaming a state dict between our (diffusers') parameter names and another layout, module by module.

A layout is a list of :class:`Prefix` pairs: a module path on our side, the same module's path on the other
side, and renames of the module's own children (a ResNet block's ``norm1`` is ``in_layers.0`` in the original
Stable Diffusion code). :func:`build_key_map` applies them to every parameter name of a model, so the map is
complete by construction (a parameter no pair covers is an error, never silently dropped) and its inverse is
exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class Prefix:
    """Module ``ours`` is module ``theirs``; its children named in ``children`` are renamed too."""

    ours: str
    theirs: str
    children: Mapping[str, str] = field(default_factory=dict)


def build_key_map(names: Iterable[str], prefixes: Iterable[Prefix], what: str) -> dict[str, str]:
    """Our parameter name -> theirs, for every name in ``names`` (the longest matching prefix wins)."""
    table = sorted(prefixes, key=lambda p: -len(p.ours))
    mapped = {}
    for name in names:
        prefix = next((p for p in table if name.startswith(p.ours + ".")), None)
        if prefix is None:
            raise ValueError(f"{what}: parameter {name!r} has no counterpart in the original layout")
        rest = name[len(prefix.ours) + 1:]
        child = next((c for c in sorted(prefix.children, key=len, reverse=True) if rest.startswith(c + ".")), None)
        if child is not None:
            rest = prefix.children[child] + rest[len(child):]
        mapped[name] = f"{prefix.theirs}.{rest}"
    if len(set(mapped.values())) != len(mapped):
        raise AssertionError(f"{what}: two parameters map to the same original name")  # a layout bug, not bad input
    return mapped


def rename(state_dict: Mapping[str, Tensor], key_map: Mapping[str, str], source: str, prefix: str = "") -> dict[str, Tensor]:
    """``state_dict`` (keys ``prefix + their name``) renamed to our names; every expected key must be there and
    nothing else under ``prefix`` may be. Errors name the file (``source``) and the tensors."""
    theirs = {prefix + v: k for k, v in key_map.items()}
    present = {k for k in state_dict if k.startswith(prefix)}
    missing = sorted(set(theirs) - present)
    unexpected = sorted(present - set(theirs))
    problems = []
    for title, items in (("missing tensors", missing), ("unexpected tensors", unexpected)):
        if items:
            problems.append(f"{len(items)} {title}: " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else ""))
    if problems:
        raise ValueError(f"{source} does not match the layout it was read as; " + "; ".join(problems))
    return {theirs[k]: state_dict[k] for k in present}


def check_shapes(state_dict: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Raise naming every tensor of ``state_dict`` whose shape is not the ``expected`` one (same keys)."""
    wrong = [f"{k} has shape {tuple(state_dict[k].shape)}, expected {tuple(shape)}"
             for k, shape in expected.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(shape)]
    if wrong:
        raise ValueError(f"{source}: {len(wrong)} tensor(s) of the wrong shape: " + "; ".join(wrong[:10]))
