"""Explain with a trained run: the regions its residual map gives, labelled as training does.

The language library explains a mask or a residual map (kistrules.explain);
reconstructing an image needs a trained model, so that part lives here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kistrules.explain import ExplainResult, explain_residual


def explain_model(
    scorer: Any, image: np.ndarray, run: Any, *, counterfactual: bool = True
) -> ExplainResult:
    """Reconstruct with a trained run and label its residual exactly as training does.

    The image is resized to the run's working size (as training resizes), the
    residual is e(x) there, and `label_regions` gets the gray image on that grid
    (0-255), the run's mu_e / sigma_e / s and the original size for `pixels`.
    """
    from kist_train.data import working_tensor
    from kist_train.predict import residual_maps

    residual = residual_maps(run, [image])[0]
    working = working_tensor([image], run.size, device=residual.device)[0, 0] * 255.0
    return explain_residual(
        scorer,
        working.cpu().numpy(),
        residual.cpu().numpy(),
        mu=run.mu_e,
        sigma=run.sigma_e,
        s=float(run.config.s),
        original_size=(int(image.shape[0]), int(image.shape[1])),
        counterfactual=counterfactual,
        source="model",
    )
