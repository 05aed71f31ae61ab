"""The README's settings table is the one generated from the settings class."""

from __future__ import annotations

from pathlib import Path

from crmstream.streams.settings import Settings
from crmstream.streams.tools.config_reference import current_block, reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_settings_reference_is_up_to_date():
    block = current_block(README.read_text(encoding="utf-8"))
    assert block is not None, "README.md lost its settings reference markers"
    assert block == reference(), "README.md is stale: run `make config-reference`"


def test_every_setting_has_a_row_with_its_variable_default_and_meaning():
    rows = [line for line in reference().splitlines() if line.startswith("| `CRM_")]
    assert len(rows) == len(Settings.model_fields)
    for (name, field), row in zip(Settings.model_fields.items(), rows, strict=True):
        variable, kind, default, meaning = (cell.strip() for cell in row.strip("|").split(" | "))
        assert variable == f"`CRM_{name.upper()}`"
        assert kind and default
        assert field.description, f"{name} has no docstring"
        assert f"``CRM_{name.upper()}``" in field.description, f"{name}: docstring names another"
        assert len(meaning) > 10 and not meaning.startswith("`CRM_"), row
    secret = next(row for row in rows if row.startswith("| `CRM_API_TOKEN`"))
    assert "| secret | (empty) |" in secret


def test_the_readme_shows_the_redis_acl_rule_the_code_grants():
    from crmstream.streams.redis_acl import acl_rule

    rule = "user crmstream " + " ".join(acl_rule("#<sha256 of the password>"))
    assert rule in README.read_text(encoding="utf-8").splitlines()
