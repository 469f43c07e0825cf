"""The list of evaluation items quoted in writers' briefs: real ids, and really excluded."""

import json

from model.config import REPO_ROOT
from train.quoted import QUOTED_FILE, quoted_ids, unquoted_mask


def test_every_quoted_id_is_a_real_test_or_behaviour_item():
    test_ids = {json.loads(line)["id"] for line in (REPO_ROOT / "data/processed/test.jsonl").open(encoding="utf-8")}
    suite_ids = {json.loads(line)["id"] for line in (REPO_ROOT / "data/behaviour/suite.jsonl").open(encoding="utf-8")}
    assert quoted_ids("test") and quoted_ids("test") <= test_ids
    assert quoted_ids("behaviour") and quoted_ids("behaviour") <= suite_ids


def test_mask_drops_exactly_the_quoted_rows(tmp_path):
    listing = tmp_path / "quoted.json"
    listing.write_text(json.dumps({"test": ["b"], "behaviour": []}), encoding="utf-8")
    rows = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
    assert unquoted_mask(rows, "test", listing).tolist() == [True, False, True]
    assert unquoted_mask(rows, "behaviour", listing).all()
    assert unquoted_mask(rows, "test", tmp_path / "missing.json").all()  # no list: nothing excluded


def test_unknown_kind_names_the_file_and_the_kinds(tmp_path):
    listing = tmp_path / "quoted.json"
    listing.write_text(json.dumps({"test": []}), encoding="utf-8")
    try:
        quoted_ids("validation", listing)
    except KeyError as err:
        assert str(listing) in str(err) and "test" in str(err)
    else:
        raise AssertionError("expected a KeyError")
    assert QUOTED_FILE.name == "brief_quoted.json"
