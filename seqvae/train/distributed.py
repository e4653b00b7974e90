"""torchrun integration: one process per device, DistributedDataParallel, gloo on CPU and NCCL on GPUs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from seqvae.models.device import pick_device


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average a small tensor of metrics over ranks (identity in a single process)."""
        if not self.enabled:
            return values
        values = values.to(self.device).clone()
        dist.all_reduce(values)
        return values.cpu() / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device: str | None = None) -> Distributed:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); a plain run is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported: use 'cpu' or 'cuda' (or leave it out for automatic; "
                         "torchrun gives each process its GPU from LOCAL_RANK)")
    wants_cuda = pick_device(device).type == "cuda"  # a clear error when CUDA is asked for and there is none
    if wants_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if wants_cuda else "gloo")
    return Distributed(rank, world_size, local_rank, chosen)
