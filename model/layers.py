"""HarMA adapter layers: the shared mini-adapter (MMS), the multimodal adapter
(MMA) and the gated wrapper that puts an MMA behind a block's MLP output.

All tensors here are batch-first, ``[batch, tokens, width]``. Self-attention runs
across the tokens of one sample and never across the batch.
"""

from __future__ import annotations

import math
import threading
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


def _logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability))


class Gate(nn.Module):
    """A learnable scalar ``g`` whose mixing weight is ``sigmoid(g)``.

    The method initialises ``g`` itself to 0.6 (so the weight starts at
    sigmoid(0.6) = 0.646); ``init`` is that raw value.
    """

    def __init__(self, init: float = 0.6):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(float(init)))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logit)


class TokenSelfAttention(nn.Module):
    """Multi-head self-attention over the tokens of each sample.

    ``mask`` follows ``F.scaled_dot_product_attention``: boolean with True
    marking the query-key pairs that may attend, or additive float, shaped to
    broadcast against ``[batch, heads, tokens, tokens]`` (for example
    ``[tokens, tokens]`` for a causal mask, ``[batch, 1, 1, tokens]`` for padding).

    The weights live in an ``nn.MultiheadAttention``, whose ``in_proj_*`` and
    ``out_proj`` names are the checkpoint format, but the attention runs through
    ``F.scaled_dot_product_attention``. At inference on the CPU (torch 2.14,
    196 tokens, batch 32) that measured about twice as fast as the module's own
    fast path. Training costs about the same, because the module calls the
    same function there.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        heads = self.attn.num_heads
        qkv = F.linear(x, self.attn.in_proj_weight, self.attn.in_proj_bias)
        # [batch, tokens, 3 * dim] -> three [batch, heads, tokens, head_dim] tensors
        q, k, v = qkv.view(batch, tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        if mask is not None and mask.is_floating_point():
            mask = mask.to(x.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.attn.out_proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class MMS(nn.Module):
    """Shared mini-adapter of one depth level, used by both towers.

    ``MMS(a) = a + W_2 (r * v + (1 - r) * u)`` with ``u = W_1 a`` and
    ``v = SelfAttention(u)``. ``W_2`` starts at zero, so MMS starts as identity.
    """

    def __init__(self, dim: int = 128, hidden_dim: int = 64, num_heads: int = 8, gate_init: float = 0.6):
        super().__init__()
        self.down = nn.Linear(dim, hidden_dim)
        self.attn = TokenSelfAttention(hidden_dim, num_heads)
        self.up = nn.Linear(hidden_dim, dim)
        self.gate = Gate(gate_init)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, a: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        u = self.down(a)  # [batch, tokens, hidden_dim]
        v = self.attn(u, mask)
        r = self.gate()
        w = r * v + (1 - r) * u
        return a + self.up(w)  # [batch, tokens, dim]


class MMA(nn.Module):
    """Multimodal adapter on one block's MLP output.

    ``MMA(h) = h + W_up (t * z + (1 - t) * a)`` where ``z = GELU(W_down h)`` and
    ``a`` is the same self-attention applied before and after the shared MMS.
    ``mms`` is None for a tower that skips the shared mini-adapter.
    ``W_up`` starts at zero, so MMA starts as identity.
    """

    def __init__(
        self,
        in_features: int,
        bottleneck_dim: int = 128,
        num_heads: int = 8,
        gate_init: float = 0.6,
        mms: Optional[MMS] = None,
    ):
        super().__init__()
        self.down = nn.Linear(in_features, bottleneck_dim)
        self.attn = TokenSelfAttention(bottleneck_dim, num_heads)
        self.up = nn.Linear(bottleneck_dim, in_features)
        self.gate = Gate(gate_init)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        # A plain attribute list keeps the shared MMS out of this module's
        # parameters, so it is owned (and counted) once, by the model.
        self._mms = [mms] if mms is not None else []

    @property
    def mms(self) -> Optional[MMS]:
        return self._mms[0] if self._mms else None

    def forward(self, h: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return h + self.delta(h, mask)

    def delta(self, h: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Return ``MMA(h) - h``, which is exactly zero while ``W_up`` is zero."""
        z = F.gelu(self.down(h))  # [batch, tokens, bottleneck_dim]
        a = self.attn(z, mask)
        if self.mms is not None:
            a = self.mms(a, mask)
        a = self.attn(a, mask)
        t = self.gate()
        o = t * z + (1 - t) * a
        return self.up(o)  # [batch, tokens, in_features]


class MaskContext(threading.local):
    """Per-thread attention mask for the adapters of one tower.

    The tower's forward sets ``mask`` (in ``TokenSelfAttention``'s convention)
    before it runs and clears it after, so adapters deep inside a backbone see
    the mask of the batch being encoded. Being thread-local keeps concurrent
    encodes in a server from mixing masks.
    """

    mask: Optional[torch.Tensor] = None


class GatedAdapter(nn.Module):
    """Wraps a block's MLP (``base_layer``) and mixes in an MMA on its output.

    ``out = s * MMA(h) + (1 - s) * h`` with ``h = base_layer(x)`` and
    ``s = sigmoid(g_block)``. ``token_layout`` gives how the base output is laid
    out: ``"sequence"`` is ``[batch, tokens, width]`` and ``"feature_map"`` is a
    convolutional ``[batch, channels, height, width]`` map whose positions are
    the tokens.
    """

    def __init__(
        self,
        base_layer: nn.Module,
        adapter: MMA,
        *,
        gate_init: float = 0.6,
        token_layout: str = "sequence",
        masks: Optional[MaskContext] = None,
    ):
        super().__init__()
        if token_layout not in ("sequence", "feature_map"):
            raise ValueError(f"token_layout must be 'sequence' or 'feature_map', got {token_layout!r}")
        self.base_layer = base_layer
        self.adapter = adapter
        self.gate = Gate(gate_init)
        self.token_layout = token_layout
        self._masks = [masks] if masks is not None else []

    def __getattr__(self, name: str):
        # Code that reaches into the wrapped module (open_clip reads
        # ``block.mlp.c_fc`` for its dtype) still finds its attributes.
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("base_layer"), name)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        h = self.base_layer(x, *args, **kwargs)
        mask = self._masks[0].mask if self._masks else None
        s = self.gate()
        if self.token_layout == "feature_map":
            batch, channels, height, width = h.shape
            tokens = h.flatten(2).transpose(1, 2)  # [batch, height * width, channels]
            delta = self.adapter.delta(tokens).transpose(1, 2).reshape(batch, channels, height, width)
        else:
            delta = self.adapter.delta(h, mask)
        # s * MMA(h) + (1 - s) * h, written so that a zero delta returns h bit for bit.
        return h + s * delta
