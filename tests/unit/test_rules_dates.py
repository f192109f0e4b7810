"""An impossible date in a rule file is a load error naming file:line, not a crash."""
import shutil
from pathlib import Path

import pytest

from daemon.errors import RulesError
from daemon.rules.loader import load_rules

RULES = Path(__file__).resolve().parents[2] / "rules"


def test_impossible_date_names_file_and_line(tmp_path):
    for f in RULES.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    text = (tmp_path / "routing.yaml").read_text()
    assert "holidays: [2026-12-25" in text
    (tmp_path / "routing.yaml").write_text(text.replace("holidays: [2026-12-25", "holidays: [2026-02-30"))
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "holidays: [" in l)
    with pytest.raises(RulesError) as err:
        load_rules(tmp_path)
    assert err.value.problems == [f"{tmp_path / 'routing.yaml'}:{line}: 2026-02-30 is not a real date: "
                                  "day is out of range for month"]
