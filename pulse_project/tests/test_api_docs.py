"""`/api/` lists the endpoints; Swagger UI and Redoc work offline: every asset they load is Pulse's own."""

import re
from html.parser import HTMLParser

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db


class AssetLinks(HTMLParser):
    """Every src/href of a page."""

    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def page(path) -> str:
    response = Client().get(path, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("path", ["/api/docs", "/api/redoc"])
def test_the_docs_pages_load_only_local_static_assets(path):
    html = page(path)
    parser = AssetLinks()
    parser.feed(html)
    assets = [link for link in parser.links if link != "/api/schema"]
    assert assets, "the page loads its UI from static files"
    for link in assets:
        assert link.startswith("/static/drf_spectacular_sidecar/"), link
        assert finders.find(link.removeprefix("/static/")), f"{link} is not a static file Pulse serves"
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), "no address outside Pulse"


def test_the_swagger_ui_uses_no_online_validator():
    assert '"validatorUrl": null' in page("/api/docs")


def test_the_api_root_lists_every_endpoint_and_the_docs():
    response = Client().get("/api/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    listed = response.json()
    for name in ["connections", "tables", "checks", "alerts", "channels", "maintenance-windows", "badges"]:
        assert listed[name] == f"http://testserver/api/{name}"
    assert listed["docs"] == "http://testserver/api/docs" and listed["redoc"] == "http://testserver/api/redoc"


def test_the_api_root_is_browsable():
    html = page("/api/")
    assert "Api Root" in html and 'href="http://testserver/api/tables"' in html
