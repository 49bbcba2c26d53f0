import torch
from torch import nn


class ScaledOutput(nn.Module):
    """A BERT layer's output block, its result scaled per hidden unit."""

    def __init__(self, output, init_scale):
        super().__init__()
        self.output = output
        self.scale = nn.Parameter(torch.full((output.dense.out_features,), float(init_scale)))

    def forward(self, hidden_states, input_tensor):
        return self.output(hidden_states, input_tensor) * self.scale


def inject_scales(bert, config):
    added = []
    for index in config.selected_layers(len(bert.encoder.layer)):
        layer = bert.encoder.layer[index]
        layer.output = ScaledOutput(layer.output, config.init_scale)
        added.append(f"encoder.layer.{index}.output.scale")
    return added
