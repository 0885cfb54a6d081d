"""Packaging: a torch-free `import plmu`, one version, the licence, and a wheel that carries every config."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import plmu

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_import_plmu_does_not_import_torch():
    # plmu-train --help and shell completion import the package: they must not pay for torch (seconds).
    code = "import sys, plmu; assert 'torch' not in sys.modules, 'import plmu imported torch'; print(plmu.__version__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == plmu.__version__


def test_public_names_load_on_first_use():
    import plmu.layers
    from plmu import ParallelLMU

    assert ParallelLMU is plmu.layers.ParallelLMU
    assert plmu.__all__ == sorted(plmu.__all__)
    assert set(plmu.__all__) == set(plmu._SOURCES)
    for name in plmu.__all__:
        assert getattr(plmu, name).__name__ == name
        assert name in dir(plmu)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = plmu.no_such_name


def test_version_is_the_installed_distributions():
    try:
        installed = importlib.metadata.version("plmu")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("plmu is not installed (run `make install`)")
    assert plmu.__version__ == installed
    assert "version" in pyproject()["project"]["dynamic"]  # the one place it is written is plmu/__init__.py


def test_licence_file_and_pyproject_agree():
    project = pyproject()["project"]
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the plmu authors" in text
    assert "Permission is hereby granted, free of charge" in text


def test_packages_list_covers_every_python_package():
    # pyproject lists packages by hand (conf/ installs as plmu.conf): a new subpackage must be added there too.
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "plmu").rglob("__init__.py")}
    found = {name for name in found if "__pycache__" not in name}
    assert listed == found | {"plmu.conf"}


def test_wheel_has_every_config_and_no_setuptools_warnings(tmp_path):
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"building offline needs setuptools>=77 installed, found {setuptools.__version__}")
    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the work tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "plmu", src / "plmu", ignore=ignore)
    shutil.copytree(ROOT / "conf", src / "conf", ignore=ignore)
    (src / "conf" / "future_group").mkdir()  # a config group added later ships without touching pyproject
    (src / "conf" / "future_group" / "new.yaml").write_text("x: 1\n")

    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index", "-v"]
    result = subprocess.run([*cmd, "-w", str(tmp_path / "dist")], capture_output=True, text=True, env=env, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "absent from the `packages` configuration" not in log
    assert "SetuptoolsDeprecationWarning" not in log

    (wheel,) = (tmp_path / "dist").glob("plmu-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"plmu/conf/{p.relative_to(src / 'conf').as_posix()}" for p in (src / "conf").rglob("*.yaml")}
    assert len(configs) > 10 and "plmu/conf/future_group/new.yaml" in configs
    assert configs <= names, sorted(configs - names)
    assert {"plmu/__init__.py", "plmu/py.typed", "plmu/conf/__init__.py", "plmu/cli/train.py"} <= names
    assert f"plmu-{plmu.__version__}.dist-info/licenses/LICENSE" in names
