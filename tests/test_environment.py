"""constraints.txt pins every dependency, and the environment the tests run in matches it.

The shipped reader model was fitted on evidence that spaCy parses and MiniLM embeds:
another version of that stack changes the evidence and so what every weight means,
without any error. These tests make such drift visible.
"""

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier  # exactly one "==" per package
        assert spec.operator == "==", line
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    # An extra that names the project itself ("dev" = article-qa[test]) pins nothing new.
    return [r for r in reqs if canonicalize_name(r.name) != canonicalize_name(project["name"])]


def test_every_declared_dependency_is_pinned_within_its_range():
    """Runtime dependencies and every extra (test, bench)."""
    pins = _pins()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}")


def test_installed_packages_match_the_pins():
    """`make install` installs exactly the pins; a difference means a hand-changed venv."""
    drift = []
    for name, pinned in _pins().items():
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            continue  # an extra this environment did not install
        # A local label (torch's "+cpu") names the build, not the version.
        if Version(installed.public) != pinned:
            drift.append(f"{name} {installed} (pinned {pinned})")
    assert not drift, ("installed versions differ from constraints.txt: " + ", ".join(drift)
                       + "; run `make install` in a fresh .venv")
