"""Joint end-to-end training of a hybrid model (slayer surrogate gradients through the
accumulator into the ANN), evaluation in PyTorch, firing-rate statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hsnn_perception.core.errors import ExperimentError
from hsnn_perception.training.data import SpikeSet
from hsnn_perception.training.models import ArchSpec, build_model
from hsnn_perception.training.regularization import (
    RateTarget,
    expand_targets,
    neuron_rates,
    rate_penalty,
    rate_summary,
)


class TrainingError(ExperimentError, ValueError):
    """Training cannot run with these data or settings."""


@dataclass
class TrainConfig:
    """The training recipe (stored in the bundle manifest)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 1
    rate_targets: list[RateTarget] = field(default_factory=list)
    rate_weight: float = 0.0
    qat_epochs: int = 0  # extra epochs of 8-bit fake-quant training of the ANN part
    max_steps: int | None = None  # stop early (tests: a step or two)
    # Test accuracy after every epoch (the history) and firing-rate summaries before and after
    # training; off: only the final accuracy (and the rates if rate targets are set). At 2x128x128
    # a test pass costs about a third of a training epoch on the CPU.
    eval_each_epoch: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.threads < 1:
            raise TrainingError(
                "epochs must be >= 0, and batch_size, lr and threads positive "
                f"(got {self.epochs}, {self.batch_size}, {self.lr}, {self.threads})"
            )
        if self.rate_weight < 0 or self.qat_epochs < 0:
            raise TrainingError("rate_weight and qat_epochs must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["rate_targets"] = [asdict(t) for t in self.rate_targets]
        return doc


@dataclass
class TrainResult:
    model: Any
    spec: ArchSpec
    config: TrainConfig
    history: list[dict[str, float | None]]
    test_accuracy: float
    rates_before: list[dict] | None
    rates_after: list[dict] | None
    train_seconds: float
    qat_test_accuracy: float | None = None


def to_tensor(spikes: np.ndarray) -> Any:
    """``(N, T, C, H, W)`` uint8 spikes -> slayer's ``(N, C, H, W, T)`` float tensor."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(spikes)).float().permute(0, 2, 3, 4, 1)


def _check_data(spec: ArchSpec, data: SpikeSet, what: str) -> None:
    _, t, c, h, w = data.spikes.shape
    want = (spec.timesteps, spec.in_channels, spec.height, spec.width)
    if (t, c, h, w) != want:
        raise TrainingError(f"{what} windows are {(t, c, h, w)}, the model expects {want}")
    if int(data.labels.max(initial=0)) >= spec.num_classes:
        raise TrainingError(f"{what} has labels beyond the model's {spec.num_classes} classes")


def predict_torch(model: Any, data: SpikeSet, batch_size: int = 64) -> np.ndarray:
    """Class predictions of the PyTorch model (eval mode)."""
    import torch

    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            logits, _ = model(to_tensor(data.spikes[i : i + batch_size]))
            preds.append(logits.argmax(dim=1).numpy())
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def layer_rates(model: Any, data: SpikeSet, batch_size: int = 64) -> list[Any]:
    """Per-neuron firing rates (spikes per timestep) of each spiking layer over ``data``."""
    import torch

    model.eval()
    sums: list[Any] = []
    n = 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            batch = to_tensor(data.spikes[i : i + batch_size])
            _, outs = model(batch)
            rates = [neuron_rates(o) * batch.shape[0] for o in outs]
            sums = rates if not sums else [a + b for a, b in zip(sums, rates, strict=True)]
            n += batch.shape[0]
    return [s / max(n, 1) for s in sums]


def train_model(
    spec: ArchSpec,
    train: SpikeSet,
    test: SpikeSet,
    config: TrainConfig,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``spec`` from scratch on ``train``; test accuracy is measured in PyTorch."""
    import torch

    _check_data(spec, train, "training")
    _check_data(spec, test, "test")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_model(spec)
    targets = expand_targets(config.rate_targets, spec.k) if config.rate_weight > 0 else []
    want_rates = spec.k > 0 and (config.eval_each_epoch or bool(targets))
    rates_before = rate_summary(layer_rates(model, test), targets) if want_rates else None
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=max(1, config.epochs * steps_per_epoch)
    )
    history: list[dict[str, float | None]] = []
    t0 = time.perf_counter()
    step = 0
    done = False
    for epoch in range(config.epochs):
        model.train()
        order = rng.permutation(len(train))
        batches = range(0, len(train), config.batch_size)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc=f"{spec.name} I={spec.interval} epoch {epoch + 1}")
        tot_loss = tot_correct = tot_n = 0.0
        for i in batches:
            idx = order[i : i + config.batch_size]
            x = to_tensor(train.spikes[idx])
            y = torch.from_numpy(train.labels[idx])
            logits, outs = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            if targets:
                loss = loss + rate_penalty(outs, targets, config.rate_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += float(loss.detach()) * len(idx)
            tot_correct += float((logits.argmax(1) == y).sum())
            tot_n += len(idx)
            step += 1
            if config.max_steps is not None and step >= config.max_steps:
                done = True
                break
        last = done or epoch == config.epochs - 1
        acc = (
            float(np.mean(predict_torch(model, test) == test.labels))
            if config.eval_each_epoch or last
            else None  # not measured (JSON-safe, unlike NaN)
        )
        history.append(
            {
                "epoch": epoch + 1,
                "loss": tot_loss / max(tot_n, 1),
                "train_accuracy": tot_correct / max(tot_n, 1),
                "test_accuracy": acc,
            }
        )
        if log:
            log(
                f"{spec.name} I={spec.interval} epoch {epoch + 1}: loss {history[-1]['loss']:.3f} "
                f"train {history[-1]['train_accuracy']:.3f} "
                f"test {'-' if acc is None else f'{acc:.3f}'}"
            )
        if done:
            break
    train_seconds = time.perf_counter() - t0
    if history and history[-1]["test_accuracy"] is not None:
        test_acc = history[-1]["test_accuracy"]  # the model has not changed since
    else:
        test_acc = float(np.mean(predict_torch(model, test) == test.labels))
    rates_after = rate_summary(layer_rates(model, test), targets) if want_rates else None
    return TrainResult(
        model=model,
        spec=spec,
        config=config,
        history=history,
        test_accuracy=test_acc,
        rates_before=rates_before,
        rates_after=rates_after,
        train_seconds=train_seconds,
    )
