"""Run by the distributed test under ``torchrun --nproc_per_node 2``: trains the tiny model into argv[1]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.training.tiny import TinyImages, tiny_config  # noqa: E402
from unstatic.training.trainer import train  # noqa: E402

if __name__ == "__main__":
    train(tiny_config(sys.argv[1], *sys.argv[2:]), dataset=TinyImages(), progress=False)
