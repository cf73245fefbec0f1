"""Data-parallel training over torch.distributed: what each process of a run knows and does.

N processes (``torchrun --nproc-per-node N``, or ``ganexport train --nproc N``)
train one model together. Each holds the whole model and the whole (in-memory)
training set, and each step:

- every process draws the same *global* batch of ``batch_size`` rows (one
  seeded stream, identical everywhere) and trains on its own ``batch_size / N``
  of them, so the processes see disjoint shards of every batch;
- per-row random draws (latents, noise, timesteps, label dropout) are made
  for the global batch too, and each process keeps its rows (``RowRandom``);
- gradients are averaged across processes before every optimizer step
  (``World.average_gradients``), and batch-norm statistics are taken over the
  global batch (``GlobalBatchNorm``).

So N processes of ``batch_size / N`` rows compute the step one process of
``batch_size`` rows computes, up to float rounding: a run's recipe does not
change with N, and ``--resume`` continues a run on a different N with the same
random streams. Only rank 0 writes (checkpoints, samples, logs).

Why not ``torch.nn.parallel.DistributedDataParallel``: a GAN step runs the
discriminator in the generator's phase and twice in its own, and WGAN-GP takes
a double backward through the critic; DDP's reducer expects one forward per
backward and supports neither without ``find_unused_parameters`` or
``static_graph`` workarounds. As NVlabs' stylegan2-ada/stylegan3 trainers do,
one flattened all-reduce of the gradients per optimizer step does the same
averaging with no constraint on the step. ``torch.nn.SyncBatchNorm`` runs on
GPUs only, so the global batch norm here is built on torch.distributed's
differentiable all-reduce and runs on gloo (CPU) and NCCL alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` (``size`` 1: a plain single-process run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run's files and prints progress."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def rows(self, n_global: int) -> slice:
        """This rank's rows of a global batch of ``n_global`` rows (which ``check_batch`` made divisible)."""
        share = n_global // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.rows(len(t))] if self.parallel else t

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.size:
            raise ValueError(f"batch_size {batch_size} does not split over {self.size} processes: "
                             f"use a multiple of {self.size} (--batch-size)")

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Replace each gradient by its mean over the processes: one all-reduce of all of them, flattened."""
        if not self.parallel:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))

    def mean_of(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each logged figure over the processes (every process passes the same keys)."""
        if not self.parallel or not values:
            return values
        t = torch.tensor([values[k] for k in sorted(values)], dtype=torch.float64)
        dist.all_reduce(t)
        return dict(zip(sorted(values), (t / self.size).tolist()))

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every process's rows of ``t``, in rank order: the global batch (no gradient flows back)."""
        if not self.parallel:
            return t
        parts = [torch.empty_like(t) for _ in range(self.size)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (e.g. the run directory rank 0 chose)."""
        if not self.parallel:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def same_start(self, nets: Iterable[nn.Module]) -> None:
        """Rank 0's parameters and buffers on every process, so all start from one model."""
        if not self.parallel:
            return
        for net in nets:
            for t in [*net.parameters(), *net.buffers()]:
                dist.broadcast(t.data, src=0)

    def close(self, finished: bool = True) -> None:
        """Leave the process group; after a finished run, once every process has finished."""
        if self.parallel and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


SINGLE = World()


def from_environment(use_cuda: bool) -> World:
    """The world torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), its process group joined:
    NCCL when training on CUDA, else gloo. Without torchrun: a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    world = World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return world


class RowRandom:
    """Per-row random draws of a step, made for the whole global batch; each process keeps its own rows.

    Every process makes the same draws from the same seeded stream, so a
    latent, a noise image or a timestep belongs to a row of the global batch,
    whichever process trains on that row. ``n`` is this process's row count.
    """

    def __init__(self, world: World, device: torch.device):
        self.world, self.device = world, device

    def randn(self, n: int, *shape: int) -> torch.Tensor:
        return self.world.shard(torch.randn(n * self.world.size, *shape, device=self.device))

    def rand(self, n: int, *shape: int) -> torch.Tensor:
        return self.world.shard(torch.rand(n * self.world.size, *shape, device=self.device))

    def randint(self, high: int, n: int) -> torch.Tensor:
        return self.world.shard(torch.randint(0, high, (n * self.world.size,), device=self.device))

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(len(x), *x.shape[1:]).to(x.dtype)


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) with a gradient: each process's input feeds every process's output, so its
    gradient is the sum of every process's output gradient, one more all-reduce."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are over the global batch of every process.

    A ``BatchNorm2d`` subclass with the same parameters and buffers, so its
    state dict, checkpoint and exported graph are a plain batch norm's. The
    mean and variance come from one all-reduce (with its gradient) of each
    channel's sum, sum of squares and count (gloo or NCCL); eval mode and
    single-process runs use the running statistics exactly as BatchNorm2d does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        n_local = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype, device=x.device)
        stats = _SumOverProcesses.apply(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), n_local]))
        c = x.shape[1]
        count = stats[2 * c]
        mean = stats[:c] / count
        var = (stats[c:2 * c] / count - mean * mean).clamp_min(0)
        if self.track_running_stats:
            self._track(mean.detach(), var.detach(), count)
        y = (x - mean.view(1, -1, 1, 1)) * torch.rsqrt(var.view(1, -1, 1, 1) + self.eps)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1) if self.affine else y

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """Running statistics as BatchNorm2d keeps them: the variance unbiased, over the global count."""
        self.num_batches_tracked += 1
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(m * mean)
        self.running_var.mul_(1 - m).add_(m * var * count / (count - 1).clamp_min(1))


def global_batch_norm(net: nn.Module) -> nn.Module:
    """``net`` with every BatchNorm2d swapped in place for a GlobalBatchNorm holding the same tensors."""
    for name, child in net.named_children():
        if type(child) is nn.BatchNorm2d:
            swapped = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                      child.track_running_stats, device=child.weight.device if child.affine
                                      else None)
            swapped.load_state_dict(child.state_dict())
            swapped.train(child.training)
            setattr(net, name, swapped)
        else:
            global_batch_norm(child)
    return net
