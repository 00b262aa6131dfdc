"""torchrun support: one process per rank, PyTorch DDP over gloo (CPU) or NCCL (GPUs).

Without torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) everything here is a no-op, so
the training loop reads the same for one process and for many.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import distributed as dist
from torch import nn

from tn_export.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes, and the device it trains on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes samples, logs and checkpoints."""
        return self.rank == 0

    @classmethod
    def start(cls, device: str) -> Ranks:
        """Join torchrun's process group if launched by torchrun; else a world of one."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls(0, 1, torch.device(device))
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        if device == "cuda":
            torch.cuda.set_device(local_rank)
            where = torch.device("cuda", local_rank)
        else:
            where = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        return cls(rank, world_size, where)

    def share(self, batch_size: int) -> slice:
        """This rank's part of a global batch that every rank draws in full from the same seed:
        the union over ranks is exactly the batch of a single-process run."""
        if batch_size % self.world_size:
            raise UserError(
                f"--batch-size {batch_size} (the global batch) does not split evenly over "
                f"{self.world_size} processes; use a multiple of {self.world_size}"
            )
        n = batch_size // self.world_size
        return slice(self.rank * n, (self.rank + 1) * n)

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP around `module` (gradients averaged over ranks). On GPUs its batch norms become
        SyncBatchNorm in place, so statistics span the global batch; PyTorch has no CPU
        SyncBatchNorm, so on CPU each rank normalises over its own share of the batch."""
        if self.world_size == 1:
            return module
        if self.device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(module)
            return nn.parallel.DistributedDataParallel(module, device_ids=[self.device.index])
        return nn.parallel.DistributedDataParallel(module)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average over ranks (detached): the global batch's loss, identical on every rank."""
        values = values.detach().clone()
        if self.world_size > 1:
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def from_main(self, make: Callable[[], T]) -> T:
        """`make()` run on rank 0 and its result sent to every rank (e.g. a checkpoint that only
        rank 0's disk holds)."""
        if self.world_size == 1:
            return make()
        box = [make() if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    @contextmanager
    def own_noise(self, seed: int, iteration: int) -> Iterator[None]:
        """A random stream of this rank's own, seeded by (seed, iteration, rank), for the noise a
        style generator draws inside itself: independent across ranks, reproducible on resume,
        and the shared stream that draws the batch stays in step on every rank."""
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(hash((seed, iteration, self.rank)) % 2**63)
            yield

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
