"""What tuning needs of the annotated images, measured once: regions, and pixels against masks.

A pseudo-label is the union of the fired regions over every threshold of eq.
9 (`kistrules.regions.pseudo_label_mask`). A pixel is labelled when any region
containing it fires, so pixels contained in the same regions are labelled
together: `LabelEvidence` groups them, one group per distinct set of
containing regions (at most one region per threshold: a *chain*), and keeps
each group's count of mask pixels (`positive`) and other pixels (`negative`)
at the resolution the labels are compared at. Scoring a candidate rulebook
then needs no pixel at all: a group is labelled when the largest grade on its
chain reaches alpha, and its pixels are added up (`label_counts`), for every
alpha at once from one sort.

The counts are the audit's (kist_train.audit) exactly: that the weights of a
grid pixel are the mask pixels it becomes after nearest upsampling is the
caller's part (kist_train.tune).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from kistrules.errors import DataError

# Elements of one (C, G, T) temporary when scoring candidates against the groups.
CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class LabelEvidence:
    """Regions of the annotated images and how their pixels meet the masks.

    properties: name -> (N,) raw property values of every region (all images and thresholds).
    region_image: (N,) int64, the image of each region.
    chains: (G, T) int64, per pixel group the regions containing its pixels (-1: none).
    positive, negative: (G,) float64, mask and non-mask pixels of each group.
    group_image: (G,) int64, the image of each group.
    image_positive: (I,) float64, all mask pixels of each image (labelled or not).
    defect_regions: (I,) int64, connected defect regions in each image's mask.
    images, defects: (I,) names (path under the data root) and defect types.
    """

    properties: dict[str, torch.Tensor]
    region_image: torch.Tensor
    chains: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    group_image: torch.Tensor
    image_positive: torch.Tensor
    defect_regions: torch.Tensor
    images: tuple[str, ...]
    defects: tuple[str, ...]

    @property
    def regions(self) -> int:
        return int(self.region_image.shape[0])

    @property
    def total_positive(self) -> float:
        return float(self.image_positive.sum())

    def subset(self, images: Sequence[int]) -> LabelEvidence:
        """The evidence of some images only (kept in their original order)."""
        keep_image = torch.zeros(len(self.images), dtype=torch.bool)
        keep_image[list(images)] = True
        new_image = torch.cumsum(keep_image.long(), 0) - 1
        keep_region = keep_image[self.region_image]
        new_region = torch.cumsum(keep_region.long(), 0) - 1
        keep_group = keep_image[self.group_image]
        chains = self.chains[keep_group]
        chains = torch.where(chains >= 0, new_region[chains.clamp(min=0)], -1)
        chosen = sorted(set(int(i) for i in images))
        return LabelEvidence(
            properties={k: v[keep_region] for k, v in self.properties.items()},
            region_image=new_image[self.region_image[keep_region]],
            chains=chains,
            positive=self.positive[keep_group],
            negative=self.negative[keep_group],
            group_image=new_image[self.group_image[keep_group]],
            image_positive=self.image_positive[keep_image],
            defect_regions=self.defect_regions[keep_image],
            images=tuple(self.images[i] for i in chosen),
            defects=tuple(self.defects[i] for i in chosen),
        )


def evidence_from_labels(
    labels: torch.Tensor,
    region_image: torch.Tensor,
    properties: dict[str, torch.Tensor],
    positive: torch.Tensor,
    negative: torch.Tensor,
    *,
    defect_regions: Sequence[int],
    images: Sequence[str],
    defects: Sequence[str],
) -> LabelEvidence:
    """Group the pixels of a batch by the regions that contain them.

    Args:
        labels: (B, T, H, W) a RegionTable's `labels`: 0, or the region's row + 1.
        region_image: (N,) the table's `image`.
        properties: the table's raw properties.
        positive, negative: (B, H, W) per working pixel, the mask and non-mask pixels it
            stands for where labels meet masks (1 / 0 on the grid; more at the original size).
        defect_regions, images, defects: per image of the batch.
    """
    b, t, h, w = labels.shape
    if positive.shape != (b, h, w) or negative.shape != (b, h, w):
        raise DataError(
            f"pixel weights must be {(b, h, w)}, got {tuple(positive.shape)} and "
            f"{tuple(negative.shape)}"
        )
    rows = labels.permute(0, 2, 3, 1).reshape(-1, t).long()
    inside = (rows > 0).any(1)
    chains, inverse = torch.unique(rows[inside], dim=0, return_inverse=True)
    chains = chains - 1
    groups = chains.shape[0]
    pos = torch.zeros(groups, dtype=torch.float64)
    neg = torch.zeros(groups, dtype=torch.float64)
    pos.index_add_(0, inverse, positive.reshape(-1)[inside].double())
    neg.index_add_(0, inverse, negative.reshape(-1)[inside].double())
    region_image = region_image.long().cpu()
    group_image = region_image[chains.amax(1)] if groups else torch.zeros(0, dtype=torch.long)
    return LabelEvidence(
        properties={k: v.cpu() for k, v in properties.items()},
        region_image=region_image,
        chains=chains,
        positive=pos,
        negative=neg,
        group_image=group_image,
        image_positive=positive.reshape(b, -1).double().sum(1),
        defect_regions=torch.as_tensor(list(defect_regions), dtype=torch.long),
        images=tuple(images),
        defects=tuple(defects),
    )


def concatenate(parts: Sequence[LabelEvidence]) -> LabelEvidence:
    """The evidence of several batches as one (regions and images renumbered)."""
    if not parts:
        raise DataError("no annotated images")
    depth = max(p.chains.shape[1] for p in parts)
    chains, region_image, group_image = [], [], []
    regions = images = 0
    for part in parts:
        padded = torch.full((part.chains.shape[0], depth), -1, dtype=torch.long)
        padded[:, : part.chains.shape[1]] = part.chains
        chains.append(torch.where(padded >= 0, padded + regions, -1))
        region_image.append(part.region_image + images)
        group_image.append(part.group_image + images)
        regions += part.regions
        images += len(part.images)
    first = parts[0]
    return replace(
        first,
        properties={k: torch.cat([p.properties[k] for p in parts]) for k in first.properties},
        region_image=torch.cat(region_image),
        chains=torch.cat(chains),
        positive=torch.cat([p.positive for p in parts]),
        negative=torch.cat([p.negative for p in parts]),
        group_image=torch.cat(group_image),
        image_positive=torch.cat([p.image_positive for p in parts]),
        defect_regions=torch.cat([p.defect_regions for p in parts]),
        images=tuple(name for p in parts for name in p.images),
        defects=tuple(name for p in parts for name in p.defects),
    )


def label_counts(
    evidence: LabelEvidence, grades: torch.Tensor, alphas: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled mask pixels (tp) and other pixels (fp), (C, A), for C grade vectors and A alphas.

    `grades` is (C, N) over the evidence's regions; a region fires at alpha when its
    grade >= alpha, compared in the grades' dtype as the scorer compares (alpha is
    rounded to it first). A group is labelled when the largest grade on its chain
    fires; tp and fp add up the labelled groups' pixels. One sort per candidate
    serves every alpha.
    """
    grades = torch.as_tensor(grades)
    alphas = torch.as_tensor(alphas, dtype=grades.dtype).reshape(-1)
    c = grades.shape[0]
    groups, depth = evidence.chains.shape
    tp = torch.zeros((c, len(alphas)), dtype=torch.float64)
    fp = torch.zeros_like(tp)
    if groups == 0:
        return tp, fp
    step = max(1, CHUNK_ELEMENTS // max(groups * depth, 1))
    bottom = torch.full((1, 1), float("-inf"), dtype=grades.dtype)
    for start in range(0, c, step):
        chunk = grades[start : start + step]
        padded = torch.cat([chunk, bottom.expand(chunk.shape[0], 1)], 1)  # index -1: -inf
        best = padded[:, evidence.chains].amax(-1)  # (c, G)
        ordered, order = torch.sort(best, dim=1)
        for weights, out in ((evidence.positive, tp), (evidence.negative, fp)):
            above = torch.flip(torch.cumsum(torch.flip(weights[order], (1,)), 1), (1,))
            above = torch.cat([above, above.new_zeros(above.shape[0], 1)], 1)
            first = torch.searchsorted(ordered, alphas.expand(ordered.shape[0], -1).contiguous())
            out[start : start + step] = above.gather(1, first)
    return tp, fp


def labelled_groups(evidence: LabelEvidence, fired: torch.Tensor) -> torch.Tensor:
    """(G, K) bool: the pixel groups labelled when the regions of each column of `fired`
    (N, K) bool fire (a group is labelled when any region of its chain fires)."""
    fired = fired.reshape(evidence.regions, -1)
    padded = torch.cat([fired, fired.new_zeros((1, fired.shape[1]))])  # index -1: never fires
    return padded[evidence.chains].any(1)


def union_counts(
    evidence: LabelEvidence, fired: torch.Tensor, *, skip: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) mask and non-mask pixels labelled by each column of `fired` (N, K) bool, as the
    audit counts them (union over thresholds); groups where `skip` (G,) is True are left
    out (already labelled)."""
    depth = max(evidence.chains.shape[1], 1)
    step = max(1, CHUNK_ELEMENTS // max(evidence.chains.shape[0] * depth, 1))
    pos, neg = [], []
    for start in range(0, fired.shape[1], step):
        groups = labelled_groups(evidence, fired[:, start : start + step]).double()
        if skip is not None:
            groups[skip] = 0.0
        pos.append(evidence.positive @ groups)
        neg.append(evidence.negative @ groups)
    if not pos:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    return torch.cat(pos), torch.cat(neg)


def region_weights(evidence: LabelEvidence) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) mask and non-mask pixels inside each region (each region's own overlap)."""
    pos = torch.zeros(evidence.regions, dtype=torch.float64)
    neg = torch.zeros_like(pos)
    for t in range(evidence.chains.shape[1]):
        column = evidence.chains[:, t]
        valid = column >= 0
        pos.index_add_(0, column[valid], evidence.positive[valid])
        neg.index_add_(0, column[valid], evidence.negative[valid])
    return pos, neg
