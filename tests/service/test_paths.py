"""Path traversal attempts against the id-only image routes."""

from __future__ import annotations

import pytest

ATTEMPTS = [
    "/v1/images/..%2F..%2F..%2Fetc%2Fpasswd",
    "/v1/images/%2Fetc%2Fpasswd",
    "/v1/images/..%2Fucm%2Fannotations.json",
    "/v1/images/~2E~2E~2Fetc~2Fpasswd",
    "/v1/images/..~2F..~2Fetc~2Fpasswd/thumbnail",
    "/v1/images/%2E%2E/%2E%2E/etc/passwd",
    "/v1/images/..%5C..%5Cwindows%5Cwin.ini",
    "/v1/images/ucm%00.jpg",
    "/static/..%2F..%2Fcore%2Fconfig.py",
    "/static/../../etc/passwd",
]


@pytest.mark.parametrize("path", ATTEMPTS)
def test_traversal_attempts_get_404(client, path):
    response = client.get(path)
    assert response.status_code == 404, response.text
    assert "root:" not in response.text
    assert "BaseSettings" not in response.text


def test_image_id_as_form_field_is_only_a_key(client):
    response = client.post("/v1/search/image", data={"image_id": "../../../etc/passwd", "k": "1"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "image_not_found"
