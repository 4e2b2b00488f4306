"""docs/architecture.md says what the house looks like; these tests hold it to the tree
and to the import-linter contracts in pyproject.toml (which `make lint` runs)."""

from __future__ import annotations

import re
import tomllib

from store_support import REPO

PAGE = REPO / "docs" / "architecture.md"


def _tree() -> list[str]:
    """The packages the page's tree lists, top to bottom, as dotted names."""
    text = PAGE.read_text(encoding="utf-8")
    block = text.split("## The tree", 1)[1].split("```", 2)[1]
    names = []
    for line in block.splitlines():
        match = re.match(r"^((?:digest|subscribers)[\w/]*)/\s", line)
        if match:
            names.append(match.group(1).replace("/", "."))
    return names


def _layers() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in layer.split("|")]


def test_the_tree_is_every_package_in_the_order_of_the_layers() -> None:
    packages = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "digest").glob("*/__init__.py")
        if init.parent.name not in ("templates", "migrations")
    } | {"subscribers"}
    layers = [name for name in _layers() if name != "digest.exceptions"]
    assert set(_tree()) == packages == set(layers)
    assert _tree() == layers


def test_digest_holds_only_its_version_and_the_error_tree() -> None:
    assert sorted(p.name for p in (REPO / "digest").glob("*.py")) == [
        "__init__.py",
        "exceptions.py",
    ]


def test_every_path_the_page_names_exists() -> None:
    text = PAGE.read_text(encoding="utf-8")
    current = []
    for line in text.splitlines():
        if line.startswith("| `") and "|" in line[1:]:
            line = line.split("|")[2]  # a "Before | Now" row: only "Now" must exist
        current.extend(re.findall(r"\b((?:digest|subscribers)/[\w/]+\.py)\b", line))
    assert current
    missing = sorted({path for path in current if not (REPO / path).is_file()})
    assert not missing
