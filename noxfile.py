"""Contributor sessions: the core suite on each supported Python, the heavy suites, lint and types.

    nox -l                      # list the sessions
    nox -s core-3.12            # the core suite on one Python
    nox -s frameworks spark browser lint types

A session's virtual environment is kept between runs (``-R`` skips reinstalling, ``--no-reuse-venv``
starts afresh); arguments after ``--`` go to pytest, e.g. ``nox -s core-3.9 -- -x tests/test_queue.py``.
"""

from __future__ import annotations

import glob
import os

import nox

#: Every Python that ``requires-python`` admits and CI runs the core suite on.
PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
#: The suites behind a pytest marker (registered in pyproject.toml); the core suite is the rest.
HEAVY_MARKERS = ("frameworks", "spark", "browser")
CORE_SELECTION = " and ".join(f"not {marker}" for marker in HEAVY_MARKERS)

nox.options.sessions = ["core", "lint", "types"]
nox.options.reuse_venv = "yes"
# Use the interpreters on this machine; never fetch one from the network.
nox.options.download_python = "never"


def _put_pyenv_interpreters_on_path() -> None:
    """Let nox find pyenv's installed Pythons even when pyenv's shims do not select them.

    The shims answer only for the versions pyenv has activated (``pyenv global``/``local``), so with a
    single global version ``python3.9`` is a shim that refuses to run. Each installed version's own
    ``bin`` directory holds a real ``pythonX.Y``; putting those first on PATH is all nox needs.
    """
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = [
        directory
        for directory in sorted(glob.glob(os.path.join(root, "versions", "*", "bin")))
        if any(os.access(os.path.join(directory, f"python{v}"), os.X_OK) for v in PYTHONS)
    ]
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_put_pyenv_interpreters_on_path()


def _pytest(session: nox.Session, *selection: str) -> None:
    session.run("python", "-m", "pytest", *selection, *session.posargs)


@nox.session(python=PYTHONS)
def core(session: nox.Session) -> None:
    """The core suite (client, pipeline, transport, spool, collector, importer, plan) on one Python."""
    session.install("-e", ".[test]")
    _pytest(session, "-m", CORE_SELECTION)


@nox.session
def frameworks(session: nox.Session) -> None:
    """The integrations with Django, Flask, Starlette/FastAPI, uvicorn, Celery, gevent and eventlet."""
    session.install("-e", ".[test,test-frameworks]")
    _pytest(session, "-m", "frameworks")


@nox.session
def spark(session: nox.Session) -> None:
    """send_dataframe on a local Spark session (needs Java: apt-get install openjdk-17-jre-headless)."""
    session.install("-e", ".[test,spark]")
    _pytest(session, "-m", "spark")


@nox.session
def browser(session: nox.Session) -> None:
    """The debugger page in headless Chromium (needs /usr/bin/chromium: apt-get install chromium)."""
    session.install("-e", ".[test,test-browser]")
    _pytest(session, "-m", "browser")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: the lint rules and the formatting, as CI checks them."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on the package, with the optional libraries it type-checks against installed."""
    session.install("-e", ".[test,test-frameworks,spark,lint]")
    session.run("mypy", "segment_lite")
