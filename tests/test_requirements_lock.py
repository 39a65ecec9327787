"""requirements.lock: every range of requirements.txt pinned inside that range, every pin but
torch's checked by hash, and this environment holding the locked versions (the stored chapter
outputs were made with them; scripts/setup.sh installs them)."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = (ROOT / "requirements.lock").read_text()
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)", re.M)


def _ranges() -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _pins() -> dict[str, str]:
    """Locked versions by canonical name; torch from its by-version line."""
    pins = {canonicalize_name(name): version for name, version in PIN.findall(LOCK)}
    torch = re.search(r"^# torch==(\S+) is locked by version only", LOCK, re.M)
    assert torch, "requirements.lock lacks its '# torch==VERSION is locked by version only' line (scripts/lock.sh)"
    return {**pins, "torch": torch.group(1)}


def test_every_range_is_pinned_inside_it():
    pins = _pins()
    for requirement in _ranges():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements.lock does not pin {requirement.name}: run bash scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {name}=={pins[name]}, outside requirements.txt's {requirement}"


def test_every_pin_but_torch_has_hashes():
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK)
    pinned = [block for block in blocks if PIN.match(block)]
    assert len(pinned) == len(_pins()) - 1
    unhashed = [PIN.match(block).group(1) for block in pinned if "--hash=sha256:" not in block]
    assert not re.search(r"^torch==", LOCK, re.M), "torch must be installed by version only, not by hash"
    assert not unhashed, f"pins without a hash: {unhashed}"


def test_this_environment_holds_the_locked_versions():
    """Where this fails, the environment is not the one scripts/setup.sh makes: run it again."""
    differ = {}
    for name, version in _pins().items():
        installed = Version(metadata.version(name))
        if installed.public != Version(version).public:  # torch 2.13.0+cpu is torch==2.13.0
            differ[name] = f"{installed} installed, {version} locked"
    assert not differ, differ
