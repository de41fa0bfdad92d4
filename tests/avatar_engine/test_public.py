"""avatar_engine's public names: each is its home module's object, loaded on first use, so
importing one part of the engine (the GPU check runs with torch alone) loads only that part."""

from __future__ import annotations

import importlib
import subprocess
import sys

import avatar_engine


def test_every_public_name_is_its_home_modules_object():
    assert sorted(avatar_engine.__all__) == sorted(avatar_engine.HOMES)
    for name, home in avatar_engine.HOMES.items():
        assert getattr(avatar_engine, name) is getattr(importlib.import_module(home), name)


def test_importing_the_package_loads_none_of_its_modules():
    code = (
        "import sys, avatar_engine\n"
        "print(sorted(m for m in sys.modules if m.startswith('avatar_engine.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
