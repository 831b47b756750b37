"""Inference API used by the index job and the service.

``load_encoder`` returns a ``RetrievalEncoder`` that turns Pillow images and
caption strings into L2-normalised float32 vectors. It is safe to call from
several threads at once: encoding runs under ``torch.inference_mode`` and the
adapters keep their attention masks per thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from model.backbone import BackboneSpec, build_backbone, identity_fingerprint
from model.data.captions import clean_caption
from model.data.transforms import build_test_transform, to_rgb
from model.harma import HarMAModel

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "pretrained" / "default"
TINY_SOURCES = ("tiny-vit", "tiny-conv-bert")


class RetrievalEncoder:
    """Adapted image and text encoders with their preprocessing."""

    def __init__(self, model: HarMAModel, *, source: str, device: Optional[str] = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.source = source
        self.preprocess = build_test_transform(model.image_size, model.image_mean, model.image_std)
        checkpoint = getattr(model, "checkpoint_sha256", None)
        self.identity: dict[str, Any] = {
            "backbone": model.identity,
            "backbone_fingerprint": identity_fingerprint(model.identity),
            "adapters_sha256": checkpoint,
        }
        self.fingerprint = identity_fingerprint(self.identity)
        with torch.inference_mode():
            probe = self.model.encode_text(self._tokenize(["probe"]))
        self.embed_dim = int(probe.shape[-1])
        self.image_size = model.image_size

    def _tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.tokenizer([clean_caption(text) for text in texts]).to(self.device)

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        """Return the ``[3, size, size]`` input tensor for one image of any mode."""
        return self.preprocess(to_rgb(image))

    def encode_image_tensors(self, pixels: torch.Tensor) -> np.ndarray:
        """Encode a preprocessed ``[batch, 3, size, size]`` tensor."""
        with torch.inference_mode():
            features = self.model.encode_image(pixels.to(self.device, non_blocking=True))
        return features.float().cpu().numpy()

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return ``[len(images), embed_dim]`` float32 unit vectors."""
        if not images:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        pixels = torch.stack([self.preprocess_image(image) for image in images])
        return self.encode_image_tensors(pixels)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Return ``[len(texts), embed_dim]`` float32 unit vectors of cleaned captions."""
        if not texts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        with torch.inference_mode():
            features = self.model.encode_text(self._tokenize(texts))
        return features.float().cpu().numpy()


def load_encoder(source: Union[str, Path, None] = None, *, device: Optional[str] = None) -> RetrievalEncoder:
    """Load an encoder from ``source``.

    ``None`` or ``"default"`` is the shipped offline default checkpoint. A
    directory path is an adapter checkpoint written by the training job.
    ``"tiny-vit"`` and ``"tiny-conv-bert"`` are random tiny models for tests.
    """
    from model.checkpoint import load_adapters

    if source is None or str(source) == "default":
        model = load_adapters(DEFAULT_CHECKPOINT)
        label = "default"
    elif str(source) in TINY_SOURCES:
        # Seeded so that every process builds the same tiny model for one fingerprint.
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = HarMAModel(build_backbone(BackboneSpec(kind="tiny", model_name=str(source))))
        label = str(source)
    else:
        model = load_adapters(Path(source))
        label = str(source)
    encoder = RetrievalEncoder(model, source=label, device=device)
    logger.info("loaded encoder %s (fingerprint %s, dimension %d, device %s)",
                label, encoder.fingerprint, encoder.embed_dim, encoder.device)
    return encoder
