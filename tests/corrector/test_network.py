"""The network's fast paths (channels-last memory, 1×1 convolutions as matrix products, attention on the NHWC view)
compute the same function as the plain NCHW path, in the forward pass and in the gradients."""
import pytest
import torch

from corrector import network
from corrector.config import NetworkConfig


def _pair(cfg: NetworkConfig, cin: int = 7, cout: int = 3, seed: int = 0) -> network.UNet:
    torch.manual_seed(seed)
    net = network.UNet(cfg, cin, cout)
    with torch.no_grad():  # the default init zeroes the head and FiLM: randomise so every path matters
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net


def _run(net, x, c, labels, mask, channels_last: bool):
    old = network.CHANNELS_LAST
    network.CHANNELS_LAST = channels_last
    try:
        net.zero_grad()
        x = x.clone().requires_grad_(True)
        y = net(x, c, labels, mask)
        y.square().sum().backward()
        return y.detach(), x.grad.detach(), [p.grad.detach().clone() for p in net.parameters()]
    finally:
        network.CHANNELS_LAST = old


@pytest.mark.parametrize("window,grid", [(16, 16), (2, 16), (4, 24)])  # global attention and 4 / 9 windows
def test_channels_last_equals_nchw(window, grid):
    cfg = NetworkConfig(base_channels=8, channel_mults=[1, 2, 2], heads=2, embedding_dim=16, norm_groups=4,
                        attention_window=window)
    net = _pair(cfg)
    b = 3
    x = torch.randn(b, 7, grid, grid)
    c, labels = torch.randn(b), torch.randint(0, 2, (b, 3)).float()
    mask = (torch.rand(b, 1, grid, grid) > 0.2).float()
    y0, gx0, gp0 = _run(net, x, c, labels, mask, channels_last=False)
    y1, gx1, gp1 = _run(net, x, c, labels, mask, channels_last=True)
    assert y1.is_contiguous() and y1.shape == (b, 3, grid, grid)
    scale = y0.abs().max()
    assert (y1 - y0).abs().max() <= 1e-5 * scale
    assert (gx1 - gx0).abs().max() <= 1e-4 * gx0.abs().max()
    for g0, g1 in zip(gp0, gp1):
        assert (g1 - g0).abs().max() <= 1e-4 * g0.abs().max().clamp_min(1e-12)


def test_float64_takes_the_nchw_path_and_agrees_with_float32():
    cfg = NetworkConfig(base_channels=8, channel_mults=[1, 2], heads=2, embedding_dim=16, norm_groups=4)
    net = _pair(cfg)
    x, c, labels = torch.randn(2, 7, 16, 16), torch.randn(2), torch.zeros(2, 3)
    y32 = net(x, c, labels)
    y64 = net.double()(x.double(), c.double(), labels.double())
    assert y64.dtype == torch.float64 and y64.is_contiguous()
    assert (y64 - y32.double()).abs().max() <= 1e-5 * y64.abs().max()
