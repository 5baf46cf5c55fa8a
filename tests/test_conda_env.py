"""envs/rgbpose.yaml builds from Snakemake's copy of it (no conda here: its steps are replayed).

Snakemake (deployment/conda.py) copies the env file to ``.snakemake/conda/<hash>.yaml`` and runs
``conda env create --file <that copy>``; conda's pip installer writes the pip entries to
``condaenv.<random>.requirements.txt`` in the copy's directory and runs ``pip install -U -r
<file> --exists-action=b`` from there.  Then Snakemake copies ``<env>.post-deploy.sh`` to
``<hash>.post-deploy.sh`` and runs it (with the shebang's interpreter) inside the new env.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from snakemake.sourcecache import LocalSourceFile

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / "envs" / "rgbpose.yaml"
REQUIREMENTS = ROOT / "envs" / "requirements.txt"
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[0-9][A-Za-z0-9.+!-]*$")


def runtime_pins() -> list[str]:
    """Requirement lines of envs/requirements.txt above its ``# dev / CI`` block."""
    pins = []
    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith("# dev / CI"):
            return pins
        if line.strip() and not line.startswith("#"):
            pins.append(line.strip())
    raise AssertionError("envs/requirements.txt has no '# dev / CI' block")


def snakemake_copy(tmp_path: Path) -> tuple[Path, Path | None]:
    """Copy the env file (and its post-deploy script, if Snakemake finds one) as Snakemake does."""
    content = ENV_FILE.read_bytes()
    deploy = LocalSourceFile(str(ENV_FILE)).replace_suffix([".yaml", ".yml"], ".post-deploy.sh")
    deploy_path = Path(deploy.get_path_or_uri(secret_free=True)) if deploy else None
    md5 = hashlib.md5(content, usedforsecurity=False)
    if deploy_path is not None and deploy_path.exists():
        md5.update(deploy_path.read_bytes())
    prefix = tmp_path / ".snakemake" / "conda" / md5.hexdigest()
    prefix.parent.mkdir(parents=True)
    shutil.copyfile(ENV_FILE, f"{prefix}.yaml")
    target_deploy = None
    if deploy_path is not None and deploy_path.exists():
        target_deploy = Path(f"{prefix}.post-deploy.sh")
        shutil.copyfile(deploy_path, target_deploy)
    return Path(f"{prefix}.yaml"), target_deploy


def pip_specs(env: dict) -> list[str]:
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    return [str(s) for s in pip]


def test_env_dependencies(tmp_path):
    copy, _ = snakemake_copy(tmp_path)
    env = yaml.safe_load(copy.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    plain = [d for d in env["dependencies"] if not isinstance(d, dict)]
    assert plain == ["python=3.11", "pip"]


def test_pip_section_is_self_contained_and_equals_runtime_requirements(tmp_path):
    copy, _ = snakemake_copy(tmp_path)
    specs = pip_specs(yaml.safe_load(copy.read_text()))
    for spec in specs:
        assert not spec.startswith("-"), spec  # no -r / -e / --option: pip flags
        assert "/" not in spec and "\\" not in spec and ".." not in spec, spec  # no path
        assert PIN.match(spec), f"{spec!r} is not a name==version pin"
    assert specs[0] == "torch==2.13.0"
    assert specs[1:] == runtime_pins()
    for dev in ("pytest", "ruff", "snakefmt"):
        assert not any(s.startswith(dev + "==") for s in specs)
    # the Makefile installs the same torch
    assert "pip install -q torch==2.13.0" in (ROOT / "Makefile").read_text()


def offline_pip_env() -> dict[str, str]:
    """No pip config, no index, no find-links: only what is installed can satisfy a pin."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def test_conda_pip_step_from_the_copied_file_is_satisfied_offline(tmp_path):
    copy, _ = snakemake_copy(tmp_path)
    specs = pip_specs(yaml.safe_load(copy.read_text()))
    workdir = copy.parent  # conda: dirname(abspath(--file)), the file written there, cwd there
    with tempfile.NamedTemporaryFile(
        "w", prefix="condaenv.", suffix=".requirements.txt", dir=workdir, delete=False
    ) as f:
        f.write("\n".join(specs))
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index"]
    cmd += ["-U", "-r", Path(f.name).name, "--exists-action=b"]
    res = subprocess.run(cmd, cwd=workdir, env=offline_pip_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Would install" not in res.stdout
    satisfied = [ln for ln in res.stdout.splitlines() if ln.startswith("Requirement already")]
    assert len(satisfied) == len(specs)


def test_conda_pip_step_check_fails_for_an_unsatisfied_pin(tmp_path):
    # the check above must be able to fail offline: a pin not installed here is not satisfiable
    (tmp_path / "r.txt").write_text("numpy==1.0.0\n")
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index"]
    cmd += ["-U", "-r", "r.txt"]
    res = subprocess.run(cmd, cwd=tmp_path, env=offline_pip_env(), capture_output=True, text=True)
    assert res.returncode != 0


def fake_python(tmp_path: Path, rc: int = 0) -> tuple[dict[str, str], Path]:
    """A PATH whose ``python`` records its arguments (the env's python after activation)."""
    bindir, log = tmp_path / "bin", tmp_path / "python-args.txt"
    bindir.mkdir()
    (bindir / "python").write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexit {rc}\n')
    (bindir / "python").chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}, log


def run_deploy(deploy: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the script as Snakemake's execute_deployment_script does: shebang interpreter or sh."""
    first = deploy.read_text().splitlines()[0]
    interpreter = first[2:].strip() if first.startswith("#!") else "sh"
    return subprocess.run(
        f"{interpreter} {deploy}", shell=True, env=env, capture_output=True, text=True
    )


def test_post_deploy_script_installs_mediapipe_without_deps(tmp_path):
    _, deploy = snakemake_copy(tmp_path)
    assert deploy is not None, "Snakemake finds no envs/rgbpose.post-deploy.sh"
    assert subprocess.run(["bash", "-n", str(deploy)]).returncode == 0
    env, log = fake_python(tmp_path)
    res = run_deploy(deploy, env)
    assert res.returncode == 0, res.stderr
    assert log.read_text().splitlines() == ["-m pip install --no-deps mediapipe==0.10.21"]
    # the same version as the Makefile's .venv and what the tests here run with
    assert "--no-deps mediapipe==0.10.21" in (ROOT / "Makefile").read_text()
    assert version("mediapipe") == "0.10.21"


def test_post_deploy_script_fails_when_pip_fails(tmp_path):
    _, deploy = snakemake_copy(tmp_path)
    env, _ = fake_python(tmp_path, rc=1)
    assert run_deploy(deploy, env).returncode != 0  # Snakemake then reports the env as broken


@pytest.mark.parametrize("name", ["rgbpose.yaml", "rgbpose.post-deploy.sh"])
def test_env_files_name_no_path_outside_themselves(name):
    text = (ROOT / "envs" / name).read_text()
    code = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert not any(".." in ln or "requirements.txt" in ln or "-e " in ln for ln in code)
