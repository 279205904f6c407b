"""The README's instructions work as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def _python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_readme_api_example_saved_as_a_script_scores_the_sample_studies(tmp_path):
    """Regression: the example (workers=2, no main guard) failed when run as a plain script:
    bootstrapping tracebacks, every study "worker process died", an empty table, exit 0."""
    [example] = [b for b in _python_blocks() if "score_batch" in b]
    assert 'if __name__ == "__main__":' in example, "the example must show the guard"
    script = tmp_path / "example.py"
    script.write_text(example, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "bootstrapping" not in done.stderr, done.stderr
    summary = pd.read_csv(tmp_path / "out" / "summary.tsv", sep="\t")
    assert len(summary) == 7 and summary["call"].notna().all(), summary  # the 7 samples
    assert pd.read_csv(tmp_path / "out" / "failures.tsv", sep="\t").empty


def test_readme_states_how_to_get_the_source_and_the_demo_output():
    """Regression: the install line only worked from inside a clone the README never asked
    for, and the demo's --out and what to open were undocumented."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    assert "git clone" in setup and "pip install ./mri_scoring" in setup
    assert "demo --out" in setup and "index.html" in setup


def test_the_package_imports_only_declared_dependencies():
    """Regression: cli.py imported click, which typer 0.29 no longer installs (it vendors it):
    a clean ``pip install`` then failed at start-up, hidden by a development environment that
    had click through another package."""
    import ast
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"].values()
    declared = [*project["dependencies"], *(d for extra in extras for d in extra)]
    names = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower().replace("-", "_") for d in declared}
    module_of = {"scikit_image": "skimage", "scikit_learn": "sklearn", "pyyaml": "yaml",
                 "pillow": "PIL"}  # fmt: skip
    allowed = {module_of.get(n, n) for n in names} | set(sys.stdlib_module_names) | {"mri_scoring"}
    unknown = set()
    for path in (REPO / "mri_scoring").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            unknown |= {f"{t} ({path.name})" for t in tops if t not in allowed}
    assert not unknown, f"imports of undeclared packages: {sorted(unknown)}"


def test_readme_follow_up_section_names_every_column_and_the_shipped_bands():
    """Issue 18: the README documents the follow-up columns, the bands and their sources. A
    column added to the table or a band changed in configs/ must show up there too."""
    from mri_scoring.output.longitudinal import FEATURE_COLUMNS, MUSCLE_COLUMNS, bands

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Follow-up over time") : text.index("## Speed and memory")]
    section = " ".join(section.split())  # line breaks fall anywhere
    missing = [c for c in (*MUSCLE_COLUMNS, *FEATURE_COLUMNS) if f"`{c}`" not in section]
    assert not missing, f"README follow-up section lacks columns {missing}"
    band = bands()
    for shown in (f"fat fraction ±{band['ff']:.2f}", f"volume ±{band['volume_relative']:.0%}",
                  f"edema fraction ±{band['edema_fraction']:.2f}",
                  f"p(IMNM) ±{band['p_imnm']:.2f}"):  # fmt: skip
        assert shown.replace("%", " %") in section, shown
    assert band["feature_degree"] == band["p_imnm"]  # "feature degree and p(IMNM) ±0.25"
    assert "Grimm et al. 2018" in section and "`configs/longitudinal.yaml`" in section


@pytest.mark.slow
def test_readme_names_every_file_a_batch_with_maps_writes(tmp_path):
    """Issue 17: muscles_long.tsv, features_long.tsv, the qc column and the --maps files were
    written but named nowhere in the README. Judged on what a batch of the sample studies with
    ``maps=True`` really writes, so a file added later must be documented too."""
    import mri_scoring as ms
    from mri_scoring.config import sample_data_dir

    out = tmp_path / "out"
    summary = ms.score_batch(sample_data_dir(), out, maps=True)
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## What comes out") : text.index("**Exit codes.**")]
    written = {p.name for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert {"muscles_long.tsv", "features_long.tsv", "fat_fraction.nii.gz"} <= written
    missing = sorted(name for name in written if f"`{name}`" not in section)
    assert not missing, f"README 'What comes out' does not name {missing}"
    assert "qc" in summary.columns and "`qc`" in section
    for option in ("--maps", "--view neurological"):
        assert option in section, option
