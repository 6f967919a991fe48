"""`.env.example` and `docs/configuration.md` stay in sync with the settings table."""

from __future__ import annotations

import re

from lookout.settings_docs import GENERATED
from shared.settings_env import env_name, load_settings, read_env_file, settings_fields
from tests.helpers import REPO


def test_generated_files_are_current() -> None:
    for relative, render in GENERATED.items():
        on_disk = (REPO / relative).read_text()
        assert on_disk == render(), f"{relative} is stale: run python -m lookout.settings_docs"


def test_env_example_names_every_variable_and_its_defaults_load(tmp_path: object) -> None:
    from pathlib import Path

    text = (REPO / ".env.example").read_text()
    for f in settings_fields():
        assert f"# {env_name(f)}=" in text
    # Uncommented, the example is a valid .env that yields the defaults (secrets left empty).
    env_file = Path(str(tmp_path)) / ".env"
    assignment = re.compile(r"^# [A-Z][A-Z0-9_]*=")
    env_file.write_text("\n".join(line[2:] for line in text.splitlines() if assignment.match(line)))
    values = read_env_file(env_file)
    assert set(values) == {env_name(f) for f in settings_fields()}
    assert load_settings({}, env_file=env_file) == load_settings({}, env_file=None)
