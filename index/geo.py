"""Bounds and CRS of a GeoTIFF page, from the tags tifffile decodes."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

USER_DEFINED = 32767  # GeoTIFF code for a CRS that has no EPSG code
PIXEL_IS_POINT = 2


def geo_from_tiff_page(page: Any) -> Optional[dict[str, Any]]:
    """Return ``{"bounds": [min_x, min_y, max_x, max_y], "crs": str | None}`` or None.

    Bounds are the outer edges of the raster in CRS units. They come from
    ModelTransformation when present, else from ModelTiepoint and
    ModelPixelScale. Rotated transforms give the axis-aligned envelope.
    """
    if not getattr(page, "is_geotiff", False):
        return None
    tags = page.geotiff_tags or {}
    transform = _affine(tags)
    if transform is None:
        return None
    width, height = int(page.imagewidth), int(page.imagelength)
    shift = -0.5 if _int_value(tags.get("GTRasterTypeGeoKey")) == PIXEL_IS_POINT else 0.0
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64) + shift
    xs = transform[0, 0] * corners[:, 0] + transform[0, 1] * corners[:, 1] + transform[0, 2]
    ys = transform[1, 0] * corners[:, 0] + transform[1, 1] * corners[:, 1] + transform[1, 2]
    bounds = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
    return {"bounds": bounds, "crs": _crs(tags)}


def _affine(tags: dict) -> Optional[np.ndarray]:
    """Return the 2x3 pixel-to-model transform, or None without georeferencing."""
    matrix = tags.get("ModelTransformation")
    if matrix is not None:
        values = np.asarray(matrix, dtype=np.float64).reshape(-1)
        if values.size >= 16:
            full = values[:16].reshape(4, 4)
            return np.array([[full[0, 0], full[0, 1], full[0, 3]], [full[1, 0], full[1, 1], full[1, 3]]])
    tiepoint, scale = tags.get("ModelTiepoint"), tags.get("ModelPixelScale")
    if tiepoint is None or scale is None or len(tiepoint) < 6 or len(scale) < 2:
        return None
    i, j, _, x, y, _ = (float(value) for value in tiepoint[:6])
    scale_x, scale_y = float(scale[0]), float(scale[1])
    # Rows grow downwards while model y grows upwards, hence the minus sign.
    return np.array([[scale_x, 0.0, x - i * scale_x], [0.0, -scale_y, y + j * scale_y]])


def _crs(tags: dict) -> Optional[str]:
    for key in ("ProjectedCSTypeGeoKey", "GeographicTypeGeoKey"):
        code = _int_value(tags.get(key))
        if code is not None and code != USER_DEFINED and code > 0:
            return f"EPSG:{code}"
    return None


def _int_value(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
