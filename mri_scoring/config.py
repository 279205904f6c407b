"""Settings and knowledge files under ``configs/``: locating, safe loading, merging, hashing.

``configs/`` sits at the top of the source tree and is shipped inside the wheel as
``mri_scoring/configs``; :func:`config_dir` finds whichever exists.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = [
    "Settings",
    "config_dir",
    "configs_sha256",
    "load_config_file",
    "load_settings",
    "load_yaml",
    "sample_data_dir",
]

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"cannot find the '{name}' folder beside or inside {_PACKAGE_DIR}")


def config_dir() -> Path:
    """Folder holding the shipped configuration files (templates, thresholds, aliases)."""
    return _data_dir("configs")


def sample_data_dir() -> Path:
    """Folder holding the bundled sample studies."""
    return _data_dir("sample_data")


# libyaml's safe loader where PyYAML was built with it (about 10x faster: the shipped configs
# are read in every process), else the pure-Python one; both accept the same documents.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file with a safe loader; errors name the file and the position."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        loader = _SAFE_LOADER(text)  # what yaml.safe_load does, with the C loader
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None


@cache
def configs_sha256() -> str:
    """Hash of every shipped knowledge file under ``configs/`` (names and bytes).

    Anatomy, label schemes, norms and layouts change outputs as much as the settings do; a
    resumed batch compares this hash too (cached per process, as the files are).
    """
    digest = hashlib.sha256()
    root = config_dir()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def load_config_file(name: str) -> Any:
    """Load one shipped config file by name (cached; treat the result as read-only)."""
    return load_yaml(config_dir() / name)


def _merge(base: dict, override: dict, source: str, prefix: str = "") -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise ConfigError(f"{source}: unknown setting '{dotted}' (known here: {known})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{dotted}' must be a mapping, got {value!r}")
            merged[key] = _merge(base[key], value, source, dotted + ".")
        else:
            if isinstance(base[key], (int, float)) and not isinstance(base[key], bool):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{source}: '{dotted}' must be a number, got {value!r}")
            elif isinstance(base[key], list) and not isinstance(value, list):
                raise ConfigError(f"{source}: '{dotted}' must be a list, got {value!r}")
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Settings:
    """Measurement settings (``configs/settings.yaml`` merged with user overrides).

    Attributes
    ----------
    data : dict
        Nested settings, e.g. ``data["quantify"]["core_erosion_mm"]``.
    sources : tuple of str
        Files the settings came from, in merge order.
    """

    data: dict[str, Any]
    sources: tuple[str, ...] = field(default=())

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.data[section]

    def overridden(self, override: dict[str, Any], source: str) -> Settings:
        """These settings with ``override`` merged in (as a settings file would be).

        Examples
        --------
        >>> s = load_settings().overridden({"fat_scale": {"fat_reference": True}}, "flag")
        >>> s["fat_scale"]["fat_reference"], s.sources[-1]
        (True, 'flag')
        """
        return Settings(_merge(self.data, override, source), (*self.sources, source))

    @property
    def sha256(self) -> str:
        """Hash of the effective settings (canonical JSON), written to ``score.json``."""
        text = json.dumps(self.data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def load_settings(
    override: str | Path | dict | None = None, *, fat_reference: bool = False
) -> Settings:
    """Return the shipped settings, optionally merged with an override file or mapping.

    Parameters
    ----------
    override : path or dict, optional
        A YAML file (or mapping) with the structure of ``configs/settings.yaml``; only the keys it
        names change. Unknown keys and wrongly typed values are errors naming the file and key.
    fat_reference : bool
        ``--fat-reference``: set ``fat_scale.fat_reference`` after the override.
    """
    if fat_reference:
        flag = {"fat_scale": {"fat_reference": True}}
        return load_settings(override).overridden(flag, "--fat-reference")
    base = load_config_file("settings.yaml")
    sources = [str(config_dir() / "settings.yaml")]
    if override is None:
        return Settings(copy.deepcopy(base), tuple(sources))
    if isinstance(override, dict):
        data, source = override, "settings override"
    else:
        data, source = load_yaml(override), str(override)
        sources.append(source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    return Settings(_merge(base, data, source), tuple(sources))
