"""The interactive docs work offline: /docs and /redoc load every asset from the app itself, with no key."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from tests.conftest import ApiHarness, running_api
from triage.settings import Settings

BASE = "http://testserver"  # the TestClient's origin


class _Urls(HTMLParser):
    """Every src= and href= in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def referenced_urls(html: str) -> list[str]:
    parser = _Urls()
    parser.feed(html)
    parser.close()
    return parser.urls


@pytest.fixture(scope="module")
def docs_api(builtin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    data_dir = tmp_path_factory.mktemp("docs-ws") / "ws"
    shutil.copytree(builtin_dir, data_dir)
    with running_api(Settings(data_dir=data_dir)) as harness:
        yield harness


def assert_same_origin_assets(api: ApiHarness, page: str, expected: dict[str, str]) -> None:
    """`page` GETs 200 without a key, references only same-origin URLs, and each asset GETs 200 with
    the content type its extension calls for; `expected` maps extension to content-type prefix."""
    response = api.client.get(page)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = referenced_urls(html)
    assert urls, f"{page} references no assets"
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE), "an absolute URL in the page"
    seen: set[str] = set()
    for url in urls:
        absolute = urlsplit(urljoin(BASE + page, url))
        assert f"{absolute.scheme}://{absolute.netloc}" == BASE, f"{page} references external {url}"
        asset = api.client.get(absolute.path)
        assert asset.status_code == 200, f"{url}: {asset.status_code}"
        extension = absolute.path.rsplit(".", 1)[-1]
        assert asset.headers["content-type"].startswith(expected[extension]), (url, asset.headers["content-type"])
        assert len(asset.content) > 1000, f"{url} is suspiciously small"
        seen.add(extension)
    assert set(expected) <= seen, f"{page} lacks a {set(expected) - seen} asset"


def test_swagger_ui_is_served_from_the_app(docs_api: ApiHarness) -> None:
    assert_same_origin_assets(docs_api, "/docs", {"js": "text/javascript", "css": "text/css", "png": "image/png"})
    html = docs_api.client.get("/docs").text
    assert "url: '/openapi.json'" in html
    assert '"validatorUrl": null' in html  # no call to validator.swagger.io either
    assert "SwaggerUIBundle" in docs_api.client.get("/docs-assets/swagger-ui-bundle.js").text


def test_redoc_is_served_from_the_app(docs_api: ApiHarness) -> None:
    assert_same_origin_assets(docs_api, "/redoc", {"js": "text/javascript", "png": "image/png"})
    assert 'spec-url="/openapi.json"' in docs_api.client.get("/redoc").text


def test_oauth2_redirect_page(docs_api: ApiHarness) -> None:
    response = docs_api.client.get("/docs/oauth2-redirect")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")


def test_openapi_schema_still_served_and_docs_stay_out_of_it(docs_api: ApiHarness) -> None:
    response = docs_api.client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/cases" in paths and "/healthz" in paths
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]


def test_a_missing_asset_is_a_problem_404(docs_api: ApiHarness) -> None:
    response = docs_api.client.get("/docs-assets/no-such-file.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
