"""The data card's Counts section is the output of ``python -m train.datacard``, so it cannot go stale."""

from model.config import REPO_ROOT
from train import datacard
from train.dataset import is_written, load_authored

CARD = (REPO_ROOT / "data" / "README.md").read_text(encoding="utf-8")


def test_counts_section_matches_the_data(capsys):
    datacard.main([])
    printed = capsys.readouterr().out.strip()
    summary, rest = printed.split("\n\n", 1)
    assert summary in CARD, "data/README.md: authored-row summary is stale; paste `python -m train.datacard`"
    for table in rest.split("\n\n"):
        assert table in CARD, f"data/README.md: stale counts block starting {table.splitlines()[0]!r}"


def test_summary_counts_every_written_row():
    rows = [r for r in load_authored(REPO_ROOT / "data" / "authored") if is_written(r)]
    assert f"{len(rows):,} —" in datacard.written_summary(rows, "a–s")


def test_writer_letters_show_gaps():
    # a writer left out of the corpus must not disappear inside a range
    assert datacard.letter_ranges(list("abcdefy")) == "a–f, y"
    assert datacard.letter_ranges(list("abcwyz")) == "a–c, w, y, z"
    assert datacard.letter_ranges(["a"]) == "a"
