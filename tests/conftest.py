"""Grids and results shared by the tests: each is built once per session."""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from siting import Grid, load_grid


@pytest.fixture(scope="session")
def hv_mixed() -> Grid:
    return load_grid("simbench:1-HV-mixed--0-sw")


@pytest.fixture(scope="session")
def oberrhein() -> Grid:
    return load_grid("pandapower:mv_oberrhein")


@pytest.fixture(scope="session")
def texas() -> Grid:
    return load_grid("texas2000")


@pytest.fixture(scope="session")
def illinois() -> Grid:
    return load_grid("illinois200")


@pytest.fixture(scope="session")
def wecc10k() -> Grid:
    return load_grid("wecc10k")


# names a model file could carry: shown as text everywhere, never run
EVIL = "<script>alert(1)</script>"
EVIL_IMG = "<img src=x onerror=alert(2)> 'quoted' \"name\""


@pytest.fixture(scope="session")
def hostile_grid(hv_mixed) -> Grid:
    """The HV grid with hostile names on substation 3, its connection bus, and line 0."""
    net = copy.deepcopy(hv_mixed.net)
    substations = hv_mixed.substations.copy()
    row = substations.index[substations["id"] == 3][0]
    substations.loc[row, ["name", "bus_name"]] = EVIL
    net.bus.at[substations.at[row, "bus"], "name"] = EVIL
    net.line.at[net.line.index[0], "name"] = EVIL_IMG
    return dataclasses.replace(hv_mixed, net=net, substations=substations)


@pytest.fixture(scope="session")
def hostile_study(hostile_grid):
    """A whole study on that grid: firm capacity and a year of headroom, ten sites in two
    regions, a year of both policies with loads × 4.6 (the blind one overloads a line)."""
    from siting.study import compute_study, study_from_dict

    study = study_from_dict(
        {
            "name": "hostile",
            "description": f"Study {EVIL}",
            "grid": "simbench:1-HV-mixed--0-sw",
            "selection": {"sites": 10, "regions": 2},
            "simulation": {"load_scale": 4.6},
        }
    )
    return compute_study(study, grid=hostile_grid)


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed: pip install playwright"
    )
    executable = os.environ.get("SITING_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.skip("Chromium not installed: apt-get install chromium")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable)
        yield chromium
        chromium.close()


@pytest.fixture
def offline_page(browser):
    """A page with the network off; records console errors, page errors, dialogs and requests."""
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
    log: dict[str, list[str]] = {"errors": [], "dialogs": [], "requests": []}

    def route(request_route):
        url = request_route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            return request_route.continue_()
        log["requests"].append(url)
        return request_route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and log["errors"].append(message.text))
    page.on("pageerror", lambda error: log["errors"].append(str(error)))
    page.on("dialog", lambda dialog: (log["dialogs"].append(dialog.message), dialog.dismiss()))
    yield page, log
    context.close()
