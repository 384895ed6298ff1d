"""Run by the distributed tests under ``torchrun --nproc_per_node 2``: trains the tiny config into argv[1] on
TinyImages of the config's resolution. :func:`train_on_two_processes` launches it."""

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.training.tiny import TinyImages, tiny_config  # noqa: E402
from unstatic.training.trainer import train  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_on_two_processes(output_dir: Path, *overrides: str) -> None:
    """torchrun with 2 gloo processes of one thread each; fails the calling test with the workers' stderr."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
               __file__, str(output_dir), *overrides]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


if __name__ == "__main__":
    config = tiny_config(sys.argv[1], *sys.argv[2:])
    train(config, dataset=TinyImages(side=config.data.resolution), progress=False)
