"""Option types shared by the verbs of the ``mri-scoring`` command line (:mod:`.cli`).

Each is a typer ``Annotated`` alias or the enum behind one: the flag, its help text and its
choices, declared once and used by every verb that takes the option.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "ConfigOption",
    "DicomOutOption",
    "Engine",
    "FatRefOption",
    "LabelScheme",
    "LabelsOption",
    "MapsOption",
    "PanelOption",
    "ParticipantLabelOption",
    "Population",
    "PopulationOption",
    "PriorOption",
    "ReportOption",
    "ResampleOption",
    "ShardOption",
    "TemplateOption",
    "View",
    "ViewOption",
]


class LabelScheme(StrEnum):
    """Label schemes of ``--labels``."""

    auto = "auto"
    tsv = "tsv"
    musclemap = "musclemap"
    musclesense = "musclesense"
    totalsegmentator = "totalsegmentator"


class Engine(StrEnum):
    """Where ``batch`` runs the studies."""

    processes = "processes"
    dask = "dask"


TemplateOption = Annotated[
    str | None,
    typer.Option("--template", help="Template to fit: a name (configs/templates/NAME.yaml) or a "
                 "YAML file (default imnm_vs_dm)."),
]  # fmt: skip
PanelOption = Annotated[
    list[str] | None,
    typer.Option("--template", help="Template name or YAML file; repeat for a differential "
                 "panel, the first filling the main columns (default: imnm_vs_dm, "
                 "imnm_vs_dystrophy, imnm_vs_ass)."),
]  # fmt: skip
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Settings overrides (YAML).", dir_okay=False)
]
LabelsOption = Annotated[
    LabelScheme, typer.Option("--labels", help="Label scheme (tsv: a label table file).")
]
FatRefOption = Annotated[
    bool,
    typer.Option("--fat-reference", help="Add fat-referenced FF columns (*_fatref)."),
]
ResampleOption = Annotated[
    bool, typer.Option("--resample", help="Resample images onto the label grid.")
]
ReportOption = Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")]
MapsOption = Annotated[
    bool,
    typer.Option(
        "--maps",
        help="Write voxel maps (maps/{fat_fraction,core,edema,shell,"
        "fascial_edema}.nii.gz) on the label map's grid, for any viewer.",
    ),
]

DicomOutOption = Annotated[
    bool,
    typer.Option(
        "--dicom-out",
        help="Also write DICOM SEG, SR "
        "and FF map to OUT/<study>/dicom/ (needs convert --dicom-refs).",
    ),
]


class View(StrEnum):
    """Orientation of the report's slice panels."""

    radiological = "radiological"
    neurological = "neurological"


ViewOption = Annotated[
    View,
    typer.Option(
        "--view",
        help="Slice panels in the radiological view (patient's right on the "
        "viewer's left) or the neurological view.",
    ),
]
Population = StrEnum("Population", ["juvenile", "juvenile_asian", "adult"])  # --population
PopulationOption = Annotated[
    Population | None,
    typer.Option(
        "--population",
        help="Population prior for p_imnm_population only (default: study.json, "
        "else by age); p_imnm and the call keep the template prior.",
    ),
]
PriorOption = Annotated[
    float | None,
    typer.Option("--prior", min=0.001, max=0.999, help="Prior p(IMNM) (default: template's)."),
]
ShardOption = Annotated[
    str | None,
    typer.Option(
        help="Score shard I of N (I/N, e.g. $SLURM_ARRAY_TASK_ID/100): studies split by a hash "
        "of their subject; then run 'mri-scoring merge OUT'.",
    ),
]
ParticipantLabelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--participant-label",
        help="Score only this participant (BIDS label without sub-, or subject_id / folder "
        "name); repeatable.",
    ),
]
