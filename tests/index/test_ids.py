import string
import urllib.parse

import pytest

from index.ids import image_id_from_path, path_from_image_id

PATHS = [
    "ucm_captions/images/beach/beach00.jpg",
    "a b/c~d.png",
    "caf\u00e9/\u6771\u4eac.tif",
    "x~2Fy.jpg",
    "x/y.jpg",
    "100%.bmp",
]
URL_SAFE = set(string.ascii_letters + string.digits + "-._~")


@pytest.mark.parametrize("path", PATHS)
def test_image_id_round_trip(path):
    assert path_from_image_id(image_id_from_path(path)) == path


@pytest.mark.parametrize("path", PATHS)
def test_image_id_is_url_safe(path):
    image_id = image_id_from_path(path)
    assert set(image_id) <= URL_SAFE
    assert urllib.parse.quote(image_id, safe="") == image_id


def test_image_ids_are_unique():
    ids = [image_id_from_path(path) for path in PATHS]
    assert len(set(ids)) == len(ids)


def test_plain_names_stay_readable():
    assert image_id_from_path("beach/beach00.jpg") == "beach~2Fbeach00.jpg"


@pytest.mark.parametrize("bad", ["a~", "a~G1", "a/b", "a b"])
def test_malformed_id_rejected(bad):
    with pytest.raises(ValueError):
        path_from_image_id(bad)
