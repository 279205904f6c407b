"""Every key of the shipped settings is read by the package: no dead knobs.

A key that no code reads looks like a setting a user can change and silently does nothing (issue
13: "dead keys go"). The truth here is the package's own source text: each key of
``configs/settings.yaml`` (its sections and their entries) and of ``configs/layouts.yaml`` must
appear in some module of ``mri_scoring`` as a quoted string. The wrong answer this guards against:
a key left behind after the code stopped reading it (``bids_derivatives_glob`` was one).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import mri_scoring

PACKAGE = Path(mri_scoring.__file__).parent
CONFIGS = PACKAGE.parent / "configs"


def _package_strings() -> set[str]:
    """Every quoted identifier-like string in the package's source."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        found.update(re.findall(r"[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']", path.read_text()))
    return found


def _keys(name: str) -> list[str]:
    data = yaml.safe_load((CONFIGS / name).read_text())
    keys = []
    for section, body in data.items():
        keys.append(str(section))
        if isinstance(body, dict) and all(isinstance(k, str) for k in body):
            keys.extend(f"{section}.{key}" for key in body)
    return keys


@pytest.mark.parametrize("name", ["settings.yaml", "layouts.yaml"])
def test_every_setting_is_read_by_the_code(name: str) -> None:
    strings = _package_strings()
    dead = [key for key in _keys(name) if key.rsplit(".", 1)[-1] not in strings]
    assert not dead, f"{name}: keys no module of mri_scoring reads: {dead}"


def test_the_check_finds_a_dead_key(tmp_path: Path) -> None:
    """The check itself can fail: a key no code names is reported."""
    strings = _package_strings()
    assert "stir_min_ratio" in strings
    assert "a_knob_nobody_reads" not in strings
