"""Adapter layers. Kept apart from the wiring (model.py) as in peft."""
import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.SiLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh}
INIT_WEIGHTS = ("bert", "houlsby", "zeros")


class BottleneckAdapter(nn.Module):
    """down -> non-linearity -> up. No dropout, scaling or gating.

    init_weights: "bert" = N(0, 0.02) weights and zero biases, as BERT initialises weights missing from a checkpoint
    (the paper; AdapterHub's default); "houlsby" = truncated N(0, 0.01), a near-identity start (Houlsby et al. 2019);
    "zeros" = up-projection zero, so the adapter starts as an exact identity.
    """

    def __init__(self, hidden_size, bottleneck_size, init_range=0.02, non_linearity="relu", init_weights="bert"):
        super().__init__()
        if non_linearity not in ACTIVATIONS:
            raise ValueError(f"pe.non_linearity must be one of {sorted(ACTIVATIONS)}, got {non_linearity!r}")
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.up = nn.Linear(bottleneck_size, hidden_size)
        self.activation = ACTIVATIONS[non_linearity]()
        self.reset_parameters(init_weights, init_range)

    @torch.no_grad()
    def reset_parameters(self, init_weights="bert", init_range=0.02):
        for linear in (self.down, self.up):
            nn.init.zeros_(linear.bias)
            if init_weights == "houlsby":
                nn.init.trunc_normal_(linear.weight, mean=0.0, std=1e-2, a=-2e-2, b=2e-2)
            elif init_weights in ("bert", "zeros"):
                nn.init.normal_(linear.weight, mean=0.0, std=init_range)
            else:
                raise ValueError(f"pe.init_weights must be bert | houlsby | zeros, got {init_weights!r}")
        if init_weights == "zeros":
            nn.init.zeros_(self.up.weight)

    def forward(self, hidden_states):
        return self.up(self.activation(self.down(hidden_states)))


class AdaptBertOutput(nn.Module):
    """BERT's output sublayer (`BertOutput`) with the paper's adapter inside: the design card's "registered
    AdaptBertOutput instead of a patched BertOutput".

    The paper's code has two candidates, and this is the one its runs used: it edited `BertOutput` in place, adding
    `AdaptComb1/2` (bottleneck hidden / 10, ReLU) on the sublayer's LayerNorm output. Its own class named
    `AdaptBertOutput` (bottleneck hidden / 5, `AdaptText1/2`) was never instantiated. Here the name goes to what ran.

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


class SequentialAdapterOutput(nn.Module):
    """A residual sublayer (`BertSelfOutput` or `BertOutput`) with a sequential bottleneck adapter, AdapterHub-style.

    h = dropout(dense(x)); with `ln_before` (Pfeiffer: original_ln_before=True, residual_before_ln=True)

        out = LN(up(f(down(LN(h + input_tensor)))) + h + input_tensor)

    and without it (Houlsby: original_ln_before=False)

        out = LN(up(f(down(h))) + h + input_tensor)

    LN is the sublayer's own LayerNorm; submodule names are kept, so base checkpoints load unchanged.
    """

    def __init__(self, sublayer, bottleneck_size, ln_before, non_linearity, init_weights, init_range=0.02):
        super().__init__()
        self.dense = sublayer.dense
        self.LayerNorm = sublayer.LayerNorm
        self.dropout = sublayer.dropout
        self.ln_before = ln_before
        self.adapter = BottleneckAdapter(
            self.dense.out_features, bottleneck_size, init_range, non_linearity, init_weights
        )

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dropout(self.dense(hidden_states))
        adapter_input = self.LayerNorm(hidden_states + input_tensor) if self.ln_before else hidden_states
        return self.LayerNorm(self.adapter(adapter_input) + hidden_states + input_tensor)
