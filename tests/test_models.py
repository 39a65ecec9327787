"""U-Net, Attention U-Net and the attention gate: shapes, parameter counts, ψ maps, input checks."""
import pytest
import torch

from skinseg.errors import ConfigError
from skinseg.models import (MODELS, AttentionGate, AttentionUNet, ConvBlock, UNet, UpConvBlock, build_model,
                            count_parameters, model_name)


def _conv_block(c_in: int, c_out: int) -> int:
    """Two 3x3 convolutions with bias, each followed by BatchNorm (2 parameters per channel)."""
    return (9 * c_in * c_out + c_out + 2 * c_out) + (9 * c_out * c_out + c_out + 2 * c_out)


def _expected_parameters(width: int, attention: bool) -> int:
    """The article's network counted by hand: 5 encoder levels, 4 up-convolutions, 4 decoder blocks, a 1x1 head,
    and with attention one gate per skip (1x1 W_g, W_x to F_int = F/2 and psi to 1 channel, each with BatchNorm)."""
    ch = [width * 2 ** k for k in range(5)]
    total = _conv_block(3, ch[0]) + sum(_conv_block(ch[k - 1], ch[k]) for k in range(1, 5))
    total += sum(9 * ch[k + 1] * ch[k] + 3 * ch[k] for k in range(4))  # up-conv + BatchNorm
    total += sum(_conv_block(2 * ch[k], ch[k]) for k in range(4))
    total += ch[0] + 1  # head
    if attention:
        for k in range(4):
            f, f_int = ch[k], max(ch[k] // 2, 1)
            total += 2 * (f * f_int + 3 * f_int) + (f_int + 3)
    return total


def test_default_parameter_counts_match_the_article_network():
    unet, attention = UNet(), AttentionUNet()
    assert unet.width == attention.width == 64
    assert count_parameters(unet) == 34_527_041
    assert count_parameters(attention) == 34_878_573
    assert _expected_parameters(64, False) == 34_527_041
    assert _expected_parameters(64, True) == 34_878_573


@pytest.mark.parametrize("width", [4, 8])
def test_width_argument_sets_every_level(width):
    for cls in (UNet, AttentionUNet):
        model = cls(width=width)
        assert model.width == width
        assert count_parameters(model) == _expected_parameters(width, cls is AttentionUNet)
        assert [block[0].out_channels for block in model.encoder] == [width * 2 ** k for k in range(5)]
        assert model.head.in_channels == width
    assert count_parameters(UNet(8)) < count_parameters(UNet(16))
    with pytest.raises(ValueError, match="width"):
        UNet(width=0)


@pytest.mark.parametrize("name", ["unet", "attention_unet"])
@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 32, 48)])
def test_output_shape_is_one_logit_per_pixel(name, shape):
    torch.manual_seed(0)
    model = build_model(name, width=4)
    logits = model(torch.randn(*shape))
    assert logits.shape == (shape[0], 1, *shape[2:])
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_building_blocks_shapes():
    x = torch.randn(2, 5, 16, 24)
    assert ConvBlock(5, 7)(x).shape == (2, 7, 16, 24)
    assert UpConvBlock(5, 3)(x).shape == (2, 3, 32, 48)


def test_forward_with_attention_returns_four_psi_maps_finest_first():
    torch.manual_seed(0)
    model = AttentionUNet(width=4)
    x = torch.randn(2, 3, 64, 48)
    for mode in (model.train, model.eval):
        mode()
        logits, psis = model.forward_with_attention(x)
        assert logits.shape == (2, 1, 64, 48)
        assert [tuple(p.shape) for p in psis] == [(2, 1, 64 // 2 ** k, 48 // 2 ** k) for k in range(4)]
        for p in psis:
            assert (p > 0).all() and (p < 1).all()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_with_attention(x)[0])


def test_unet_has_no_attention_maps():
    model = UNet(width=4).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        logits, psis = model.forward_with_attention(x)
        torch.testing.assert_close(logits, model(x))
    assert psis == []
    assert not UNet.has_attention and AttentionUNet.has_attention


def test_attention_gate_output_is_psi_times_x():
    torch.manual_seed(0)
    gate = AttentionGate(gate_channels=8, skip_channels=6, inter_channels=3)
    g, x = torch.randn(2, 8, 10, 12), torch.randn(2, 6, 10, 12)
    x_hat, psi = gate(g, x)
    assert psi.shape == (2, 1, 10, 12) and x_hat.shape == x.shape
    assert (psi > 0).all() and (psi < 1).all()
    torch.testing.assert_close(x_hat, psi * x)
    # psi is the additive attention of the article, recomputed from the gate's own layers (eval: fixed BN)
    gate.eval()
    with torch.no_grad():
        x_hat, psi = gate(g, x)
        expected = torch.sigmoid(gate.psi[0](torch.relu(gate.W_g(g) + gate.W_x(x))))
    torch.testing.assert_close(psi, expected)
    torch.testing.assert_close(x_hat, expected * x)


def test_attention_gates_use_half_the_skip_channels():
    model = AttentionUNet(width=8)
    for k, gate in enumerate(model.gates):
        skip = 8 * 2 ** k
        assert gate.W_x[0].in_channels == skip and gate.W_g[0].in_channels == skip
        assert gate.W_x[0].out_channels == skip // 2


@pytest.mark.parametrize("cls", [UNet, AttentionUNet])
def test_bad_inputs_raise_value_error_naming_the_requirement(cls):
    model = cls(width=4)
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 3, 60, 64))
    with pytest.raises(ValueError, match="divisible by 16"):
        model(torch.randn(1, 3, 64, 40))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 64, 64))


def test_build_model_by_name_and_unknown_name():
    assert type(build_model("unet", 4)) is UNet
    assert type(build_model("attention_unet", 4)) is AttentionUNet
    assert build_model("unet", 4).width == 4
    for name in MODELS:
        assert model_name(build_model(name, 4)) == name
    with pytest.raises(ConfigError, match="attention_unet.*unet|unet.*attention_unet") as info:
        build_model("vnet", 4)
    assert "vnet" in str(info.value)


def test_one_model_pair_and_one_input_multiple():
    """The torch-free copies of two facts agree with the models: the model names (config's labels,
    used by the command line before torch is imported) and the input multiple (four poolings)."""
    from skinseg.config import INPUT_MULTIPLE, MODEL_LABELS
    from skinseg.models import MODELS
    from skinseg.models.unet import STRIDE

    assert list(MODEL_LABELS) == list(MODELS) and INPUT_MULTIPLE == STRIDE
