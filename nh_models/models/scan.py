"""Mamba's selective scan in plain PyTorch, chunked over the batch, with a hand-written backward.

The recurrence (Gu & Dao 2023, mambapy `MambaBlock.selective_scan_seq`), per sample:

    h_t = exp(delta_t A) * h_{t-1} + delta_t x_t B_t        h_t: (ED, N), h_{-1} = 0
    y_t = h_t C_t + D x_t                                   y_t: (ED,)

mambapy's parallel scan (Blelloch) pads L to a power of two (100 -> 128) and keeps
several (B, L, ED, N) tensors alive for autograd; its sequential scan slices and
stacks through autograd, whose backward is quadratic in L. Here:

- the batch is cut into chunks small enough that a chunk's (L, b, ED, N) tensors
  stay in the CPU cache (on CUDA: one chunk, the whole batch);
- per chunk the time loop is one fused `addcmul_` per step, in place;
- nothing of size (B, L, ED, N) is kept for backward: the backward pass recomputes
  a chunk's states (cheap, cache resident) and runs the adjoint recurrence

      g_t = C_t dy_t + exp(delta_{t+1} A) * g_{t+1}        (g_t = dLoss/dh_t)

  from which every input gradient is a reduction (see `_scan_chunk_backward`).

`selective_scan_ref` is the obviously-correct loop the tests compare with (and
mambapy's own `selective_scan_seq`).
"""

from __future__ import annotations

import torch
from torch import Tensor

# elements of one (L, b, ED, N) chunk tensor on CPU: 4 MiB in float32, a few such tensors fit the cache
_CPU_CHUNK_ELEMENTS = 1 << 20


def _chunk_size(batch: int, L: int, E: int, N: int, device: torch.device) -> int:
    if device.type != "cpu":
        return batch
    return max(1, min(batch, _CPU_CHUNK_ELEMENTS // (L * E * N)))


def _scan_chunk_states(x: Tensor, delta: Tensor, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
    """States h_t and decays exp(delta_t A) of one chunk (time-major, contiguous).

    x, delta: (L, b, E); A: (E, N); B: (L, b, N) -> H, dA: (L, b, E, N).
    """
    dA = torch.exp(delta.unsqueeze(-1) * A)  # (L, b, E, N)
    H = (delta * x).unsqueeze(-1) * B.unsqueeze(2)  # (L, b, E, N): delta_t x_t B_t, overwritten by h_t
    h, a = H.unbind(0), dA.unbind(0)  # views per time step, made once (cheaper than indexing in the loop)
    for t in range(1, len(h)):
        h[t].addcmul_(a[t], h[t - 1])  # h_t = dA_t * h_{t-1} + delta_t x_t B_t
    return H, dA


def _readout(H: Tensor, C: Tensor) -> Tensor:
    """y_t = h_t C_t: H (L, b, E, N), C (L, b, N) -> (L, b, E)."""
    L, b, E, N = H.shape
    return torch.bmm(H.view(L * b, E, N), C.reshape(L * b, N, 1)).view(L, b, E)


def _scan_chunk_backward(
    x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, dy: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of one chunk (time-major): dx, ddelta (L, b, E), dA (E, N), dB, dC (L, b, N)."""
    L, b, E = x.shape
    N = A.shape[1]
    H, dA = _scan_chunk_states(x, delta, A, B)  # (L, b, E, N) each
    G = dy.unsqueeze(-1) * C.unsqueeze(2)  # (L, b, E, N): C_t dy_t, becomes g_t
    g, a = G.unbind(0), dA.unbind(0)
    for t in range(L - 2, -1, -1):
        g[t].addcmul_(a[t + 1], g[t + 1])  # g_t = C_t dy_t + dA_{t+1} * g_{t+1}
    dC = torch.bmm(dy.reshape(L * b, 1, E), H.view(L * b, E, N)).view(L, b, N)  # sum_e dy h
    d_dx = torch.bmm(G.view(L * b, E, N), B.reshape(L * b, N, 1)).view(L, b, E)  # d/d(delta x): sum_n g B
    dB = torch.bmm((delta * x).reshape(L * b, 1, E), G.view(L * b, E, N)).view(L, b, N)  # sum_e g delta x
    # d/d(delta_t A) through dA_t: P_t = g_t * dA_t * h_{t-1}  (t >= 1; h_{-1} = 0)
    P = G[1:].mul_(dA[1:]).mul_(H[:-1])  # (L-1, b, E, N), reuses G's memory
    ddelta = d_dx * x  # (L, b, E)
    ddelta[1:] += (P * A).sum(-1)
    dA_param = (P * delta[1:].unsqueeze(-1)).sum((0, 1))  # (E, N)
    return d_dx * delta, ddelta, dA_param, dB, dC


class _SelectiveScan(torch.autograd.Function):
    """y = scan(x, delta, A, B, C) without the D x skip term; batch-major in and out."""

    @staticmethod
    def forward(ctx, x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        ctx.save_for_backward(x, delta, A, B, C)
        with torch.autocast(x.device.type, enabled=False):  # the scan runs in the inputs' precision
            return _forward(x, delta, A, B, C)

    @staticmethod
    @torch.autocast("cuda", enabled=False)
    @torch.autocast("cpu", enabled=False)
    def backward(ctx, dy: Tensor):
        x, delta, A, B, C = ctx.saved_tensors
        dy = dy.to(x.dtype)
        Bt, L, E = x.shape
        N = A.shape[1]
        dx, ddelta = torch.empty_like(x), torch.empty_like(delta)
        dB, dC = torch.empty_like(B), torch.empty_like(C)
        dA = torch.zeros_like(A)
        step = _chunk_size(Bt, L, E, N, x.device)
        for s in range(0, Bt, step):
            chunk = slice(s, s + step)
            grads = _scan_chunk_backward(
                *(_time_major(v[chunk]) for v in (x, delta)),
                A,
                *(_time_major(v[chunk]) for v in (B, C, dy)),
            )
            dx[chunk], ddelta[chunk] = grads[0].transpose(0, 1), grads[1].transpose(0, 1)
            dA += grads[2]
            dB[chunk], dC[chunk] = grads[3].transpose(0, 1), grads[4].transpose(0, 1)
        return dx, ddelta, dA, dB, dC


def _time_major(v: Tensor) -> Tensor:
    """(b, L, ...) -> contiguous (L, b, ...)."""
    return v.transpose(0, 1).contiguous()


def _forward(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    Bt, L, E = x.shape
    N = A.shape[1]
    y = torch.empty_like(x)  # (Bt, L, E)
    step = _chunk_size(Bt, L, E, N, x.device)
    for s in range(0, Bt, step):
        chunk = slice(s, s + step)
        H, _ = _scan_chunk_states(_time_major(x[chunk]), _time_major(delta[chunk]), A, _time_major(B[chunk]))
        y[chunk] = _readout(H, _time_major(C[chunk])).transpose(0, 1)  # (b, L, E)
    return y


def selective_scan(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """Selective scan, same signature and result as mambapy's `selective_scan_seq`.

    x, delta: (B, L, ED); A: (ED, N); B, C: (B, L, N); D: (ED,) -> y: (B, L, ED).
    """
    dtype = x.dtype
    for v in (delta, A, B, C):
        dtype = torch.promote_types(dtype, v.dtype)  # bf16 activations with a float32 A -> float32
    x, delta, A, B, C = (v.to(dtype) for v in (x, delta, A, B, C))
    return _scan(x, delta, A, B, C) + D * x  # (B, L, ED)


@torch.compiler.disable
def _scan(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """The scan stays eager under torch.compile (the rest of the model is compiled around it).

    Traced, its 100-step loops of in-place updates on views unroll into a graph that took
    minutes to compile on CPU, and the code the CPU backend generated for it aborted with
    "double free or corruption" (torch 2.13); eager, it is already one fused op per step.
    """
    return _SelectiveScan.apply(x, delta, A, B, C)


def selective_scan_ref(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """The recurrence written out step by step (slow; for tests)."""
    Bt, L, E = x.shape
    h = x.new_zeros(Bt, E, A.shape[1])  # (B, ED, N)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * x[:, t])  # (B, ED)
    return torch.stack(ys, dim=1)  # (B, L, ED)
