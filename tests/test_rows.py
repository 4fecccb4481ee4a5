"""Row names: one meaning per name (rows.py), the row a run records from its starting model."""

import json

import pytest

from mtft_nlp.models import multitask_metadata
from mtft_nlp.rows import ROW_GROUPS, ROW_ORDER, ROW_TITLES, ROWS, expand_rows, parse_row, row_for_start, row_name


def test_every_row_parses_back_and_has_an_order_and_a_title():
    for name in ROWS:
        row = parse_row(name)
        assert row_name(row.kind, row.variant) == name
        assert name in ROW_ORDER and name in ROW_TITLES
    assert len(set(ROWS)) == len(ROWS)


@pytest.mark.parametrize(
    "name, kind, variant, method",
    [
        ("pbft", "pbft", None, "prompt"),
        ("mt-zero-shot", "zero-shot", "all", "prompt"),
        ("mt-nodiv-pbft", "pbft", "nodiv", "prompt"),
        ("embed-adapt", "embed-adapt", None, "embedding"),
        ("mt-embed-ft", "embed-ft", "all", "embedding"),
        ("mt-sel-embed-zero-shot", "embed-zero-shot", "sel", "embedding"),
        ("setfit", "setfit", None, "setfit"),
    ],
)
def test_parse_row(name, kind, variant, method):
    row = parse_row(name)
    assert (row.kind, row.variant, row.method) == (kind, variant, method)


@pytest.mark.parametrize("bad", ["mt-setfit", "embed", "mt-sel-", "mt-foo-pbft", "sel-pbft", ""])
def test_unknown_rows_are_refused(bad):
    with pytest.raises(ValueError):
        parse_row(bad)


def test_groups_expand_in_order_without_duplicates():
    assert expand_rows(["all", "pbft"]) == list(ROW_GROUPS["all"])
    assert expand_rows("embedding")[:3] == ["embed-zero-shot", "embed-adapt", "embed-ft"]
    assert all(parse_row(r).method == "embedding" for r in expand_rows("embedding-ablations"))


def test_row_names_the_multitask_sources(tmp_path):
    assert row_for_start("zero-shot", multitask_metadata(str(tmp_path))) == "zero-shot"
    meta = tmp_path / "multitask_config.json"
    for selection, row in (
        (None, "mt-pbft"),
        ({"method": "selected"}, "mt-sel-pbft"),
        ({"method": "random"}, "mt-random-pbft"),
        ({"method": "no-consistency"}, "mt-nocon-pbft"),
        ({"method": "no-diversity"}, "mt-nodiv-pbft"),
    ):
        meta.write_text(json.dumps({"target": "CR", "selection": selection}))
        assert row_for_start("pbft", multitask_metadata(str(tmp_path))) == row
    meta.write_text(json.dumps({"target": "CR", "selection": {"method": "selected"}}))
    assert row_for_start("embed-adapt", multitask_metadata(str(tmp_path))) == "mt-sel-embed-adapt"
