"""Shared fixtures of the report tests: a tiny KIST run and its control, with hostile names.

The rulebook's name and a comment, the KIST run's folder and one test image's
file name carry markup that would run a script or load an image if the page
ever let it through; the browser test would see it as a console error.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.train import synthetic as syn

HOSTILE_RULEBOOK = (
    "rulebook \"<script>console.error('rulebook name')</script>\"\n"
    "# </pre><script>console.error('rulebook comment')</script>"
    "<img src=x onerror=\"console.error('onerror')\"> & &amp; <!--\n" + syn.BLOB_RULEBOOK
)
HOSTILE_RUN = "kist<script>console.error('run dir')</script>"
HOSTILE_IMAGE = "<b onclick=alert(1)>d000"  # a test image (and its mask) renamed to this


@dataclass(frozen=True)
class TinyRuns:
    data: Path
    rulebook: Path
    kist: Path
    control: Path


@pytest.fixture(scope="package")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> TinyRuns:
    from rich.console import Console

    from kist_train.engine import train

    quiet = Console(quiet=True)
    root = tmp_path_factory.mktemp("report")
    data = syn.make_dataset(root / "data", n_good=8, n_anomalous=2, n_test_defect=4)
    shutil.move(
        data / "test" / "blob" / "d000.png", data / "test" / "blob" / f"{HOSTILE_IMAGE}.png"
    )
    shutil.move(
        data / "ground_truth" / "blob" / "d000_mask.png",
        data / "ground_truth" / "blob" / f"{HOSTILE_IMAGE}_mask.png",
    )
    rulebook = syn.write_rulebook(root / "hostile.rules", HOSTILE_RULEBOOK)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only waits on a shared machine
    try:
        control = train(
            syn.tiny_config((data, rulebook), root / "control", baseline=True),
            console=quiet,
            progress=False,
        )
        kist = train(
            syn.tiny_config((data, rulebook), root / HOSTILE_RUN, init_from=str(control)),
            console=quiet,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return TinyRuns(data, rulebook, kist, control)
