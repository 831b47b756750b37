"""Query encoding and search on the service's one inference thread."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import Any, Callable, Optional

import numpy as np
import torch

from service.batching import BatcherConfig, MicroBatcher, QueueFull
from service.core.errors import Unavailable
from service.core.metrics import ServiceMetrics

logger = logging.getLogger(__name__)


class QueryEncoder:
    """Encodes text and image queries, micro-batched, and runs what follows on the same thread.

    ``then`` receives the query's ``[dim]`` unit vector on the inference thread,
    so that the search after an encode costs no second thread hand-off and
    FAISS, like torch, runs on one thread. With ``max_batch_size`` 1 each query
    is encoded on its own, still on that thread.
    """

    def __init__(self, config: BatcherConfig, metrics: ServiceMetrics):
        self.encoder = None
        self.config = config
        self._metrics = metrics
        self._batcher = MicroBatcher({"text": self._encode_texts, "image": self._encode_pixels}, config,
                                     on_batch=self._observe)

    def load(self, load_encoder: Callable[[], Any]) -> Any:
        """Build the encoder on the inference thread, so that no other thread starts a torch thread team.

        Blocks the caller until ``load_encoder()`` returns, and returns the encoder.
        """
        self.encoder = self.run_blocking(load_encoder)
        return self.encoder

    def run_blocking(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the inference thread and block the caller until it returns."""
        return self._batcher.call(function).result()

    async def encode_text(self, text: str, then: Optional[Callable[[np.ndarray], Any]] = None) -> Any:
        """Encode one text query and return ``then(vector)``, or the ``[dim]`` unit vector itself."""
        return await self._wait(lambda: self._batcher.submit("text", text, then))

    async def encode_image(self, pixels: torch.Tensor, then: Optional[Callable[[np.ndarray], Any]] = None) -> Any:
        """Encode one preprocessed ``[3, size, size]`` image and return ``then(vector)``, or the vector itself."""
        return await self._wait(lambda: self._batcher.submit("image", pixels, then))

    async def run(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the inference thread, for searches that need no encode."""
        return await self._wait(lambda: self._batcher.call(function))

    def close(self) -> None:
        self._batcher.close()

    @staticmethod
    async def _wait(enqueue: Callable[[], Future]) -> Any:
        try:
            future = enqueue()
        except QueueFull as error:
            raise Unavailable(f"server is overloaded: {error}; retry shortly", code="overloaded") from None
        return await asyncio.wrap_future(future)

    def _encode_texts(self, texts) -> np.ndarray:
        return self.encoder.encode_texts(list(texts))  # [batch, dim]

    def _encode_pixels(self, pixels) -> np.ndarray:
        return self.encoder.encode_image_tensors(torch.stack(list(pixels)))  # [batch, dim]

    def _observe(self, modality: str, batch_size: int, elapsed_s: float) -> None:
        self._metrics.encode_latency.labels(modality=modality).observe(elapsed_s)
        self._metrics.encode_batch_size.labels(modality=modality).observe(batch_size)
