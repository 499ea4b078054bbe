"""Explain with a trained run: the regions its residual map gives, labelled as training does.

The language library explains a mask or a residual map (kistrules.explain);
reconstructing an image needs a trained model, so that part lives here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kistrules.explain import ExplainResult, explain_labels


def explain_model(
    scorer: Any, image: np.ndarray, run: Any, *, counterfactual: bool = True
) -> ExplainResult:
    """Reconstruct with a trained run and label its residual exactly as training does.

    The image is resized to the run's working size (as training resizes), the
    residual is e(x) there, and `label_regions` gets the gray image on that grid
    (0-255), the run's mu_e / sigma_e / s and the original size for `pixels`.
    """
    from kist_train.data import working_tensor
    from kist_train.residuals import label_residuals

    x = working_tensor([image], run.size, device=run.device)
    mu, sigma, s = run.mu_e, run.sigma_e, float(run.config.s)
    labels = label_residuals(
        run.model,
        x,
        scorer,
        mu=mu,
        sigma=sigma,
        s=s,
        original_sizes=[(int(image.shape[0]), int(image.shape[1]))],
        batch_size=1,
    )
    working = (x[0, 0] * 255.0).cpu().numpy()
    return explain_labels(
        "model", scorer, working, labels, counterfactual=counterfactual, mu=mu, sigma=sigma, s=s
    )
