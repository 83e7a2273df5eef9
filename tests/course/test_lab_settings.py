"""The course's JupyterLab settings (jupyter/lab-overrides.json) are real settings.

JupyterLab ignores an override whose plugin or key it does not know, so a
typo would bring the news pop-up back without any error. Each entry is
checked against the schema the installed JupyterLab ships.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.course_cli import ROOT

OVERRIDES = ROOT / "jupyter" / "lab-overrides.json"
SCHEMAS = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"


def test_every_override_is_a_setting_of_the_installed_jupyterlab():
    overrides = json.loads(OVERRIDES.read_text())
    assert overrides, "no settings"
    for plugin, settings in overrides.items():
        package, name = plugin.split(":")
        schema = json.loads((SCHEMAS / package / f"{name}.json").read_text())
        for key, value in settings.items():
            assert key in schema["properties"], f"{plugin} has no setting {key!r}"
            allowed = [choice["const"] for choice in schema["properties"][key].get("oneOf", [])]
            assert not allowed or value in allowed, f"{plugin}:{key} must be one of {allowed}, not {value!r}"


def test_news_are_off():
    overrides = json.loads(OVERRIDES.read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"


def test_course_lab_and_binder_install_the_file():
    """Both ways JupyterLab starts copy it into the environment's overrides.d."""
    for script in (ROOT / "course", ROOT / "binder" / "postBuild"):
        text = script.read_text()
        assert "jupyter/lab-overrides.json" in text and "share/jupyter/lab/settings/overrides.d" in text, script
