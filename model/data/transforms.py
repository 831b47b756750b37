"""Image transforms for training and evaluation.

Train: random resized crop (scale 0.5-1.0, bicubic), horizontal flip and
RandAugment with 2 operations at magnitude 7 drawn from identity, autocontrast,
equalize, brightness, sharpness, shear x/y, translate x/y and rotate.
Test: resize to the square input size with bicubic interpolation, no crop.
Both normalise with the image tower's own mean and standard deviation (CLIP's
for CLIP towers, [-1, 1] scaling for the TF-Lite EfficientNet of the default).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

_KEPT_OPS = (
    "Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness",
    "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate",
)


class RemoteSensingRandAugment(T.RandAugment):
    """torchvision's RandAugment restricted to the geometric and tone operations above."""

    def _augmentation_space(self, num_bins: int, image_size: tuple[int, int]) -> dict:
        space = super()._augmentation_space(num_bins, image_size)
        return {name: value for name, value in space.items() if name in _KEPT_OPS}


def build_train_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    return T.Compose([
        T.RandomResizedCrop(image_size, scale=(0.5, 1.0), interpolation=InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        RemoteSensingRandAugment(num_ops=2, magnitude=7, interpolation=InterpolationMode.BICUBIC),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def build_test_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    return T.Compose([
        T.Resize((image_size, image_size), interpolation=InterpolationMode.BICUBIC),
        ToNormalizedTensor(mean, std),
    ])


class ToNormalizedTensor:
    """Conversion of an RGB Pillow image to a normalised float32 ``[3, height, width]`` tensor.

    It computes what ``T.ToTensor`` then ``T.Normalize`` compute, with the same
    float32 operations, but in NumPy. No torch operator runs, so a thread that
    only preprocesses never starts an OpenMP team of torch's own. On a few CPU
    cores, every extra team spinning beside the encoder slows it down.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]  # [3, 1, 1]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode!r}")
        pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32, order="C")  # [3, height, width]
        channels_first = pixels / np.float32(255)
        return torch.from_numpy((channels_first - self.mean) / self.std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode (palette, CMYK, 16-bit grey, alpha) to 8-bit RGB."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Scale by the image's own maximum so 12- and 16-bit data stay visible.
        array = np.asarray(image, dtype=np.float32)
        high = float(array.max()) or 1.0
        scaled = np.clip(array / high * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (0, 0, 0))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").split()[-1])
        return background
    return image.convert("RGB")
