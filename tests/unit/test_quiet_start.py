"""Nothing but our own lines on start: no deprecation notices from the packaging or from imports."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.support.procs import ROOT


def test_the_license_is_an_spdx_string_setuptools_does_not_warn_about() -> None:
    # a `license = {text = ...}` table made setuptools >= 77 print its deprecation notice twice
    # on every install; a plain SPDX string needs setuptools 77 to build
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in project["build-system"]["requires"]


def test_starting_a_processor_prints_no_deprecation_warning() -> None:
    # Authlib (imported by quixstreams through confluent_kafka.schema_registry) installs an
    # "always" filter and warned "The httpx module is deprecated" in every processor
    code = "import scrapeledger.cli, processors.validator, processors.scraper, processors.materializer"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
