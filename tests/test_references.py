"""Every citation in configs/ resolves to configs/references.yaml, and nothing the package ships
points at files a user of the installed package never has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mri_scoring.config import config_dir

CONFIGS = config_dir()
PACKAGE = Path(__file__).resolve().parents[1] / "mri_scoring"
REFERENCES = yaml.safe_load((CONFIGS / "references.yaml").read_text(encoding="utf-8"))
KEY = re.compile(r"[a-z][a-z0-9_]*")
COMMENT_REF = re.compile(r"\[ref:\s*([^\]]*)\]")
ELICITED = "elicited"
YAML_FILES = sorted(p for p in CONFIGS.rglob("*.yaml") if p.name != "references.yaml")


def _leading_keys(text: str) -> list[str]:
    """The keys a ``source``/``ref`` value starts with (comma-separated, then free text)."""
    keys = []
    for token in re.split(r"\s*,\s*", text.strip()):
        word = re.match(r"[A-Za-z0-9_]+", token)
        if not word or KEY.fullmatch(word.group()) is None:
            break
        keys.append(word.group())
        if token[word.end() :].strip():  # free text follows this key
            break
    return keys


def _source_values(data, where: str):
    """(where, value) of every ``source``/``ref`` field in a YAML document."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("source", "ref"):
                for item in value if isinstance(value, list) else [value]:
                    yield f"{where}.{key}", str(item)
            else:
                yield from _source_values(value, f"{where}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _source_values(value, f"{where}[{i}]")


def test_every_reference_has_a_full_citation():
    for key, entry in REFERENCES.items():
        assert KEY.fullmatch(key), f"references.yaml: key {key!r} is not lower_case_with_digits"
        assert isinstance(entry, dict) and len(str(entry.get("citation", ""))) > 20, key
        assert "doi" in entry, f"references.yaml: {key} has no doi field (null if unknown)"
        doi = entry["doi"]
        assert doi is None or str(doi).startswith("10."), f"{key}: doi {doi!r} is not a DOI"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_comment_citations_resolve(path):
    """A ``[ref: key]`` in a comment that names no key of references.yaml is a dead citation."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for match in COMMENT_REF.finditer(line):
            keys = [k.strip() for k in match.group(1).split(",") if k.strip()]
            assert keys, f"{path.name}:{number}: empty [ref: ]"
            missing = [k for k in keys if k not in REFERENCES]
            assert not missing, f"{path.name}:{number}: unknown reference keys {missing}"


@pytest.mark.parametrize(
    "path",
    [p for p in YAML_FILES if "templates" not in p.parts],
    ids=lambda p: str(p.relative_to(CONFIGS)),
)
def test_source_fields_start_with_known_keys(path):
    """A ``source``/``ref`` field starts with references.yaml keys (or ``elicited``)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for where, value in _source_values(data, path.name):
        keys = _leading_keys(value)
        assert keys, f"{where}: {value[:60]!r} does not start with a reference key"
        missing = [k for k in keys if k != ELICITED and k not in REFERENCES]
        assert not missing, f"{where}: unknown reference keys {missing}"


def test_template_sources_name_only_known_keys():
    """Template sources (owned by the pattern room) may still be free text; any that start with
    key-like tokens must resolve, so a typo in a key is caught now."""
    for path in (p for p in YAML_FILES if "templates" in p.parts):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for where, value in _source_values(data, path.name):
            keys = [k for k in _leading_keys(value) if re.search(r"\d{4}", k)]
            missing = [k for k in keys if k not in REFERENCES]
            assert not missing, f"{where}: unknown reference keys {missing}"


AUTHOR_YEAR = re.compile(r"(?<![\w./-])[a-z][a-z_]*(?:19|20)\d\d[a-z]?(?![\w-])")


def _author_year_words(text: str) -> list[str]:
    """Words shaped like a citation key (``firstauthor2018``, ``ukbiobank_thigh2024``)."""
    return AUTHOR_YEAR.findall(text)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_author_year_key_anywhere_in_configs_resolves(path):
    """However a key is cited (a ``[ref: ]``, a ``source`` field, prose in a comment such as
    "(references.yaml: grimm2018)"), it must be in references.yaml: longitudinal.yaml once
    cited grimm2018 in prose only, a key references.yaml did not have, and the ``[ref: ]`` and
    ``source`` checks above did not see it."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        missing = [k for k in _author_year_words(line) if k not in REFERENCES]
        assert not missing, f"{path.name}:{number}: unknown reference keys {missing}"


def test_the_author_year_finder():
    assert _author_year_words("RMS CV (grimm2018); [ref: day2019]; t2map.nii.gz") == [
        "grimm2018", "day2019"
    ]  # fmt: skip
    assert _author_year_words("ukbiobank_thigh2024, x/a2019.yaml, 2018, v2018-1") == [
        "ukbiobank_thigh2024"
    ]  # fmt: skip


def test_the_leading_key_parser():
    assert _leading_keys("day2019, wang2023: pelvic muscles") == ["day2019", "wang2023"]
    assert _leading_keys("elicited: normal phantom shares") == ["elicited"]
    assert _leading_keys("Review §5.1 (ref 61)") == []


def test_nothing_shipped_points_at_the_shared_folder_or_the_design_notes():
    """Regression: sources once cited ../shared/literature.md and 'DESIGN §', which an installed
    package's user never has."""
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *CONFIGS.rglob("*.yaml")]:
        if "templates" in path.parts and path.suffix == ".yaml":
            continue  # the pattern room's template: checked by its own owner's tests
        text = path.read_text(encoding="utf-8")
        for pattern in ("shared/", "DESIGN §"):
            if pattern in text:
                offenders.append(f"{path.name}: {pattern}")
    assert not offenders, offenders
