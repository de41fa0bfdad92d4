"""The browser code the app serves: nothing loaded from elsewhere, and the vendored
livekit-client is the one its README pins."""

from __future__ import annotations

import hashlib
import re

import pytest

from web.app import STATIC

VENDOR = STATIC / "vendor"
BUNDLE = VENDOR / "livekit-client.umd.js"
# an absolute URL (http, https, ws, wss) or a scheme-relative one in src=, href= or url()
EXTERNAL = re.compile(r"\b(?:https?|wss?)://|(?:src|href)\s*=\s*[\"']//|url\(\s*[\"']?//", re.I)
OWN_FILES = sorted(
    path
    for path in STATIC.rglob("*")
    if path.suffix in {".html", ".js", ".css"} and VENDOR not in path.parents
)


def test_the_pattern_finds_external_references():
    for text in ('<script src="https://cdn.x/lk.js">', "<link href='//cdn.x/a.css'>", "wss://h"):
        assert EXTERNAL.search(text), text
    assert not EXTERNAL.search('fetch("/api/livekit/token") // comment: a/b')
    names = {path.name for path in OWN_FILES}
    assert {"livekit-call.js", "call.js", "call.html"} <= names


@pytest.mark.parametrize("path", OWN_FILES, ids=lambda p: str(p.relative_to(STATIC)))
def test_no_page_script_or_style_loads_anything_from_elsewhere(path):
    found = [m.group(0) for m in EXTERNAL.finditer(path.read_text(encoding="utf-8"))]
    assert not found, f"{path.name} refers to {found}: serve it from web/static/vendor instead"


def test_the_vendored_livekit_client_is_the_pinned_one():
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    version = re.search(r"livekit-client (\d+\.\d+\.\d+)", readme).group(1)
    sha256 = re.search(r"sha256 of `livekit-client.umd.js`: `([0-9a-f]{64})`", readme).group(1)
    bundle = BUNDLE.read_bytes()
    assert hashlib.sha256(bundle).hexdigest() == sha256
    head = bundle[:400].decode()
    assert ".LivekitClient={}" in head  # the UMD global the page's script uses
    variable = re.search(rb"\be\.version=(\w+)", bundle).group(1)  # LivekitClient.version
    assert re.search(rb"\b" + variable + rb'="([^"]+)"', bundle).group(1).decode() == version
    assert "Apache License" in (VENDOR / "LICENSE").read_text(encoding="utf-8")


def test_the_page_loads_the_bundle_by_the_vendored_name():
    # call.js (the page) loads the bundle by this exact name
    assert f'"/static/vendor/{BUNDLE.name}"' in (STATIC / "call.js").read_text(encoding="utf-8")
