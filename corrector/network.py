"""U-Net with FiLM conditioning on an embedding of the noise level and of the augmentation labels.

Layout (one idea per piece): 3×3 stem → per level `blocks_per_level` residual blocks (GroupNorm, SiLU, 3×3 conv,
FiLM scale/shift) and a strided 3×3 conv down-sampling → bottleneck (block, windowed multi-head self-attention,
block) → mirrored up path (nearest up-sampling + 3×3 conv, skip concatenation, residual blocks) → GroupNorm-SiLU-3×3
head, zero-initialised so that a fresh network predicts 0. Output is multiplied by the land/ocean mask.

Residual 3×3 blocks rather than ConvNeXt 7×7 depthwise: on CPU depthwise convolutions are memory/launch-bound
and several times slower per FLOP than dense 3×3 convolutions, and the domain is small enough that the receptive
field comes from the down-sampling, not from the kernel size.

Performance (benchmarks/performance.py; numerics unchanged up to float round-off): activations run in channels-last
(NHWC) memory for float32/bfloat16, which lets oneDNN skip its NCHW↔blocked reorders around every 3×3 convolution
(9–25 % less time per sampling step on this 2-core CPU, one thread; the layout tensor cores want on GPU); 1×1
convolutions run as a matrix product over the channel axis of that layout (PyTorch sends small single-threaded 1×1
convolutions to a slow im2col path); the output is returned contiguous (NCHW) as before. float64 (adjoint) and
torch.func transforms take the plain NCHW path, bit for bit the earlier code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import NetworkConfig

N_LABELS = 3  # augmentation flags: flip-x, flip-y, rot90
# Activation memory layout: True = channels-last (the fast path); False = plain NCHW, kept only so that
# benchmarks/performance.py can measure the difference in one run. Results agree to float round-off.
CHANNELS_LAST = True


def _under_functorch() -> bool:
    """True inside torch.func transforms (jvp/vjp/vmap), whose GroupNorm rules need contiguous NCHW input."""
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def _fast_layout(x: torch.Tensor) -> bool:
    """Whether x takes the channels-last path: float32/16-bit dtypes (oneDNN has no float64 kernels), outside
    torch.func transforms (their GroupNorm and fused-attention rules need the NCHW path), unless disabled."""
    return CHANNELS_LAST and x.dtype in (torch.float32, torch.bfloat16, torch.float16) and not _under_functorch()


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """x in channels-last memory on the fast path, else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if _fast_layout(x) else x


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution; for channels-last input as a matrix product over channels (channels-last output)."""
    if _fast_layout(x) and x.is_contiguous(memory_format=torch.channels_last):
        w = conv.weight.reshape(conv.out_channels, conv.in_channels)
        return F.linear(x.permute(0, 2, 3, 1), w, conv.bias).permute(0, 3, 1, 2)
    return conv(x)


def _groups(channels: int, wanted: int) -> int:
    return math.gcd(channels, wanted) or 1


class FourierEmbedding(nn.Module):
    """Sinusoidal features of a scalar (the EDM c_noise = ln(σ)/4) at fixed log-spaced frequencies."""

    def __init__(self, dim: int):
        super().__init__()
        # c_noise spans ~[-1.6, 1.1] for σ ∈ [0.002, 80]: angular frequencies 0.6…200 rad per unit resolve it from
        # coarse to fine without aliasing the whole range onto a few periods
        freqs = 2 * math.pi * torch.logspace(-1.0, 1.5, dim // 2, dtype=torch.float32)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arg = x.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


class ConditionEmbedding(nn.Module):
    """(c_noise (B,), labels (B, 3)) → embedding (B, E). Labels enter linearly (zeros at inference)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fourier = FourierEmbedding(dim)
        self.noise_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.labels = nn.Linear(N_LABELS, dim, bias=False)
        self.out = nn.SiLU()

    def forward(self, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.out(self.noise_mlp(self.fourier(c_noise)) + self.labels(labels.to(c_noise.dtype)))


class ResBlock(nn.Module):
    """x + conv(SiLU(FiLM(GN(conv(SiLU(GN(x))))))) with a 1×1 skip when the width changes."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin, groups), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout, groups), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        # start as identity-ish: FiLM begins at scale 1, shift 0; the last conv small
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.conv2.weight.data.mul_(0.1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x (B, cin, H, W), emb (B, emb_dim) → (B, cout, H, W): skip(x) + conv(FiLM(emb)(conv(x)))."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return (x if isinstance(self.skip, nn.Identity) else pointwise(self.skip, x)) + h


def _largest_divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


class WindowAttention(nn.Module):
    """Multi-head self-attention within non-overlapping windows (whole field when it fits), pre-GroupNorm, residual.

    Windows keep the cost linear in the number of cells on large grids; on the small grids of a 12 h regional step
    the window is the whole bottleneck, i.e. global attention.
    """

    def __init__(self, channels: int, heads: int, window: int, groups: int, dropout: float):
        super().__init__()
        if channels % heads:
            raise ValueError(f"network: bottleneck width {channels} is not divisible by heads={heads}")
        self.heads, self.window, self.dropout = heads, window, dropout
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) → x + attention(x), same shape; channels-last input takes a copy-free path."""
        b, c, h, w = x.shape
        wh, ww = _largest_divisor_at_most(h, self.window), _largest_divisor_at_most(w, self.window)
        nh, nw = h // wh, w // ww
        if _fast_layout(x):
            return self._forward_channels_last(x, b, c, h, w, wh, ww, nh, nw)
        qkv = self.qkv(self.norm(x))  # (b, 3c, h, w)
        # (b, 3, heads, d, nh, wh, nw, ww) → (b, nh, nw, 3, heads, wh*ww, d)
        qkv = qkv.reshape(b, 3, self.heads, c // self.heads, nh, wh, nw, ww)
        qkv = qkv.permute(0, 4, 6, 1, 2, 5, 7, 3).reshape(b * nh * nw, 3, self.heads, wh * ww, c // self.heads)
        q, k, v = qkv.unbind(1)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        # (b*nh*nw, heads, wh*ww, d) → (b, c, h, w)
        a = a.reshape(b, nh, nw, self.heads, wh, ww, c // self.heads)
        a = a.permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, h, w)
        return x + self.proj(a)

    def _forward_channels_last(self, x: torch.Tensor, b: int, c: int, h: int, w: int, wh: int, ww: int, nh: int,
                               nw: int) -> torch.Tensor:
        """The same attention on the (b, h, w, c) view of channels-last memory, without layout copies."""
        d = c // self.heads
        # 1×1 projections as matrix products over channels on the (b, h, w, c) view (free in channels-last memory)
        qkv = F.linear(self.norm(x).permute(0, 2, 3, 1), self.qkv.weight.reshape(3 * c, c),
                       self.qkv.bias)  # (b, h, w, 3c), channel = (3, heads, d)
        # (b, nh, wh, nw, ww, 3, heads, d) → (b, nh, nw, 3, heads, wh, ww, d) → (b*nh*nw, 3, heads, wh*ww, d)
        qkv = qkv.reshape(b, nh, wh, nw, ww, 3, self.heads, d)
        qkv = qkv.permute(0, 1, 3, 5, 6, 2, 4, 7).reshape(b * nh * nw, 3, self.heads, wh * ww, d)
        q, k, v = qkv.unbind(1)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        # (b*nh*nw, heads, wh*ww, d) → (b, nh, wh, nw, ww, heads, d) → (b, h, w, c)
        a = a.reshape(b, nh, nw, self.heads, wh, ww, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, h, w, c)
        a = F.linear(a, self.proj.weight.reshape(c, c), self.proj.bias)
        return x + a.permute(0, 3, 1, 2)


class Down(nn.Module):
    """Halve H and W with a stride-2 3×3 convolution (channels unchanged)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Up(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3×3 convolution (channels unchanged)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """F(x, c_noise, labels) → (B, out_channels, H, W); x = (B, in_channels, H, W).

    H and W must be divisible by 2**cfg.downsamplings.
    """

    def __init__(self, cfg: NetworkConfig, in_channels: int, out_channels: int):
        super().__init__()
        self.cfg = cfg
        self.in_channels, self.out_channels = in_channels, out_channels
        g, e, p = cfg.norm_groups, cfg.embedding_dim, cfg.dropout
        widths = [cfg.base_channels * m for m in cfg.channel_mults]
        self.embed = ConditionEmbedding(e)
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)

        self.down_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        skip_widths = []
        c = widths[0]
        for lvl, w in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks_per_level):
                blocks.append(ResBlock(c, w, e, g, p))
                c = w
                skip_widths.append(c)
            self.down_blocks.append(blocks)
            if lvl < len(widths) - 1:
                self.downs.append(Down(c))

        self.mid1 = ResBlock(c, c, e, g, p)
        self.attn = WindowAttention(c, cfg.heads, cfg.attention_window, g, p) if cfg.attention_bottleneck else None
        self.mid2 = ResBlock(c, c, e, g, p)

        self.up_blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for lvl in reversed(range(len(widths))):
            w = widths[lvl]
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks_per_level):
                blocks.append(ResBlock(c + skip_widths.pop(), w, e, g, p))
                c = w
            self.up_blocks.append(blocks)
            if lvl > 0:
                self.ups.append(Up(c))

        self.head_norm = nn.GroupNorm(_groups(c, g), c)
        self.head = nn.Conv2d(c, out_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def check_grid(self, ny: int, nx: int) -> None:
        f = 2 ** self.cfg.downsamplings
        if ny % f or nx % f:
            raise ValueError(f"network: grid ny×nx = {ny}×{nx} is not divisible by 2**{self.cfg.downsamplings} = {f} "
                             f"(len(channel_mults) − 1 = {self.cfg.downsamplings} down-samplings); use a grid that "
                             f"is, or fewer channel_mults")

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, Cin, H, W); c_noise (B,); labels (B, 3); mask (B, 1, H, W) or None (1 = ocean)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"network: input shape {tuple(x.shape)}, expected (B, {self.in_channels}, H, W)")
        self.check_grid(*x.shape[-2:])
        emb = self.embed(c_noise, labels)
        h = self.stem(_channels_last(x))
        skips = []
        for lvl, blocks in enumerate(self.down_blocks):
            for blk in blocks:
                h = blk(h, emb)
                skips.append(h)
            if lvl < len(self.downs):
                h = self.downs[lvl](h)
        h = self.mid1(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        h = self.mid2(h, emb)
        for k, blocks in enumerate(self.up_blocks):
            for blk in blocks:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb)
            if k < len(self.ups):
                h = self.ups[k](h)
        out = self.head(F.silu(self.head_norm(h)))
        if mask is not None:
            out = out * mask
        return out.contiguous()
