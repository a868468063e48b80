"""Start-up hook for Pythons the tests spawn: installs the network guard, then any other sitecustomize."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))

try:
    import network_guard

    network_guard.install_from_environment()
except Exception as exc:  # a broken guard must not stop the child: say so and go on unguarded
    sys.stderr.write(f"network guard: not installed in pid {os.getpid()}: {exc!r}\n")

# This file shadows any sitecustomize further down sys.path (a distribution's, say): run that one too.
# Only entries after this one are searched, so two copies of this file cannot run each other forever.
_entries = [os.path.abspath(p or os.curdir) for p in sys.path]
_later = sys.path[_entries.index(_here) + 1 :] if _here in _entries else []
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _later)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
