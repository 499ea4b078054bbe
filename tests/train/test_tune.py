"""`kistrules tune` on a trained tiny run: the evidence is the audit's, the output is safe."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from kist_train.audit import audit_scorer
from kist_train.data import load_dataset
from kist_train.engine import train
from kist_train.pseudo_labels import confusion, upsample_mask
from kist_train.tune import annotated_items, load_annotated, pixel_weights
from kistrules.api import diagnose, loads
from kistrules.cli import app
from kistrules.compiler import compile_rulebook
from kistrules.errors import DataError
from kistrules.formatter import format_source
from kistrules.resolve import resolve
from kistrules.tuning.parameters import structure
from kistrules.tuning.protocol import tune
from kistrules.tuning.search import Search
from tests.train import synthetic as syn

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    data = syn.make_dataset(
        root / "d", n_good=10, n_anomalous=4, n_test_defect=8, anomalous_masks=True
    )
    rules = syn.write_rulebook(root / "b.rules")
    config = syn.tiny_config((data, rules), root / "run", iterations=1)
    run_dir = train(config, console=Console(quiet=True), progress=False)
    return run_dir, data, rules


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "error" in lines[0] and fragment in lines[0], lines[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_weights_count_what_upsampling_makes_of_a_label(seed):
    rng = np.random.default_rng(seed)
    size = 12
    shape = tuple(rng.integers(5, 40, size=2))
    mask = rng.random(shape) < 0.3
    label = rng.random((size, size)) < 0.4
    positive, negative = pixel_weights(mask, size, grid=False)
    tp, fp, fn = confusion(upsample_mask(torch.as_tensor(label), shape), mask)
    assert positive[label].sum() == tp and negative[label].sum() == fp
    assert positive.sum() - positive[label].sum() == fn
    grid_pos, grid_neg = pixel_weights(mask, size, grid=True)
    assert set(np.unique(grid_pos + grid_neg)) == {1.0}


def test_annotated_items_match_masks_to_images(trained, tmp_path):
    _, data, _ = trained
    dataset = load_dataset(data)
    items = annotated_items(dataset, data / "ground_truth")
    assert {i.defect for i in items} == {"anomalous", "blob"}
    assert len(items) == 12
    assert all(i.mask().shape == i.shape for i in items)
    dealt = annotated_items(dataset, data / "ground_truth", limit=3)
    assert [i.defect for i in dealt] == ["anomalous", "blob", "anomalous"]
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(data / "ground_truth" / "blob" / "d001_mask.png", flat)
    (only,) = annotated_items(dataset, flat)
    assert only.path.name == "d001.png" and only.defect == "blob"
    shutil.copy(data / "ground_truth" / "blob" / "d001_mask.png", flat / "zz_mask.png")
    with pytest.raises(DataError, match=r"zz_mask\.png: matches no image"):
        annotated_items(dataset, flat)


def test_evidence_figures_are_the_audits(trained):
    run_dir, data, rules = trained
    book = loads(rules.read_text())
    annotated = load_annotated(
        run_dir, data, data / "ground_truth", properties=resolve(book).properties, device="cpu"
    )
    search = Search(book)
    figures = search.figures(annotated.evidence, search.original)
    scorer = compile_rulebook(resolve(book))
    report = audit_scorer(
        annotated.run, scorer, annotated.dataset, rulebook="b", text="", items=annotated.items
    )
    row = report.row("all")
    # the same float32 grades (tests/tuning/test_candidates.py), the same pixels
    assert (figures.tp, figures.fp, figures.positive) == (row.tp, row.fp, row.tp + row.fn)
    tuning = tune(book, annotated.evidence, folds=3)
    assert tuning.result.after.precision >= tuning.result.before.precision


def test_cli_tune_writes_a_clean_rulebook_of_the_same_structure(trained, tmp_path):
    run_dir, data, rules = trained
    out = tmp_path / "tuned.rules"
    args = ("tune", rules, "--model", run_dir, "--data", data, "--masks", data / "ground_truth")
    result = _invoke(*args, "--out", out, "--device", "cpu", "--folds", "3")
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# kistrules tune wrote this file (sha256 ")
    _, diagnostics = diagnose(text)
    original_diagnostics = diagnose(rules.read_text())[1]
    assert {d.code for d in diagnostics} <= {d.code for d in original_diagnostics}
    assert not [d for d in diagnostics if d.severity == "error"]
    assert format_source(text)[0] == text
    formatted_original = loads(format_source(rules.read_text())[0])
    assert structure(loads(text)) == structure(formatted_original)
    for needle in ("before:", "after:", "held out, tuned (3 folds)", "annotated images, tuned"):
        assert needle in result.stdout
    # an unchanged earlier output is replaced; an edited one is the expert's and is not
    again = _invoke(*args, "--out", out, "--device", "cpu", "--folds", "3")
    assert again.exit_code == 0, again.output
    out.write_text(out.read_text() + "# my note\n")
    _one_line_error(
        _invoke(*args, "--out", out, "--device", "cpu"),
        2,
        "not an earlier output of kistrules tune",
    )
    assert out.read_text().endswith("# my note\n")


def test_cli_tune_never_overwrites_its_rulebook(trained):
    run_dir, data, rules = trained
    before = rules.read_bytes()
    result = _invoke(
        "tune", rules, "--model", run_dir, "--data", data, "--masks", data / "ground_truth",
        "--out", rules, "--device", "cpu",
    )  # fmt: skip
    _one_line_error(result, 2, "never overwrites its inputs")
    assert rules.read_bytes() == before


def test_cli_tune_refuses_too_few_annotations(trained, tmp_path):
    run_dir, data, rules = trained
    masks = tmp_path / "two"
    masks.mkdir()
    for name in ("d000_mask.png", "d001_mask.png"):
        shutil.copy(data / "ground_truth" / "blob" / name, masks)
    result = _invoke(
        "tune", rules, "--model", run_dir, "--data", data, "--masks", masks,
        "--out", tmp_path / "t.rules", "--device", "cpu",
    )  # fmt: skip
    _one_line_error(result, 1, "too few")
    assert not (tmp_path / "t.rules").exists()


def test_cli_tune_bad_options_are_one_line(trained, tmp_path):
    run_dir, data, rules = trained
    base = ("tune", rules, "--model", run_dir, "--data", data, "--out", tmp_path / "t.rules")
    _one_line_error(_invoke(*base, "--masks", tmp_path / "none"), 1, "masks folder not found")
    _one_line_error(
        _invoke(*base, "--masks", data / "ground_truth", "--min-recall", "5"), 2, "--min-recall"
    )
    empty = tmp_path / "empty.rules"
    empty.write_text("if gray is low then anomalous\n")
    result = _invoke(
        "tune", empty, "--model", run_dir, "--data", data, "--masks", data / "ground_truth",
        "--out", tmp_path / "t.rules",
    )  # fmt: skip
    _one_line_error(result, 1, "nothing to tune")


def test_cli_suggest_prints_rules_and_writes_them_only_where_asked(trained, tmp_path):
    run_dir, data, rules = trained
    before = rules.read_bytes()
    out = tmp_path / "suggested.rules"
    result = _invoke(
        "suggest", "--model", run_dir, "--data", data, "--masks", data / "ground_truth",
        "--rulebook", rules, "--out", out, "--device", "cpu", "--folds", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert rules.read_bytes() == before  # never applied to the expert's rulebook
    assert "rule suggested_1:" in result.stdout and "held out (3 folds)" in result.stdout
    assert "your rulebook" in result.stdout
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# kistrules suggest wrote this file (sha256 ")
    book, diagnostics = diagnose(text)
    assert not [d for d in diagnostics if d.severity == "error"]
    assert book.rules and format_source(text)[0] == text
    base = ("suggest", "--model", run_dir, "--data", data, "--masks", data / "ground_truth")
    result = _invoke(*base, "--rulebook", rules, "--out", rules)
    _one_line_error(result, 2, "never overwrites its inputs")
