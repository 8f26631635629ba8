"""Trainable heads: a small classifier on a frozen backbone's stored features.

When the collection has labels (VeRi-Wild's vehicle_info.txt gives type and colour), a head
trained to predict them turns generic ImageNet features into type- or colour-aware ones; its
penultimate layer is stored as a new descriptor (``head_<label>``), the way the case's
"partially trained on VeRi-Wild" models were made. The head trains on the descriptor already in
the run folder, so no image is decoded again.

Held-out accuracy is measured on whole vehicles the head never saw (grouped split by
``vehicle_id`` when the collection has it): images of one vehicle are near-copies, and a
random split would report memorisation as accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vehiclust.errors import VehiclustError
from vehiclust.runfolder import RunFolder, fingerprint

MISSING_LABELS = {"", "none", "nan", "unknown"}


@dataclass(frozen=True)
class HeadSettings:
    hidden: int = 128
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    holdout: float = 0.2
    seed: int = 0


@dataclass
class HeadResult:
    name: str
    label: str
    classes: list[str]
    train_rows: int
    holdout_rows: int
    holdout_accuracy: float
    majority_accuracy: float


def _labelled_rows(table: pd.DataFrame, label: str, invalid: set[int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if label not in table.columns:
        raise VehiclustError(f"the collection has no column {label!r} to train a head on; "
                             f"columns: {', '.join(table.columns)}")
    values = table[label].astype(str).str.strip()
    usable = ~values.str.lower().isin(MISSING_LABELS) & ~table["row"].isin(invalid)
    rows = table.loc[usable, "row"].to_numpy()
    classes = sorted(values[usable].unique())
    if len(classes) < 2:
        raise VehiclustError(f"column {label!r} has {len(classes)} distinct label(s); a head needs two or more")
    targets = values[usable].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return rows, targets, classes


def _split(table: pd.DataFrame, rows: np.ndarray, settings: HeadSettings) -> np.ndarray:
    """Boolean mask over ``rows``: True for the held-out part (whole vehicles when known)."""
    rng = np.random.default_rng(settings.seed)
    if "vehicle_id" in table.columns:
        groups = table["vehicle_id"].to_numpy()[rows]
        unique = np.unique(groups)
        held = set(rng.choice(unique, size=max(1, int(len(unique) * settings.holdout)), replace=False))
        return np.array([g in held for g in groups])
    return rng.random(len(rows)) < settings.holdout


def _standardise(matrix: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sample = np.asarray(matrix[np.sort(rows)[:: max(1, len(rows) // 20000)]], dtype=np.float32)
    return sample.mean(axis=0), sample.std(axis=0) + 1e-6


def train_head(run: RunFolder, backbone: str, label: str, name: str | None = None,
               settings: HeadSettings = HeadSettings()) -> HeadResult:
    """Train a head, store its penultimate features as descriptor ``name``; return its scores."""
    import torch
    from torch import nn

    name = name or f"head_{label}"
    table = run.load_collection()
    matrix = run.load_descriptor(backbone)
    invalid = run.invalid_rows(backbone)
    rows, targets, classes = _labelled_rows(table, label, set(invalid))
    held = _split(table, rows, settings)
    mean, std = _standardise(matrix, rows[~held])
    torch.manual_seed(settings.seed)
    model = nn.Sequential(nn.Linear(matrix.shape[1], settings.hidden), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(settings.hidden, len(classes)))
    features = torch.from_numpy((np.asarray(matrix[rows], dtype=np.float32) - mean) / std)
    labels = torch.from_numpy(targets.astype(np.int64))
    train_idx = torch.from_numpy(np.flatnonzero(~held))
    started = time.perf_counter()
    _fit(model, features, labels, train_idx, settings)
    model.eval()
    with torch.no_grad():
        predicted = model(features[torch.from_numpy(np.flatnonzero(held))]).argmax(1).numpy()
    accuracy = float((predicted == targets[held]).mean()) if held.any() else float("nan")
    majority = float(np.bincount(targets[held]).max() / held.sum()) if held.any() else float("nan")
    _store(run, name, model[:2], matrix, mean, std, invalid, {
        "kind": "head", "backbone": backbone, "label": label, "classes": classes,
        "fingerprint": fingerprint("head", run.descriptor_meta(backbone).get("fingerprint"), label,
                                   settings.__dict__, table[label].astype(str).tolist()),
        "train_rows": int((~held).sum()), "holdout_rows": int(held.sum()),
        "holdout_accuracy": accuracy, "majority_accuracy": majority,
        "split": "by vehicle_id" if "vehicle_id" in table.columns else "random",
        "seconds": round(time.perf_counter() - started, 2), "settings": settings.__dict__,
    })
    return HeadResult(name, label, classes, int((~held).sum()), int(held.sum()), accuracy, majority)


def _fit(model, features, labels, train_idx, settings: HeadSettings) -> None:
    import torch

    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    counts = torch.bincount(labels[train_idx], minlength=int(labels.max()) + 1).float()
    loss_fn = torch.nn.CrossEntropyLoss(weight=counts.sum() / counts.clamp(min=1) / len(counts))
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    for _ in range(settings.epochs):
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for start in range(0, len(order), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            optimiser.zero_grad()
            loss_fn(model(features[batch]), labels[batch]).backward()
            optimiser.step()


def _store(run: RunFolder, name: str, penultimate, matrix: np.ndarray, mean, std,
           invalid: dict[int, str], meta: dict, chunk: int = 65536) -> None:
    """Penultimate activations of every row, chunk by chunk."""
    import torch

    out = np.zeros((matrix.shape[0], penultimate[0].out_features), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, matrix.shape[0], chunk):
            block = (np.asarray(matrix[start:start + chunk], dtype=np.float32) - mean) / std
            out[start:start + chunk] = penultimate(torch.from_numpy(block)).numpy()
    if invalid:
        out[list(invalid)] = 0.0
    run.save_descriptor(name, out, {"name": name, "shape": list(out.shape), "dtype": "float32",
                                    "invalid": {str(k): v for k, v in invalid.items()}, **meta})
