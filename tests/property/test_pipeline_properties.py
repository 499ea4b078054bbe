"""Property tests of the whole labelling pipeline: measurement, scoring, pseudo-labels.

Hypothesis draws small images (1-24 px a side, any gray values, constant ones
included), residual maps around the eq. 9 thresholds and valid rulebooks
(tests/scorer/strategies.py), and runs them through `measure_regions`, the
compiled scorer and `kistrules.pseudo_labels.label_regions`, the code that
training uses. Whatever the input:

- no grade is NaN, every grade lies in [0, 1] and `fired` is `grade >= alpha`;
- the label mask has the images' shape and marks only pixels of some region,
  i.e. pixels whose residual exceeds the lowest eq. 9 threshold;
- pseudo-labels only grow when alpha decreases: the same rulebook recompiled
  with a lower threshold labels a superset, with the same grades.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from kistrules.ast import ThresholdDef
from kistrules.compiler import compile_rulebook
from kistrules.pseudo_labels import label_regions
from kistrules.regions import eq9_thresholds
from kistrules.resolve import resolve
from tests.scorer import strategies as S

ALPHAS = [i / 20 for i in range(21)]


@st.composite
def batches(draw):
    """(images (B, H, W) 0-255, residuals (B, H, W) >= 0, mu, sigma, original sizes)."""
    b = draw(st.integers(1, 3))
    h = draw(st.integers(1, 24))
    w = draw(st.integers(1, 24))
    shape = (b, h, w)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["noise", "constant", "binary", "extreme"]))
    if kind == "noise":
        images = rng.uniform(0.0, 255.0, shape)
    elif kind == "constant":
        images = np.full(shape, draw(st.sampled_from([0.0, 1.0, 127.5, 255.0])))
    elif kind == "binary":
        images = rng.choice([0.0, 255.0], size=shape)
    else:  # integer gray levels with long flat runs
        images = np.repeat(rng.integers(0, 256, (b, h, 1)), w, axis=2).astype(np.float64)

    mu = draw(st.sampled_from([0.0, 1e-4, 0.01, 0.05]))
    sigma = draw(st.sampled_from([1e-6, 0.002, 0.01, 0.1]))
    top = mu + 4.0 * sigma
    pattern = draw(st.sampled_from(["uniform", "zero", "constant_high", "blobs", "sparse"]))
    if pattern == "uniform":
        residuals = rng.uniform(0.0, top, shape)
    elif pattern == "zero":
        residuals = np.zeros(shape)
    elif pattern == "constant_high":
        residuals = np.full(shape, top)
    elif pattern == "sparse":
        residuals = np.where(rng.random(shape) < 0.1, top, 0.0)
    else:  # a few square blobs of graded height
        residuals = np.zeros(shape)
        for _ in range(int(rng.integers(1, 4))):
            i, y, x = rng.integers(0, b), rng.integers(0, h), rng.integers(0, w)
            size = int(rng.integers(1, max(2, min(h, w) // 2 + 1)))
            residuals[i, y : y + size, x : x + size] = rng.uniform(mu, top)
    sizes = None
    if draw(st.booleans()):  # pretend the images were resized from larger originals
        sizes = [(h * int(rng.integers(1, 5)), w * int(rng.integers(1, 5))) for _ in range(b)]
    return (
        torch.tensor(images, dtype=torch.float32),
        torch.tensor(residuals, dtype=torch.float32),
        mu,
        sigma,
        sizes,
    )


def with_threshold(book, alpha: float):
    """The same rulebook with its threshold statement replaced by `alpha`."""
    kept = tuple(s for s in book.statements if not isinstance(s, ThresholdDef))
    threshold = ThresholdDef(span=S.SPAN, value=S.number(alpha))
    return book.model_copy(update={"statements": (*kept, threshold)})


@settings(max_examples=40)
@given(book=S.rulebooks(max_rules=4), batch=batches(), alphas=st.lists(
    st.sampled_from(ALPHAS), min_size=2, max_size=2, unique=True
))  # fmt: skip
def test_pipeline_labels_are_finite_inside_and_monotone_in_alpha(book, batch, alphas):
    images, residuals, mu, sigma, sizes = batch
    low, high = sorted(alphas)
    strict = compile_rulebook(resolve(with_threshold(book, high)))
    lenient = compile_rulebook(resolve(with_threshold(book, low)))
    assert math.isclose(strict.threshold, high) and math.isclose(lenient.threshold, low)

    kwargs = {"mu": mu, "sigma": sigma, "s": 0.3, "original_sizes": sizes}
    tight = label_regions(images, residuals, strict, **kwargs)
    loose = label_regions(images, residuals, lenient, **kwargs)

    lowest = float(eq9_thresholds(mu, sigma, 0.3).min())
    for labels, alpha in ((tight, high), (loose, low)):
        grade = torch.as_tensor(labels.trace.grade)
        assert not torch.isnan(grade).any(), "a region got a NaN grade"
        assert ((grade >= 0) & (grade <= 1)).all()
        fired = torch.as_tensor(labels.trace.fired).bool()
        assert torch.equal(fired, grade >= alpha)
        mask = labels.mask
        assert mask.dtype == torch.bool and tuple(mask.shape) == tuple(images.shape)
        # Only pixels of some region (of any threshold), and those lie above the lowest one.
        in_region = (torch.as_tensor(labels.table.labels) > 0).any(dim=1)
        assert not (mask & ~in_region).any(), "a label outside every region"
        assert not (mask & ~(residuals.double() > lowest)).any()

    # Same regions, same grades: alpha only decides which regions fire.
    assert len(tight.table) == len(loose.table)
    torch.testing.assert_close(
        torch.as_tensor(tight.trace.grade), torch.as_tensor(loose.trace.grade)
    )
    assert not (tight.mask & ~loose.mask).any(), "lowering alpha removed a pseudo-label"
    event(f"regions fired: strict {bool(tight.mask.any())}, lenient {bool(loose.mask.any())}")


@settings(max_examples=25)
@given(book=S.rulebooks(max_rules=3), batch=batches())
def test_every_region_fires_at_alpha_zero_and_labels_all_region_pixels(book, batch):
    """alpha = 0: every region fires, so the mask is exactly the union of region pixels."""
    images, residuals, mu, sigma, sizes = batch
    scorer = compile_rulebook(resolve(with_threshold(book, 0.0)))
    labels = label_regions(images, residuals, scorer, mu=mu, sigma=sigma, original_sizes=sizes)
    assert torch.equal(labels.mask, (torch.as_tensor(labels.table.labels) > 0).any(dim=1))
    event(f"regions: {len(labels.table) > 0}")
