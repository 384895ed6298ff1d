"""The training loop: one function, :func:`train`, the same on a laptop CPU and under ``torchrun``, for every task:
a diffusion model (:mod:`.diffusion_task`, in pixel or latent space) or the autoencoder of latent diffusion
(:mod:`.autoencoder_task`). A task provides the network, the loss of a batch, the exported folder and the
previews, and may bring an adversary (the autoencoder's patch discriminator) that the loop steps and checkpoints
beside the network; the loop owns the optimizer, EMA, checkpoints, resume, stopping and distribution.

Everything random in a step (noise levels, noise, condition dropout) is drawn from a generator seeded by
``(seed, micro-batch number)`` for the whole global batch, and every process takes its slice; the data order
is a function of the step too (:mod:`unstatic.training.batches`). Only the global RNG (dropout layers) carries
state, and checkpoints save it. So a run that is stopped and resumed is bit-identical on CPU to one that
was not, and W processes with batch B/W compute the same update as one process with batch B.
"""

from __future__ import annotations

import copy
import math
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from unstatic.cpu_features import warn_if_bf16_is_emulated
from unstatic.data.registry import build_dataset
from unstatic.networks.memory_format import training_format
from unstatic.networks.weights import check_state_dict, strip_type_and_version
from unstatic.training import checkpoint as ckpt
from unstatic.training.autoencoder_task import AutoencoderTask
from unstatic.training.batches import BatchStream, EpochIndexed, derive_seed
from unstatic.training.config import TrainConfig, config_from_mapping
from unstatic.training.diffusion_task import DiffusionTask
from unstatic.training.distributed import Runtime, all_sum, barrier, start, stop
from unstatic.training.ema import EMA
from unstatic.training.lr import learning_rate
from unstatic.training.reporting import TrainingMonitor

TASKS = {"diffusion": DiffusionTask, "autoencoder": AutoencoderTask}


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, mismatched checkpoint); the message says what to do."""


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    model_dir: Path
    step: int
    checkpoint: Path | None
    reason: str  # "finished", "stopped" (Ctrl-C, SIGTERM or stop_after) or "time_limit"

    @property
    def interrupted(self) -> bool:
        return self.reason != "finished"


class _StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to save and stop after the current step; a second Ctrl-C
    interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopRequest:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no signal handling, Ctrl-C behaves as usual
            self._previous.clear()
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextmanager
def _explain_out_of_memory(config: TrainConfig, step: int, per_process: int):
    """Turn an allocation failure (CUDA or CPU) into advice instead of a stack of allocator internals."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not isinstance(error, torch.OutOfMemoryError) and "can't allocate memory" not in str(error):
            raise
        raise TrainingError(
            f"out of memory at step {step} with {per_process} images per process: lower batch_size, or keep the "
            f"effective batch with grad_accum (e.g. --set batch_size={max(1, config.batch_size // 2)} "
            f"--set grad_accum={config.grad_accum * 2}), or set model.gradient_checkpointing = true or "
            f'precision = "bf16". ({str(error).splitlines()[0][:200]})'
        ) from error


def _match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give loaded optimizer moments their parameter's strides: checkpoints store them contiguous (NCHW), and the
    fused AdamW kernel walks a parameter and its moments as one flat layout, so channels-last weights need
    channels-last moments."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    optimizer.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def _check_resumable(saved: dict, config: TrainConfig, path: Path) -> None:
    """A checkpoint only resumes into the same task, model, diffusion or autoencoder setup and data (other
    settings may change)."""
    saved_config = config_from_mapping(TrainConfig, strip_type_and_version(TrainConfig, saved))
    for section in ("task", "model", "diffusion", "autoencoder", "data"):
        if getattr(saved_config, section) != getattr(config, section):
            raise TrainingError(
                f"the checkpoint {path} was trained with a different {'task' if section == 'task' else f'[{section}] section'}:\n"
                f"  checkpoint: {getattr(saved_config, section)}\n  config:     {getattr(config, section)}\n"
                "use the same settings, or a new output_dir to start afresh"
            )
    if saved_config.batch_size != config.batch_size or saved_config.seed != config.seed:
        raise TrainingError(f"the checkpoint {path} used batch_size {saved_config.batch_size} and seed "
                            f"{saved_config.seed}; resuming with other values would change the data order")


def train(
    config: TrainConfig, resume: bool = True, stop_after: int | None = None, progress: bool = True,
    dataset: Dataset | None = None,
) -> TrainResult:
    """Train ``config`` into ``config.output_dir``, resuming from its newest checkpoint; returns where the model
    went. With ``resume=False`` an output folder that already holds checkpoints is an error, so nothing is ever
    overwritten. ``dataset`` replaces the one ``config.data`` names (any dataset whose items are dicts with
    ``image`` [C, R, R] in [-1, 1] and, for class or text conditioning, ``label`` or ``caption``).
    ``stop_after`` steps ends the run early as Ctrl-C would."""
    runtime = start(config.device)
    try:
        return _Run(config, runtime, progress, dataset).run(resume, stop_after)
    finally:
        stop(runtime)


class _Run:
    def __init__(self, config: TrainConfig, runtime: Runtime, progress: bool, dataset: Dataset | None) -> None:
        self.config, self.runtime, self.show_progress = config, runtime, progress
        if config.precision == "bf16":
            warn_if_bf16_is_emulated(runtime.device, 'training with precision = "bf16"')
        self.output = Path(config.output_dir)
        self.checkpoints = self.output / "checkpoints"
        if dataset is None:
            dataset = build_dataset(config.data.name, config.data.resolution, config.data.options)
        if len(dataset) == 0:
            raise TrainingError(f"the {config.data.name} dataset is empty")
        self.task = TASKS[config.task](config, dataset, runtime.device, progress and runtime.is_main)
        self.dataset = self.task.dataset  # for latent diffusion, the cached latents
        self.network = self.task.network.to(runtime.device)
        # Inference runs channels-last, which loading restores; training picks what measured fastest here.
        self.network.to(memory_format=training_format(runtime.device, config.precision == "bf16"))
        self.ema = EMA(self.network, config.optim.ema_decay, config.optim.ema_warmup)
        optim = config.optim
        # fused: one kernel over all parameters (CPU and CUDA): 11 vs 42 ms per step for UNet2DModel (32, 64, 128)'s
        # 4M parameters on 2 cores
        self.optimizer = torch.optim.AdamW(
            self.network.parameters(), lr=optim.lr, betas=optim.betas, eps=optim.eps, weight_decay=optim.weight_decay,
            fused=runtime.device.type in ("cpu", "cuda"),
        )
        self.adversary = self.task.adversary  # None, or a second network with its own optimizer (a discriminator)
        self.step = 0

    # -- state ------------------------------------------------------------------------------------------

    def _state(self) -> dict:
        state = {"step": self.step, "ema_updates": self.ema.updates, "optimizer": self.optimizer.state_dict(),
                 "rng": ckpt.rng_state(), "samples_seen": self.step * self.config.grad_accum * self.config.batch_size}
        if self.adversary is not None:
            state["adversary_optimizer"] = self.adversary.state()[1]
        return state

    def _weights(self) -> dict:
        weights = {"model": self.network.state_dict(), "ema": self.ema.state_dict()}
        if self.adversary is not None:
            weights["adversary"] = self.adversary.state()[0]
        return weights

    def _restore(self, path: Path) -> None:
        weights, state, saved_config = ckpt.load_checkpoint(path)
        _check_resumable(saved_config, self.config, path)
        self.network.load_state_dict(weights["model"])
        self.ema.load_state_dict(weights["ema"], state["ema_updates"])
        self.optimizer.load_state_dict(state["optimizer"])
        _match_parameter_layouts(self.optimizer)
        if self.adversary is not None:
            self.adversary.restore(weights["adversary"], state["adversary_optimizer"])
        ckpt.set_rng_state(state["rng"])
        self.step = state["step"]

    def _initialise_from(self, folder: Path) -> None:
        """Start from a model folder's weights (network and EMA alike); it must match this run's setup."""
        try:
            state = self.task.initial_weights(folder)
        except (FileNotFoundError, ValueError, KeyError) as error:
            raise TrainingError(f"init_from={str(folder)!r} {error}") from error
        try:  # same spec, other widths or layout: name the tensors that do not fit
            check_state_dict(self.network, state, source=str(folder))
        except ValueError as error:
            raise TrainingError(f"init_from={str(folder)!r} cannot start this run: {error}") from error
        self.network.load_state_dict(state)
        self.ema.load_state_dict(state, 0)  # copy_ moves each tensor onto the EMA's device

    def _save(self) -> Path | None:
        path = None
        if self.runtime.is_main:
            path = ckpt.save_checkpoint(self.checkpoints, self.step, self._weights(), self._state(), self.config.to_dict(),
                                        self.config.keep_checkpoints)
            self._export()
        barrier(self.runtime)
        return path

    def _ema_network(self) -> torch.nn.Module:
        network = copy.deepcopy(self.network)
        self.ema.copy_to(network)
        return network.eval()

    def _export(self) -> Path:
        """The EMA weights as a model folder that loads straight into sampling, replaced atomically; stored in
        ``export_dtype`` (16-bit halves the folder for shipping; it loads back as float32)."""
        final = self.output / "model"
        temporary = self.output / "model.tmp"
        storage = None if self.config.export_dtype == "float32" else getattr(torch, self.config.export_dtype)
        ckpt.replace_folder(lambda folder: self.task.export(self._ema_network(), folder, storage), final, temporary)
        return final

    # -- one optimizer step ------------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast(self.runtime.device.type, torch.bfloat16, enabled=self.config.precision == "bf16")

    def _micro_step(self, model, batch: dict, number: int, scale: float) -> float:
        config, runtime = self.config, self.runtime
        local = batch["image"].shape[0]
        # Random draws for the global batch, this rank's rows taken: identical to one process with the whole batch.
        generator = torch.Generator().manual_seed(derive_seed(config.seed, number))
        rows = slice(runtime.rank * local, (runtime.rank + 1) * local)
        with self._autocast():
            loss = self.task.loss(model, batch, generator, rows, runtime.world, self.step)
        (loss * scale).backward()
        return float(loss.detach())

    def run(self, resume: bool, stop_after: int | None) -> TrainResult:
        config, runtime = self.config, self.runtime
        if runtime.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.checkpoints)
        latest = ckpt.latest_checkpoint(self.checkpoints)
        if latest is not None and not resume:
            raise TrainingError(f"{self.output} already holds checkpoints (newest {latest.name}); resume it, or "
                                "train into a new output_dir to start over")
        if latest is not None:
            self._restore(latest)
        elif config.init_from:
            self._initialise_from(Path(config.init_from))
        if runtime.is_main:
            config.save(self.output / "train_config.json")
        model = self.task.forward_module
        if config.compile:
            model = torch.compile(model)
        if runtime.distributed:
            model = DistributedDataParallel(model, device_ids=[runtime.device] if runtime.device.type == "cuda" else None)
        stream = BatchStream(len(self.dataset), config.batch_size, config.seed, start=self.step * config.grad_accum,
                             rank=runtime.rank, world=runtime.world,
                             count=(config.steps - self.step) * config.grad_accum)
        # Its own generator: a DataLoader otherwise draws its worker base seed from the global RNG, which
        # would shift the dropout stream of a resumed run by one draw.
        loader = DataLoader(EpochIndexed(self.dataset), batch_sampler=stream, num_workers=config.data.num_workers,
                            generator=torch.Generator().manual_seed(derive_seed(config.seed, self.step, 0x10AD)))
        monitor = TrainingMonitor(self.output, config, self.step, enabled=runtime.is_main and self.show_progress,
                                  is_main=runtime.is_main)
        batches = iter(loader)
        last_checkpoint, reason = latest, "finished"
        started = time.monotonic()
        with _StopRequest() as stop_request, monitor:
            while self.step < config.steps:
                loss, grad_norm, extra = self._optimizer_step(model, batches)
                self.step += 1
                monitor.record(self.step, loss, self.optimizer.param_groups[0]["lr"], grad_norm, extra)
                out_of_time = 0 < config.time_limit_minutes * 60 <= time.monotonic() - started
                asked = stop_request.requested or (stop_after is not None and self.step >= stop_after)
                # Every process must stop at the same step: agree on the flags.
                asked, out_of_time = (value > 0 for value in all_sum([float(asked), float(out_of_time)], runtime))
                last = self.step == config.steps or asked or out_of_time
                if self.step % config.checkpoint_every == 0 or last:
                    last_checkpoint = self._save() or last_checkpoint
                    monitor.plot()
                if runtime.is_main and config.sample_every and (self.step % config.sample_every == 0 or last):
                    self.task.previews(self._ema_network(), self.output, self.step)
                if last and self.step < config.steps:
                    reason = "stopped" if asked else "time_limit"
                    monitor.write(f"{reason.replace('_', ' ')} at step {self.step}; checkpoint {last_checkpoint}; "
                                  "run the same command again to continue")
                    break
        return TrainResult(self.output, self.output / "model", self.step, last_checkpoint, reason)

    def _optimizer_step(self, model, batches) -> tuple[float, float, dict[str, float]]:
        config, runtime = self.config, self.runtime
        lr = learning_rate(self.step, config.steps, config.optim.lr, config.optim.warmup_steps,
                           config.optim.lr_schedule, config.optim.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.network.train()
        losses = []
        for micro in range(config.grad_accum):
            number = self.step * config.grad_accum + micro
            last = micro == config.grad_accum - 1
            sync = nullcontext() if last or not runtime.distributed else model.no_sync()
            with sync, _explain_out_of_memory(config, self.step + 1, config.batch_size // runtime.world):
                losses.append(self._micro_step(model, next(batches), number, 1 / config.grad_accum))
        loss = all_sum([sum(losses) / len(losses)], runtime)[0] / runtime.world
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.network.parameters(), config.optim.grad_clip or math.inf))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            kept = ckpt.latest_checkpoint(self.checkpoints)
            raise TrainingError(
                f"the loss became {'non-finite' if not math.isfinite(loss) else 'finite but the gradient norm is not'} "
                f"at step {self.step + 1} (loss {loss}, gradient norm {grad_norm}); nothing was saved after it. "
                f"The last good checkpoint is {kept or '(none yet)'}. Try a lower optim.lr, optim.grad_clip, or "
                "precision = \"fp32\"."
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.network)
        extra = {}
        if self.adversary is not None:
            with self._autocast(), _explain_out_of_memory(config, self.step + 1, config.batch_size // runtime.world):
                extra = self.adversary.step()
            extra = dict(zip(extra, (v / runtime.world for v in all_sum(list(extra.values()), runtime))))
        return loss, grad_norm, extra
