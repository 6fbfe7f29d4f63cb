"""pyproject.toml's ranges and constraints.txt's exact set agree: every tested version lies in
its range, so that make install (which takes the set) installs a caitool pip would accept."""

from __future__ import annotations

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers import ROOT


def pinned() -> dict[str, Version]:
    versions = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: '{line}' is not NAME==VERSION"
            versions[canonicalize_name(name)] = Version(version)
    return versions


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [spec for name, specs in project["optional-dependencies"].items()
              if name != "vllm"  # its own venv: make install-vllm
              for spec in specs]
    return [Requirement(spec) for spec in project["dependencies"] + extras]


def test_the_tested_set_lies_in_the_declared_ranges():
    versions = pinned()
    outside = [f"{req.name} {versions[canonicalize_name(req.name)]} not in '{req.specifier}'"
               for req in declared()
               if not req.specifier.contains(versions[canonicalize_name(req.name)], prereleases=True)]
    assert not outside
    missing = [req.name for req in declared() if canonicalize_name(req.name) not in versions]
    assert not missing, f"constraints.txt pins none of {missing}"


def test_the_ranges_have_floors_and_caps():
    # scripts/check-ranges.sh installs each floor; a range without a cap lets any future
    # release in untested.
    for req in declared():
        operators = {spec.operator for spec in req.specifier}
        assert operators & {">=", "=="} and operators & {"<", "=="}, f"{req}: no floor or cap"


def test_the_range_takes_common_cuda_torch_builds():
    # A CUDA torch already installed stays: the range holds the current releases.
    torch = next(req for req in declared() if req.name == "torch")
    assert all(torch.specifier.contains(v) for v in ("2.12.1", "2.13.0", "2.14.1", "2.15.0"))
