"""Tests of the model summaries: stage shapes and parameters, and the receptive field."""
import numpy as np
import pytest
import torch
from torch import nn

from skinseg.models import AttentionUNet, ConvBlock, UNet, count_parameters
from skinseg.models.summary import (extent, gradient_receptive_field, receptive_field, receptive_field_table,
                                    stage_table)


@pytest.mark.parametrize("cls", [UNet, AttentionUNet])
def test_stage_table_adds_up_to_the_model_and_follows_the_data(cls):
    model = cls(width=4)
    table = stage_table(model, (2, 3, 64, 96))
    assert int(table["parameters"].sum()) == count_parameters(model)
    assert table["stage"].iloc[0] == "encoder.0" and table["stage"].iloc[-1] == "head"
    assert table["output"].iloc[-1] == (2, 1, 64, 96)
    # each stage reads what the stage before it wrote, except where a skip is concatenated
    encoder = table[table["stage"].str.startswith("encoder")]
    assert [o[1:] for o in encoder["output"]] == [(4, 64, 96), (8, 32, 48), (16, 16, 24), (32, 8, 12), (64, 4, 6)]
    decoder = table[table["stage"].str.startswith("decoder")]
    # the decoder reads [skip, upsampled]: twice the channels it writes
    assert all(i[1] == 2 * o[1] and i[2:] == o[2:] for i, o in zip(decoder["input"], decoder["output"]))
    assert (table["stage"] == "pool").sum() == 4 and table.loc[table["stage"] == "pool", "parameters"].eq(0).all()
    assert table["stage"].str.startswith("gates").sum() == (4 if cls is AttentionUNet else 0)


def test_stage_table_of_the_default_models_has_the_article_counts():
    with torch.device("meta"):
        unet, attention = UNet(), AttentionUNet()
    # meta tensors carry shapes without memory or arithmetic
    assert int(stage_table(unet)["parameters"].sum()) == 34_527_041
    assert int(stage_table(attention)["parameters"].sum()) == 34_878_573


def test_stage_table_leaves_the_training_mode_alone():
    model = UNet(width=2).train()
    stage_table(model, (1, 3, 32, 32))
    assert model.training
    stage_table(model.eval(), (1, 3, 32, 32))
    assert not model.training


def test_stage_table_refuses_a_model_whose_parameters_do_not_all_run():
    class Partly(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)
            self.unused = nn.Linear(2, 2)  # registered but never called in forward

        def forward(self, x):
            return self.conv(x)

    model = Partly()
    with pytest.raises(ValueError, match="6 parameters"):
        stage_table(model, (1, 3, 8, 8))


def test_receptive_field_of_small_chains():
    assert receptive_field(ConvBlock(3, 2), (1, 3, 16, 16)) == (5, 5)
    chain = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=1))
    assert receptive_field(chain, (1, 1, 16, 16)) == (1 + 2 + 1 + 2 * 2,) * 2
    dilated = nn.Sequential(nn.Conv2d(1, 1, (3, 5), padding=(2, 4), dilation=2))
    assert receptive_field(dilated, (1, 1, 16, 16)) == (5, 9)
    up = nn.Sequential(nn.MaxPool2d(2), nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3, padding=1))
    table = receptive_field_table(up, (1, 1, 16, 16))
    assert table["jump"].tolist() == [(2.0, 2.0), (1.0, 1.0), (1.0, 1.0)]
    assert table["rf"].tolist() == [(2, 2), (2, 2), (4, 4)]


def test_unet_receptive_field_formula_and_measurement():
    model = UNet(width=2)
    assert receptive_field(model, (1, 3, 32, 32)) == (230, 230)
    assert receptive_field(AttentionUNet(width=2), (1, 3, 32, 32)) == (230, 230)
    # the measured field scatters around the formula with the pixel's place on the coarse grids
    fields = gradient_receptive_field(model, (1, 3, 320, 320), [(160, 160), (163, 163)])
    assert [extent(f > 0) for f in fields] == [(220, 220), (236, 236)]


def test_gradient_receptive_field_of_a_conv_chain_is_exact():
    chain = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=1))
    field = gradient_receptive_field(chain, (1, 1, 32, 32), (8, 8))
    assert extent(field > 0) == (8, 8)
    rows, cols = np.nonzero(field)
    assert (rows.min(), cols.min()) == (16 - 2 - 1, 16 - 2 - 1)
    assert isinstance(chain[1], nn.ReLU)  # the model itself is not changed
    # several positions in one batched pass give the fields of single passes
    batch = gradient_receptive_field(chain, (1, 1, 32, 32), [(8, 8), (0, 15)])
    assert batch.shape == (2, 32, 32)
    np.testing.assert_allclose(batch[0], field)
    # in the corner the zero padding cuts the field: rows 0..4 and columns 27..31 of 8 x 8
    rows, cols = np.nonzero(batch[1])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 4, 27, 31)


def test_extent():
    assert extent(np.zeros((3, 3))) == (0, 0)
    mask = np.zeros((5, 7), bool)
    mask[1, 2] = mask[3, 5] = True
    assert extent(mask) == (3, 4)
