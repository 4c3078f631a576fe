"""The request's language: ?lang= first, then Accept-Language, then the deployment's default."""

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.testclient import TestClient

from geo.i18n import _
from service.language import RequestLanguage


def _client(default: str) -> TestClient:
    app = FastAPI()
    app.add_middleware(RequestLanguage, default=default)

    @app.get("/page", response_class=HTMLResponse)
    def page() -> str:  # a sync route: runs in a thread, which must see the request's locale
        return _("Error:")

    @app.get("/async")
    async def json_route() -> dict:
        return {"label": _("Error:")}

    @app.get("/tile")
    def tile() -> Response:
        return Response(b"\x1a\x00", media_type="application/vnd.mapbox-vector-tile")

    return TestClient(app)


def test_query_then_header_then_default():
    client = _client("zh")
    assert client.get("/page").text == "错误："
    assert client.get("/page", headers={"Accept-Language": "en-US,en;q=0.9"}).text == "Error:"
    answer = client.get("/page?lang=zh-CN", headers={"Accept-Language": "en"})
    assert answer.text == "错误："
    assert answer.headers["content-language"] == "zh-Hans"
    assert "Accept-Language" in answer.headers["vary"]
    assert client.get("/async?lang=en").json() == {"label": "Error:"}
    # A language the twin does not speak falls through to the next choice.
    assert client.get("/page?lang=fr", headers={"Accept-Language": "de, en;q=0.5"}).text == (
        "Error:")
    english = _client("en")
    assert english.get("/page").text == "Error:"
    assert english.get("/page", headers={"Accept-Language": "zh-TW"}).text == "错误："


def test_binary_answers_carry_no_language():
    answer = _client("zh").get("/tile")
    assert "content-language" not in answer.headers
