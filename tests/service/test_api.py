"""Every public endpoint of a running server, over real HTTP."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.service.conftest import ADMIN_TOKEN, UCM_DIR

QUERY_IMAGE = UCM_DIR / "images" / "harbor" / "harbor05.jpg"


def assert_envelope(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_health_answers_head_requests(client):
    for path in ("/healthz", "/readyz"):
        response = client.head(path)
        assert response.status_code == 200, path
        assert response.content == b""


def test_api_docs_need_no_internet(client):
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "https://" not in page.text, f"{path} loads an asset from another host"
    docs = client.get("/docs").text
    script = docs.split('src="', 1)[1].split('"', 1)[0]
    assert client.get(script).status_code == 200


def test_info_reports_model_and_snapshot(client):
    info = client.get("/v1/info").json()
    assert info["model"]["source"] == "tiny-vit"
    assert len(info["model"]["fingerprint"]) == 16
    assert info["snapshot"]["image_count"] == 28
    assert info["snapshot"]["caption_count"] > 0
    assert info["snapshot"]["embed_dim"] == info["model"]["embed_dim"]
    assert info["limits"]["max_k"] == 50
    assert info["admin_enabled"] is True


def test_text_search_returns_ranked_scenes(client):
    response = client.post("/v1/search/text", json={"text": "many boats in a harbor", "k": 5})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 5
    scores = [item["score"] for item in results]
    assert scores == sorted(scores, reverse=True)
    first = results[0]
    assert first["image_url"] == f"/v1/images/{first['id']}"
    assert first["thumbnail_url"] == f"/v1/images/{first['id']}/thumbnail"
    assert first["file_name"].endswith(".jpg")
    assert "geo" in first
    assert "label" in first


def test_text_search_default_k_and_min_score(client):
    default = client.post("/v1/search/text", json={"text": "farmland"}).json()["results"]
    assert len(default) == 10
    cutoff = default[2]["score"]
    filtered = client.post("/v1/search/text", json={"text": "farmland", "min_score": cutoff}).json()["results"]
    assert len(filtered) >= 3
    assert all(item["score"] >= cutoff for item in filtered)
    assert client.post("/v1/search/text", json={"text": "farmland", "min_score": 1.0}).json()["results"] == []


def test_image_upload_returns_captions_and_scenes(client):
    with open(QUERY_IMAGE, "rb") as handle:
        response = client.post("/v1/search/image", files={"file": ("harbor05.jpg", handle, "image/jpeg")},
                               data={"k": "4"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["captions"]) == 4
    assert len(body["scenes"]) == 4
    assert body["query_image_id"] is None
    caption = body["captions"][0]
    assert caption["text"]
    assert caption["images"], "every caption comes from at least one archive image"
    assert caption["images"][0]["thumbnail_url"].endswith("/thumbnail")


def test_image_search_by_archived_id(client, scene_ids):
    query = scene_ids[0]
    response = client.post("/v1/search/image", data={"image_id": query, "k": "3"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query_image_id"] == query
    assert len(body["scenes"]) == 3
    assert query not in [scene["id"] for scene in body["scenes"]]


def test_archived_image_query_matches_its_upload(client, scene_ids):
    """A query by id uses the stored vector, which equals the vector of the same file uploaded."""
    scene = client.post("/v1/search/text", json={"text": "scene", "k": 1}).json()["results"][0]
    original = client.get(scene["image_url"]).content
    by_upload = client.post("/v1/search/image", files={"file": ("q.jpg", original, "image/jpeg")},
                            data={"k": "3"}).json()
    by_id = client.post("/v1/search/image", data={"image_id": scene["id"], "k": "3"}).json()
    assert by_upload["scenes"][0]["id"] == scene["id"]
    assert by_upload["scenes"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [c["id"] for c in by_upload["captions"]] == [c["id"] for c in by_id["captions"]]


def test_image_and_thumbnail_by_id(client, scene_ids):
    image = client.get(f"/v1/images/{scene_ids[0]}")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size[0] > 0
    thumbnail = client.get(f"/v1/images/{scene_ids[0]}/thumbnail")
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 256


@pytest.mark.parametrize("path", ["/v1/images/no_such_id", "/v1/images/no_such_id/thumbnail"])
def test_unknown_image_id_is_404(client, path):
    assert_envelope(client.get(path), 404, "image_not_found")


def test_metrics_exposition(client):
    client.post("/v1/search/text", json={"text": "a river", "k": 1})
    text = client.get("/metrics").text
    assert 'harma_http_requests_total{method="POST",route="/v1/search/text",status="200"}' in text
    assert "harma_http_request_duration_seconds_bucket" in text
    assert 'harma_encode_duration_seconds_count{modality="text"}' in text
    assert "harma_index_images 28.0" in text
    assert "harma_admin_jobs" in text


def test_web_page_and_assets(client):
    page = client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert 'id="query-text"' in page.text
    assert client.get("/static/app.js").status_code == 200


def test_openapi_lists_versioned_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/search/text", "/v1/search/image", "/v1/images/{image_id}",
                 "/v1/images/{image_id}/thumbnail", "/v1/admin/index/rebuild", "/v1/admin/index/update",
                 "/v1/admin/jobs/{job_id}", "/v1/info", "/healthz", "/readyz", "/metrics"):
        assert path in paths


def test_request_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "client-id-123"})
    assert response.headers["x-request-id"] == "client-id-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"


# One row per client mistake of the text endpoint: (body, status, code).
TEXT_ERRORS = [
    ({"text": "x" * 501}, 422, "text_too_long"),
    ({"text": "   "}, 422, "text_blank"),
    ({"text": ""}, 422, "validation_error"),
    ({"text": "river", "k": 51}, 422, "k_too_large"),
    ({"text": "river", "k": 0}, 422, "validation_error"),
    ({"text": "river", "k": "many"}, 422, "validation_error"),
    ({"text": "river", "min_score": 2}, 422, "validation_error"),
    ({"text": "river", "extra": 1}, 422, "validation_error"),
    ({"k": 3}, 422, "validation_error"),
]


@pytest.mark.parametrize("body,status,code", TEXT_ERRORS)
def test_text_search_rejects_bad_input(client, body, status, code):
    error = assert_envelope(client.post("/v1/search/text", json=body), status, code)
    if code == "text_too_long":
        assert "500 characters" in error["message"]
    if code == "k_too_large":
        assert "limit of 50" in error["message"]


def test_text_search_rejects_malformed_json(client):
    response = client.post("/v1/search/text", content=b"{not json", headers={"content-type": "application/json"})
    error = assert_envelope(response, 422, "validation_error")
    assert "not valid JSON" in error["message"]
    assert "at character 1" in error["message"]
    assert error["details"][0]["field"] == "body"


def test_text_search_without_json_content_type(client):
    response = client.post("/v1/search/text", content=b'{"text": "river"}', headers={"content-type": "text/plain"})
    error = assert_envelope(response, 422, "validation_error")
    assert "Content-Type: application/json" in error["message"]


def test_image_search_needs_exactly_one_query(client, scene_ids):
    assert_envelope(client.post("/v1/search/image", data={"k": "3"}), 422, "query_missing")
    with open(QUERY_IMAGE, "rb") as handle:
        both = client.post("/v1/search/image", files={"file": ("q.jpg", handle, "image/jpeg")},
                           data={"image_id": scene_ids[0]})
    assert_envelope(both, 422, "query_conflict")
    assert_envelope(client.post("/v1/search/image", data={"image_id": "missing"}), 404, "image_not_found")


def test_unknown_route_and_method(client):
    assert_envelope(client.get("/v1/nothing"), 404, "not_found")
    assert_envelope(client.get("/v1/search/text"), 405, "method_not_allowed")


def test_admin_token_is_never_logged(client, server, admin_headers):
    client.get("/v1/admin/jobs/none", headers=admin_headers)
    client.get("/v1/admin/jobs/none", headers={"Authorization": "Bearer wrong-token"})
    assert ADMIN_TOKEN not in server.log()
    assert "wrong-token" not in server.log()
