"""The sdist and the wheel (`python -m build`), and the wheel installed in a
fresh venv running the edge in a network namespace: what a user of
`pip install` or `pipx install` gets."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile

import sipwarden

from ..conftest import need
from .install import ROOT, Installed, clean_env
from .site import Site, first_line

# what the package reads at run time, beside its modules
PACKAGE_DATA = (
    "sipwarden/py.typed",
    "sipwarden/policy/pack/scanners.toml",
    "sipwarden/policy/pack/user_agents.toml",
    "sipwarden/logwatch/formats/asterisk.toml",
    "sipwarden/logwatch/formats/kamailio.toml",
    "sipwarden/logwatch/formats/README.md",
    "sipwarden/demo/probes/README.txt",
    "sipwarden/demo/probes/svmap_0.3.8_OPTIONS_udp.sip",
    "sipwarden/service/sipwarden.service",
    "sipwarden/service/sipwarden.toml",
)


def test_the_wheel_holds_the_package_its_data_and_the_c_speedups(installed: Installed):
    need(shutil.which("cc") is not None, "no C compiler: the wheel is pure Python")
    version = sipwarden.__version__  # the one place the version is written
    assert installed.wheel.name.startswith(f"sipwarden-{version}-cp3")  # a compiled part
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for data in PACKAGE_DATA:
        assert data in names, data
    for extension in ("sipwarden/sip/_speedups.", "sipwarden/edge/_batchio."):
        assert any(n.startswith(extension) and n.endswith(".so") for n in names), extension
    assert f"sipwarden-{version}.dist-info/entry_points.txt" in names
    with tarfile.open(installed.sdist) as sdist:
        held = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for source in (
        "setup.py",
        "pyproject.toml",
        "README.md",
        "src/sipwarden/sip/_speedups.c",
        "src/sipwarden/edge/_batchio.c",
    ):
        assert source in held, source
    assert {f"src/{d}" for d in PACKAGE_DATA} <= held
    assert not any(n.endswith(".so") for n in held)  # a build product of this machine


def test_the_installed_command_is_the_package_with_its_speedups(installed: Installed):
    version = subprocess.run(
        [str(installed.sipwarden), "--version"], capture_output=True, text=True, timeout=60,
        env=clean_env(),
    )  # fmt: skip
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"sipwarden, version {sipwarden.__version__}"
    probe = (
        "import sipwarden, sipwarden.sip.accel as a, sipwarden.edge.batchio as b;"
        "print(sipwarden.__file__); print(a.SPEEDUPS is not None and b.BATCHIO is not None)"
    )
    done = subprocess.run(
        [str(installed.python), "-c", probe], capture_output=True, text=True, timeout=60,
        env=clean_env(), cwd=installed.home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    where, accelerated = done.stdout.split()
    assert where.startswith(str(installed.venv))  # not the checkout
    if shutil.which("cc"):
        assert accelerated == "True"


def test_without_a_compiler_the_build_is_pure_python(installed: Installed, tmp_path):
    """The C speedups are optional: a compiler that fails gives a wheel
    without them (a warning), not a failed build. Built from the sdist, as
    pip does on a machine with no wheel for it."""
    env = {**clean_env(), "CC": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(installed.sdist)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    wheel = next(tmp_path.glob("sipwarden-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "sipwarden/sip/peek.py" in names
    assert not any(n.endswith(".so") for n in names)


def test_the_installed_wheel_runs_the_edge_in_a_namespace(
    installed: Installed, site: Site, tmp_path
):
    """`sipwarden run` of the fresh venv, in the namespace, on port 5060: a
    phone registers through it to the registrar (401, then 200)."""
    config = site.config(tmp_path)
    proc = subprocess.Popen(
        site.ns.command(str(installed.sipwarden), "run", "-c", str(config)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    try:
        line = first_line(proc)
        assert b"listening on" in line, line + (proc.stderr.read() if proc.stderr else b"")
        assert site.register() == [401, 200]
        status = subprocess.run(
            [str(installed.sipwarden), "status", "--json", "-c", str(config)],
            capture_output=True, text=True, timeout=60, env=clean_env(),
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert '"running": true' in status.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
