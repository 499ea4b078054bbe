"""Pseudo-labels, eq. (9)-(12): THE one implementation.

Training, `kistrules audit` and `kistrules explain --model/--residual` all call
`label_regions`, so what an expert audits is exactly what the model was trained
on. It needs only regions and a scorer: the measurement is vectorised over
images and thresholds (kistrules.regions), the grading is the compiled rulebook
(kistrules.compiler) run once on all regions. The figures logged per training
iteration are kist_train.pseudo_labels'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kistrules.ast import ANY_CLASS
from kistrules.regions import eq9_thresholds, measure_regions, pseudo_label_mask


@dataclass(frozen=True)
class PseudoLabels:
    """One labelling of a batch of anomalous images.

    table: every 8-connected region of residual > t, for every t of eq. (9).
    trace: the scorer's ScoreTrace for those regions (grade, rules, winner, fired, ...);
        with declared classes, `trace.classes` grades each class and a labelled
        region's class is `trace.winner_class` (the winning rule's conclusion).
    mask: (B, H, W) bool, eq. (12): union of the regions with grade >= alpha.
    thresholds: (T,) float64, eq. (9).
    residuals: (B, H, W) the e(x) the regions were cut from (a pixel's own residual,
        for a floor under the labels: kist_train.pseudo_labels.trusted_labels).
    """

    table: Any
    trace: Any
    mask: torch.Tensor
    thresholds: np.ndarray
    residuals: torch.Tensor | None = None


def label_regions(
    images: torch.Tensor,
    residuals: torch.Tensor,
    scorer: Any,
    *,
    mu: float,
    sigma: float,
    s: float = 0.3,
    original_sizes: Sequence[tuple[int, int]] | None = None,
) -> PseudoLabels:
    """Pseudo-label anomalous images from their residual maps.

    Args:
        images: (B, H, W) gray values 0-255 on the grid of the residuals.
        residuals: (B, H, W) e(x) = (G(x) - x)^2.
        scorer: a compiled rulebook (kistrules.compiler.Scorer).
        mu, sigma: residual statistics of the normal training pixels (eq. 9).
        s: threshold step in sigmas (eq. 9).
        original_sizes: (H, W) of each image before resizing, for `pixels`.

    Returns:
        PseudoLabels with the mask on the residuals' device.
    """
    if images.shape != residuals.shape or images.dim() != 3:
        raise ValueError(
            f"images {tuple(images.shape)} and residuals {tuple(residuals.shape)} "
            "must both be (B, H, W)"
        )
    table, thresholds = residual_regions(
        images,
        residuals,
        mu=mu,
        sigma=sigma,
        s=s,
        properties=scorer.properties,
        original_sizes=original_sizes,
    )
    trace = scorer(table, trace=True)
    mask = torch.as_tensor(pseudo_label_mask(table, trace.fired)).to(
        device=residuals.device, dtype=torch.bool
    )
    return PseudoLabels(
        table=table, trace=trace, mask=mask, thresholds=thresholds, residuals=residuals
    )


def residual_regions(
    images: torch.Tensor,
    residuals: torch.Tensor,
    *,
    mu: float,
    sigma: float,
    s: float = 0.3,
    properties: Sequence[str] | None = None,
    original_sizes: Sequence[tuple[int, int]] | None = None,
) -> tuple[Any, np.ndarray]:
    """Eq. 9-10 without the grading: the regions of every threshold, measured, and the
    thresholds. `label_regions` grades them; `kistrules tune` grades them many times.
    `properties`: what to measure (None: every property)."""
    thresholds = np.asarray(eq9_thresholds(float(mu), float(sigma), s), dtype=np.float64)
    table = measure_regions(
        images,
        residuals,
        thresholds,
        properties=None if properties is None else list(properties),
        original_sizes=original_sizes,
    )
    return table, thresholds


def rule_masks(labels: PseudoLabels, scorer: Any) -> list[torch.Tensor]:
    """Per rule, the (B, H, W) union of regions whose output of that rule reaches alpha.

    The overall mask is the union of these (grade = max over rules).
    """
    rules = torch.as_tensor(labels.trace.rules)
    out = []
    for index in range(rules.shape[1] if rules.dim() == 2 else 0):
        fired = (rules[:, index] >= float(scorer.threshold)).cpu()
        out.append(torch.as_tensor(pseudo_label_mask(labels.table, fired)).to(torch.bool))
    return out


def region_classes(labels: PseudoLabels, scorer: Any) -> list[str | None]:
    """The class of each region: its winning rule's conclusion when labelled, else None."""
    fired = torch.as_tensor(labels.trace.fired).cpu().tolist()
    winner = torch.as_tensor(labels.trace.winner).cpu().tolist()
    return [scorer.rule_classes[w] if f else None for f, w in zip(fired, winner, strict=True)]


def class_masks(labels: PseudoLabels, scorer: Any) -> dict[str, torch.Tensor]:
    """Per class, the (B, H, W) union of the labelled regions of that class.

    A labelled region has one class, its winning rule's conclusion, so the
    masks together cover the overall mask; they may overlap where regions of
    different thresholds nest. Declared classes come in declaration order, then
    `anomalous` when some rule concludes it (its regions have no named class).
    """
    fired = torch.as_tensor(labels.trace.fired).cpu()
    which = torch.as_tensor(labels.trace.winner_class).cpu()
    names = list(scorer.class_names)
    codes = list(range(len(names)))
    if ANY_CLASS in scorer.rule_classes:
        names.append(ANY_CLASS)
        codes.append(-1)
    return {
        name: torch.as_tensor(pseudo_label_mask(labels.table, fired & (which == code))).to(
            torch.bool
        )
        for name, code in zip(names, codes, strict=True)
    }
