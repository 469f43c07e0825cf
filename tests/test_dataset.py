"""The dataset builder: row validation, de-duplication, splitting, and the processed data itself."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.config import REPO_ROOT, DataConfig, Settings
from model.preprocess import normalize
from train.dataset import (
    SPLITS,
    NearDuplicateIndex,
    assign_splits,
    build,
    check_built_with_negatives,
    dedupe_exact,
    iter_jsonl,
    jaccard,
    load_authored,
    load_split,
    ngrams,
    validate_row,
)

PROCESSED = REPO_ROOT / "data" / "processed"
AUTHORED = REPO_ROOT / "data" / "authored"


def good(**kw) -> dict:
    row = {"id": "r1", "text": "您好，请问是张先生吗", "labels": [], "speaker": "agent", "listener": "debtor"}
    row.update(kw)
    return row


# -- validation ---------------------------------------------------------------------------------
def test_validate_row_fills_defaults():
    row = validate_row({"id": "x1", "text": "你好", "labels": ["insult", "threat"]}, "f.jsonl:3")
    assert row == {
        "id": "x1", "text": "你好", "labels": ["threat", "insult"], "speaker": "agent", "listener": "unknown",
        "source": "unknown", "group": "x1", "notes": "",
    }  # fmt: skip
    assert validate_row(good(group="g7", source="written"), "w")["group"] == "g7"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (json.dumps(good(labels=["violence"])), "labels"),
        (json.dumps(good(labels="threat")), "labels"),
        (json.dumps({k: v for k, v in good().items() if k != "labels"}), "labels"),
        (json.dumps(good(text="")), "text"),
        (json.dumps(good(text="   ")), "text"),
        (json.dumps(good(text="\u200b")), "text"),
        (json.dumps(good(text=5)), "text"),
        (json.dumps(good(speaker="boss")), "speaker"),
        (json.dumps(good(listener="neighbour")), "listener"),
        (json.dumps(good(id="")), "id"),
        ('{"id": "r1", "text": "你好", "labels": [', "JSON"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_iter_jsonl_errors_name_file_line_and_field(tmp_path, line, field):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(good(id="ok1")) + "\n\n" + line + "\n", encoding="utf-8")
    items = list(iter_jsonl(path))
    assert isinstance(items[0], dict) and items[0]["id"] == "ok1"
    assert len(items) == 2 and isinstance(items[1], ValueError)
    msg = str(items[1])
    assert msg.startswith(f"{path}:3:"), msg  # blank line 2 skipped but counted
    assert field in msg


def test_load_authored_reports_every_bad_row(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        "\n".join(
            [
                json.dumps(good(id="a1")),
                json.dumps(good(id="a2", labels=["violence"])),
                "{broken",
                json.dumps(good(id="a4", speaker="boss")),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    (tmp_path / "b.jsonl").write_text(
        json.dumps(good(id="a1")) + "\n" + json.dumps(good(id="b2", listener="x")) + "\n", encoding="utf-8"
    )
    with pytest.raises(ValueError) as e:
        load_authored(tmp_path)
    msg = str(e.value)
    assert msg.startswith("5 invalid authored row(s)")
    for where in ("a.jsonl:2", "a.jsonl:3", "a.jsonl:4", "b.jsonl:2"):
        assert where in msg, where
    assert "'a1' also used" in msg


def test_load_authored_good_and_missing(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps(good(id="a1")) + "\n", encoding="utf-8")
    assert [r["id"] for r in load_authored(tmp_path)] == ["a1"]
    with pytest.raises(FileNotFoundError):
        load_authored(tmp_path / "nowhere")


def test_committed_authored_rows_are_valid():
    rows = load_authored(AUTHORED)
    assert len(rows) > 1000
    assert len({r["id"] for r in rows}) == len(rows)


def test_candidate_rows_are_valid_and_never_built():
    # data/candidates holds written rows that did not make a better model (data card): valid, so a
    # later round can move them into authored/, but no split may contain them while they sit there
    rows = load_authored(REPO_ROOT / "data" / "candidates")
    assert len({r["id"] for r in rows}) == len(rows) > 1000
    prefixes = tuple({r["id"].split("-")[0] + "-" for r in rows})
    built = [r["id"] for split in SPLITS for r in load_split(split, PROCESSED) if r["id"].startswith(prefixes)]
    assert not built, f"candidate rows in the processed splits: {built[:5]}"
    assert not set(prefixes) & {r["id"].split("-")[0] + "-" for r in load_authored(AUTHORED)}


# -- de-duplication -----------------------------------------------------------------------------
def test_dedupe_exact():
    rows = [
        {"id": "a", "text": "还钱"},
        {"id": "b", "text": "你好"},
        {"id": "c", "text": "還錢"},  # traditional: same normalised text as "a"
        {"id": "d", "text": " 你 好 "},
        {"id": "e", "text": "还钱!"},
    ]
    kept, dropped = dedupe_exact(rows)
    assert [r["id"] for r in kept] == ["a", "b", "e"]
    assert [(r["id"], r["duplicate_of"]) for r in dropped] == [("c", "a"), ("d", "b")]


def test_ngrams_and_jaccard():
    assert ngrams("你好") == frozenset({"你好"})
    assert ngrams("還錢了") == frozenset({"还钱了"})
    assert ngrams("abcd") == frozenset({"abc", "bcd"})
    assert jaccard(frozenset("ab"), frozenset("bc")) == pytest.approx(1 / 3)
    assert jaccard(frozenset(), frozenset()) == 1.0


GRAM = st.sampled_from([f"g{i}" for i in range(12)])
SETS = st.frozensets(GRAM, min_size=1, max_size=10)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SETS, min_size=1, max_size=25), st.lists(SETS, min_size=1, max_size=5), st.sampled_from(
    [0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0]
))  # fmt: skip
def test_near_duplicate_index_equals_brute_force(corpus, queries, threshold):
    index = NearDuplicateIndex(corpus)
    for q in [*queries, *corpus[:3]]:
        expected = {i for i, s in enumerate(corpus) if jaccard(q, s) >= threshold}
        found = index.find(q, threshold)
        assert len(found) == len(set(found))
        assert set(found) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet="还钱你好逾期单位的了", min_size=1, max_size=12), min_size=2, max_size=20))
def test_near_duplicate_index_on_text_ngrams(texts):
    sets = [ngrams(t) for t in texts]
    index = NearDuplicateIndex(sets)
    for q in sets:
        assert set(index.find(q, 0.8)) == {i for i, s in enumerate(sets) if jaccard(q, s) >= 0.8}


def test_near_duplicate_index_prefix_survives_float_rounding():
    a = frozenset(f"g{i}" for i in range(25))
    b = frozenset(f"g{i}" for i in range(14))
    assert jaccard(a, b) >= 0.56
    assert NearDuplicateIndex([b]).find(a, 0.56) == [0]


# -- splitting ----------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["written", "template", "cold", "swsr"])), max_size=80))
def test_assign_splits_keeps_groups_whole(spec):
    rows = [{"id": f"r{i}", "group": f"g{g}", "source": src} for i, (g, src) in enumerate(spec)]
    splits = assign_splits(rows, DataConfig())
    assert set(splits) == set(SPLITS)
    assert sorted(r["id"] for s in splits.values() for r in s) == sorted(r["id"] for r in rows)
    where: dict[str, set[str]] = {}
    for name, split_rows in splits.items():
        for r in split_rows:
            if r["source"] in ("cold", "swsr"):
                assert name == "train"
            else:
                where.setdefault(r["group"], set()).add(name)
    assert all(len(s) == 1 for s in where.values()), where
    assert assign_splits(rows, DataConfig()) == splits  # deterministic


def test_assign_splits_fractions_and_seed():
    rows = [{"id": f"r{i}", "group": f"g{i}", "source": "written"} for i in range(3000)]
    splits = assign_splits(rows, DataConfig())
    assert 0.12 < len(splits["test"]) / 3000 < 0.18
    assert 0.12 < len(splits["validation"]) / 3000 < 0.18
    other = assign_splits(rows, DataConfig(seed=14))
    assert [r["id"] for r in other["test"]] != [r["id"] for r in splits["test"]]


# -- the committed processed data ---------------------------------------------------------------
@pytest.fixture(scope="module")
def processed():
    if not all((PROCESSED / f"{s}.jsonl").exists() for s in SPLITS):
        pytest.skip("data/processed is not built (run `collectguard data build`)")
    rows = {s: load_split(s, PROCESSED) for s in SPLITS}
    texts = {s: {normalize(r["text"]) for r in rows[s]} for s in SPLITS}
    return rows, texts


def _leaks(texts, a, b):
    return sorted(texts[a] & texts[b])


def test_processed_has_every_split(processed):
    rows, _ = processed
    assert all(len(rows[s]) > 100 for s in SPLITS)
    assert len(rows["train"]) > len(rows["validation"]) + len(rows["test"])


@pytest.mark.parametrize(("held_out", "seen"), [("test", "validation"), ("test", "train"), ("validation", "train")])
def test_processed_no_held_out_text_in_an_earlier_split(processed, held_out, seen):
    _, texts = processed
    leaks = _leaks(texts, held_out, seen)
    assert not leaks, leaks


def test_processed_no_leak_among_unaugmented_rows(processed):
    rows, _ = processed
    train = {normalize(r["text"]) for r in rows["train"] if not r["source"].endswith("+aug")}
    for split in ("validation", "test"):
        assert not train & {normalize(r["text"]) for r in rows[split]}, split


def _check_groups_and_aug(rows):
    owner: dict[str, str] = {}
    for split in SPLITS:
        for r in rows[split]:
            assert owner.setdefault(r["group"], split) == split, f"group {r['group']} in {owner[r['group']]}, {split}"
    for split in ("validation", "test"):
        assert not [r["id"] for r in rows[split] if r["source"].endswith("+aug")], split
    aug = [r for r in rows["train"] if r["source"].endswith("+aug")]
    assert aug, "no augmented rows in train"
    train_groups = {r["group"] for r in rows["train"] if not r["source"].endswith("+aug")}
    assert {r["group"] for r in aug} <= train_groups


def test_processed_groups_in_one_split_and_augmentation_only_in_train(processed):
    rows, _ = processed
    _check_groups_and_aug(rows)


# -- a small build ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_builds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")
    authored = tmp / "authored"
    authored.mkdir()
    for f in sorted(AUTHORED.glob("*.jsonl"))[:2]:
        shutil.copy(f, authored / f.name)
    overrides = [f"data.authored_dir={authored}", "data.template_rows=60", "data.augment_copies=1"]
    outs = []
    for name in ("one", "two"):
        settings_ = Settings.load(overrides=[*overrides, f"data.out_dir={tmp / name}"])
        build(settings_, tmp / name)
        outs.append(tmp / name)
    return outs


def test_small_build_is_deterministic(small_builds):
    one, two = small_builds
    names = sorted(p.name for p in one.iterdir())
    assert {"train.jsonl", "validation.jsonl", "test.jsonl", "stats.json", "removed.jsonl"} <= set(names)
    assert names == sorted(p.name for p in two.iterdir())
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "removed.jsonl"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    s1, s2 = (json.loads((d / "stats.json").read_text()) for d in (one, two))
    assert s1["data_sha256"] == s2["data_sha256"]
    assert {k: v for k, v in s1.items() if k != "config"} == {k: v for k, v in s2.items() if k != "config"}


def test_small_build_rows_are_valid_and_split_by_group(small_builds):
    out = small_builds[0]
    rows = {s: load_split(s, out) for s in SPLITS}
    assert {r["source"] for r in rows["train"]} >= {"written", "template", "written+aug", "template+aug"}
    _check_groups_and_aug(rows)
    stats = json.loads((out / "stats.json").read_text())
    assert {s: stats[s]["rows"] for s in SPLITS} == {s: len(rows[s]) for s in SPLITS}


def test_training_refuses_a_build_without_the_real_negatives_its_config_asks_for(small_builds, tmp_path):
    built = small_builds[0]  # built without data.negatives_dir, as `collectguard data build` with no --config
    check_built_with_negatives(built, None)  # a config without real negatives: fine
    with pytest.raises(ValueError, match=r"built without real negatives.*data build --config"):
        check_built_with_negatives(built, tmp_path / "datasets")
    stats = json.loads((built / "stats.json").read_text())
    stats["config"]["negatives_dir"] = str(tmp_path / "datasets")
    fixed = tmp_path / "with_public"
    shutil.copytree(built, fixed)
    (fixed / "stats.json").write_text(json.dumps(stats))
    (fixed / "public.jsonl").write_text(json.dumps({"id": "cped:1:0", "text": "你好", "labels": []}) + "\n")
    check_built_with_negatives(fixed, tmp_path / "datasets")


def test_load_split_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="data build"):
        load_split("train", tmp_path)


def test_processed_splits_load_as_a_hugging_face_dataset_dict():
    from train.dataset import SPLITS, load_dataset_dict, load_split

    dd = load_dataset_dict()
    assert list(dd) == list(SPLITS)
    for split in SPLITS:
        rows = load_split(split)
        assert dd[split].num_rows == len(rows)
        assert dd[split][0]["text"] == rows[0]["text"]
