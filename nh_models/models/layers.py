"""Transformer blocks shared by TraONet, MambONet and FNO (batch first, fused attention).

Pre-norm residual blocks (LayerNorm before each sub-layer, a final LayerNorm after
the stack), GELU feed-forward, attention through `F.scaled_dot_product_attention`
(which picks a fused kernel: flash / memory-efficient on CUDA, a fused C++ kernel on
CPU). The self-attention projections are one (d, 3d) matmul; the cross-attention
projects the encoder memory to keys and values with one (d, 2d) matmul.

The query-time decoder: each query time t_i is embedded by a small MLP, the MLP
embedding of the initial condition (q0, p0) is added to every query token, the
tokens attend to each other and to the encoder memory, and a linear head reads
(q, p) from each token.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .base import ICEmbedding, mlp


def split_heads(x: Tensor, nhead: int) -> Tensor:
    """(B, L, d) -> (B, H, L, d / H)."""
    B, L, d = x.shape
    return x.view(B, L, nhead, d // nhead).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, L, dh) -> (B, L, H * dh)."""
    B, H, L, dh = x.shape
    return x.transpose(1, 2).reshape(B, L, H * dh)


def attention(q: Tensor, k: Tensor, v: Tensor, nhead: int, dropout_p: float) -> Tensor:
    """Multi-head scaled dot-product attention of (B, Lq, d) queries on (B, Lk, d) keys/values."""
    out = F.scaled_dot_product_attention(
        split_heads(q, nhead), split_heads(k, nhead), split_heads(v, nhead), dropout_p=dropout_p
    )  # (B, H, Lq, dh)
    return merge_heads(out)  # (B, Lq, d)


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, nhead: int, dropout: float) -> None:
        super().__init__()
        self.nhead, self.dropout = nhead, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (B, L, d)
        p = self.dropout if self.training else 0.0
        return self.out(attention(q, k, v, self.nhead, p))  # (B, L, d)


class CrossAttention(nn.Module):
    def __init__(self, d_model: int, nhead: int, dropout: float) -> None:
        super().__init__()
        self.nhead, self.dropout = nhead, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        k, v = self.kv(memory).chunk(2, dim=-1)  # 2 x (B, Lk, d)
        p = self.dropout if self.training else 0.0
        return self.out(attention(self.q(x), k, v, self.nhead, p))  # (B, Lq, d)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class EncoderBlock(nn.Module):
    """x <- x + SelfAttn(LN(x)); x <- x + FF(LN(x))."""

    def __init__(self, d_model: int, nhead: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, nhead, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))  # (B, L, d)
        return x + self.drop(self.ff(self.norm2(x)))  # (B, L, d)


class DecoderBlock(nn.Module):
    """x <- x + SelfAttn(LN(x)); x <- x + CrossAttn(LN(x), memory); x <- x + FF(LN(x))."""

    def __init__(self, d_model: int, nhead: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (
            nn.LayerNorm(d_model),
            nn.LayerNorm(d_model),
            nn.LayerNorm(d_model),
        )
        self.self_attn = SelfAttention(d_model, nhead, dropout)
        self.cross_attn = CrossAttention(d_model, nhead, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        x = x + self.drop(self.self_attn(self.norm1(x)))  # (B, W, d)
        x = x + self.drop(self.cross_attn(self.norm2(x), memory))  # (B, W, d)
        return x + self.drop(self.ff(self.norm3(x)))  # (B, W, d)


class TransformerEncoder(nn.Module):
    """A stack of pre-norm encoder blocks and a final LayerNorm: (B, L, d) -> (B, L, d)."""

    def __init__(self, d_model: int, nhead: int, num_layers: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(EncoderBlock(d_model, nhead, d_ff, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)  # (B, L, d)
        return self.norm(x)


class QueryDecoder(nn.Module):
    """Transformer decoder over query times: (t (B, W), ic (B, ic_dim), memory (B, L, d)) -> q, p (B, W)."""

    def __init__(
        self, d_model: int, nhead: int, num_layers: int, d_ff: int, dropout: float, ic_dim: int = 2
    ) -> None:
        super().__init__()
        self.time_embed = mlp([1, d_model, d_model])
        self.ic_embed = ICEmbedding(d_model, d_model, ic_dim)
        self.blocks = nn.ModuleList(DecoderBlock(d_model, nhead, d_ff, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 2)

    def forward(self, t: Tensor, ic: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        x = self.time_embed(t.unsqueeze(-1)) + self.ic_embed(ic).unsqueeze(1)  # (B, W, d)
        for block in self.blocks:
            x = block(x, memory)  # (B, W, d)
        out = self.head(self.norm(x))  # (B, W, 2)
        return out[..., 0], out[..., 1]
