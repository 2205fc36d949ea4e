"""The wheel works installed: built from the sources, installed (not editable) into a fresh
virtualenv outside the repository at the versions of constraints.txt, and run from a
folder outside the repository, it reads its JSON Schemas and OpenAPI document from the
package. Needs the package registry (the dependencies), no Kafka or PostgreSQL; about
half a minute, most of it pip installing the dependencies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from storemon import cli

REPO = Path(__file__).resolve().parents[3]
#: What the wheel is built from (pyproject.toml's package-dir).
SOURCES = ("pyproject.toml", "storemon", "services", "schemas")


@dataclass(frozen=True)
class Installed:
    """A virtualenv with the wheel installed, and a working folder outside the repository."""

    venv: Path
    workdir: Path

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        # Only what a shell needs: no STOREMON_* or PYTHONPATH of the test's environment.
        environment = {
            "PATH": f"{self.venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": os.environ.get("HOME", str(self.workdir)),
            "LANG": "C.UTF-8",
        }
        return subprocess.run(
            command, cwd=self.workdir, env=environment, capture_output=True, text=True,
            check=True, timeout=120,
        )

    def python(self, script: str) -> str:
        return self.run(str(self.venv / "bin" / "python"), "-c", script).stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    scratch = tmp_path_factory.mktemp("wheel")
    assert not scratch.is_relative_to(REPO)
    # A copy, so the build's own folders (build/, *.egg-info) stay out of the checkout.
    source = scratch / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
            )
        else:
            shutil.copy2(REPO / name, source / name)
    dist = scratch / "dist"
    pip = [sys.executable, "-m", "pip", "--quiet"]
    # setuptools and wheel come with the test extras: no isolated build environment to set up.
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist),
         str(source)],
        check=True,
    )
    (wheel,) = dist.glob("storemon-*.whl")
    venv = scratch / "venv"
    # Without pip of its own: the test's pip installs into it (--python), which saves
    # seeding one; nothing of the test's environment is visible in it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install",
         "--constraint", str(REPO / "constraints.txt"), str(wheel)],
        check=True,
    )
    workdir = scratch / "work"
    workdir.mkdir()
    return Installed(venv, workdir)


def test_the_package_and_its_schemas_come_from_the_virtualenv(installed: Installed):
    where = json.loads(installed.python(
        "import json; from importlib import resources; import storemon, storemon.schemas; "
        "print(json.dumps([storemon.__file__, "
        "str(resources.files('storemon.schemas').joinpath('openapi.json'))]))"
    ))
    for path in map(Path, where):
        assert path.is_relative_to(installed.venv), path
        assert not path.is_relative_to(REPO), path


def test_the_default_state_folder_is_in_the_working_folder(installed: Installed):
    state_dir = installed.python(
        "from storemon.config import Settings; print(Settings.from_env().state_dir.resolve())"
    )
    assert Path(state_dir.strip()) == installed.workdir.resolve() / ".state"


def test_report_csv_matches_the_development_install(installed: Installed, tmp_path: Path):
    data = tmp_path / "data"
    assert cli.main(["generate", "--out", str(data), "--stores", "25", "--seed", "5"]) == 0
    inputs = [
        "--status", str(data / "store_status.csv"),
        "--hours", str(data / "menu_hours.csv"),
        "--timezones", str(data / "timezones.csv"),
    ]
    expected = tmp_path / "development.csv"
    assert cli.main(["report-csv", *inputs, "-o", str(expected)]) == 0
    actual = installed.workdir / "installed.csv"
    installed.run("storemon", "report-csv", *inputs, "-o", str(actual))
    assert actual.read_bytes() == expected.read_bytes()
    assert len(actual.read_bytes().splitlines()) == 26  # the header and one row per store


def test_report_requests_are_validated_against_the_packaged_schema(installed: Installed):
    outcome = installed.python(
        "from storemon.messages.report_requests import InvalidRequest, ReportRequest, "
        "new_report_id\n"
        "request = ReportRequest(new_report_id(), 1_700_000_000_000_000, None, ('s1', 's2'))\n"
        "assert ReportRequest.decode(request.encode()) == request\n"
        "try:\n"
        "    ReportRequest.decode(b'{\"report_id\": \"not an id\"}')\n"
        "except InvalidRequest as exc:\n"
        "    print(exc)\n"
    )
    assert "requested_at: is required" in outcome, outcome


def test_the_api_serves_the_packaged_openapi_document(installed: Installed):
    # The route's own handler, from the app factory, without starting the app (which
    # would connect to Kafka and PostgreSQL).
    served = installed.python(
        "import asyncio\n"
        "from aiohttp.test_utils import make_mocked_request\n"
        "from storemon.api.app import create_app\n"
        "from storemon.config import Settings\n"
        "app = create_app(Settings.from_env())\n"
        "(route,) = [r for r in app.router.routes()\n"
        "            if r.method == 'GET' and r.resource.canonical == '/openapi.json']\n"
        "answer = asyncio.run(route.handler(make_mocked_request('GET', '/openapi.json')))\n"
        "print(answer.text)\n"
    )
    assert json.loads(served) == json.loads((REPO / "schemas" / "openapi.json").read_text())


def test_the_api_serves_the_web_page_from_the_installed_package(installed: Installed):
    served = json.loads(installed.python(
        "import asyncio, json\n"
        "from importlib import resources\n"
        "from aiohttp.test_utils import make_mocked_request\n"
        "from storemon.api.app import create_app\n"
        "from storemon.config import Settings\n"
        "app = create_app(Settings.from_env())\n"
        "def answer(path):\n"
        "    info = asyncio.run(app.router.resolve(make_mocked_request('GET', path)))\n"
        "    request = make_mocked_request('GET', path, match_info=dict(info))\n"
        "    response = asyncio.run(info.handler(request))\n"
        "    return [response.status, response.content_type, response.text]\n"
        "page = resources.files('storemon.api').joinpath('page')\n"
        "print(json.dumps({'page': answer('/'), 'script': answer('/static/app.js'),\n"
        "                  'folder': str(page)}))\n"
    ))
    status, content_type, html = served["page"]
    assert (status, content_type) == (200, "text/html")
    assert html.startswith("<!doctype html>") and "/static/app.js?v=" in html
    status, content_type, script = served["script"]
    assert (status, content_type) == (200, "text/javascript")
    assert script == (REPO / "services" / "api" / "page" / "app.js").read_text()
    folder = Path(served["folder"])
    assert folder.is_relative_to(installed.venv) and not folder.is_relative_to(REPO), folder
