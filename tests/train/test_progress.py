"""The labelling line: per-rule counts that overlap say so, so they never read as a sum."""

from __future__ import annotations

from rich.console import Console

from kist_train.progress import print_labels


def test_the_labels_line_says_its_per_rule_counts_overlap():
    # The case the wording is for: 8 + 14 rule firings on 15 regions.
    console = Console(record=True, width=400)
    labels = {
        "images": 6,
        "images_labelled": 2,
        "pixels_labelled": 132,
        "regions": 1296,
        "regions_fired": 15,
        "fired_per_rule": {"dark_blob": 8, "dark_patch": 14},
        "interior": {"pixels": 41, "precision": 0.9, "recall": 0.25},
    }
    print_labels(console, 1, {"mu_e": 0.007, "sigma_e": 0.0117, "labels": labels, "frozen": True})
    text = console.export_text().strip()
    fired = "regions fired 15/1296 (by rule, a region may fire several: dark_blob 8, dark_patch 14)"
    assert fired in text
    assert "interior 41 px (precision 90" in text and text.endswith("[frozen]")
