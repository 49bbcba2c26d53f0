"""Adapter layers. Kept apart from the wiring (model.py) as in peft."""
from torch import nn


class BottleneckAdapter(nn.Module):
    """down -> ReLU -> up. No dropout, scaling or gating (the paper's adapter)."""

    def __init__(self, hidden_size, bottleneck_size, init_range=0.02):
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.up = nn.Linear(bottleneck_size, hidden_size)
        self.activation = nn.ReLU()
        # As BERT initialises weights missing from a checkpoint: N(0, 0.02), zero bias (not near-identity).
        for linear in (self.down, self.up):
            nn.init.normal_(linear.weight, mean=0.0, std=init_range)
            nn.init.zeros_(linear.bias)

    def forward(self, hidden_states):
        return self.up(self.activation(self.down(hidden_states)))


class PaperAdapterOutput(nn.Module):
    """BERT's output sublayer (`BertOutput`) with the paper's adapter inside.

        h   = dropout(dense(intermediate))
        a   = up(relu(down(LN(h)))) + h          # LN is the sublayer's own LayerNorm, shared
        out = LN(a + input_tensor)

    Keeps BertOutput's submodules under their names (`dense`, `LayerNorm`, `dropout`), so pretrained BERT and
    VisualBERT checkpoints load unchanged; only `adapter.*` is new.
    """

    def __init__(self, bert_output, bottleneck_size, init_range=0.02):
        super().__init__()
        self.dense = bert_output.dense
        self.LayerNorm = bert_output.LayerNorm
        self.dropout = bert_output.dropout
        self.adapter = BottleneckAdapter(self.dense.out_features, bottleneck_size, init_range)

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dropout(self.dense(hidden_states))
        hidden_states = self.adapter(self.LayerNorm(hidden_states)) + hidden_states
        return self.LayerNorm(hidden_states + input_tensor)
