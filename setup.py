"""Build hook for the one thing pyproject.toml cannot say: the wheel carries the
repository's top-level ``templates/`` and ``migrations/`` folders as package data of
``digest`` (``digest/templates``, ``digest/migrations`` once installed), so the
repository layout stays as it is and ``pip install .`` works outside the checkout.
:func:`digest.core.resources.resource_dir` finds them in either place.

Everything else about the distribution is in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
#: top-level data folder -> the package it becomes inside the wheel
DATA_FOLDERS = {"templates": "digest.templates", "migrations": "digest.migrations"}


def _data_packages() -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    package_data: dict[str, list[str]] = {}
    for folder, package in DATA_FOLDERS.items():
        package_dir[package] = folder
        for sub in sorted(p for p in (ROOT / folder).rglob("*") if p.is_dir()):
            if sub.name == "__pycache__":
                continue
            packages.append(".".join([package, *sub.relative_to(ROOT / folder).parts]))
        packages.append(package)
    for name in packages:
        package_data[name] = ["*"]
    return sorted(packages), package_dir, package_data


_packages, _package_dir, _package_data = _data_packages()

setup(
    packages=find_packages(include=["digest", "digest.*", "subscribers", "subscribers.*"])
    + _packages,
    package_dir=_package_dir,
    package_data={
        "digest": ["sample/*", "py.typed", "console/static/*", "web/static/*"],
        **_package_data,
    },
)
