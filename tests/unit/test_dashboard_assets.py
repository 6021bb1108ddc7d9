"""The dashboard ships whole in the package and asks nothing of any other host."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from meshpilot.server.dashboard import pages
from meshpilot.server.dashboard.routes import CSP

ROOT = Path(__file__).resolve().parents[2]


def test_the_assets_are_package_data() -> None:
    static = pages.static_dir()
    for name in ("cytoscape.min.js", "cytoscape.LICENSE", "uplot.min.js", "uplot.min.css",
                 "uplot.LICENSE", "dashboard.js", "dashboard.css"):
        assert (static / name).stat().st_size > 0, name
    assert "Cytoscape Consortium" in (static / "cytoscape.LICENSE").read_text()
    assert "Leon Sorokin" in (static / "uplot.LICENSE").read_text()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = config["tool"]["setuptools"]["package-data"]["meshpilot"]
    assert {"server/dashboard/static/*", "server/dashboard/templates/*"} <= set(shipped)


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = pages.dashboard_page("token").decode() + pages.login_page("why").decode()
    ours = page + (pages.static_dir() / "dashboard.js").read_text()
    ours += (pages.static_dir() / "dashboard.css").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", ours)
    assert "https://" not in ours and "http://" not in ours and "@import" not in ours
    assert "default-src 'self'" in CSP and "connect-src 'self'" in CSP


def test_text_from_the_server_is_escaped_into_the_pages() -> None:
    assert "<script>" not in pages.login_page("<script>").decode().split("<body", 1)[1]
    assert 'content="&quot;&gt;"' in pages.dashboard_page('">').decode()
