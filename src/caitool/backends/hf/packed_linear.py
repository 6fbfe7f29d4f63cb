"""Linear layers with their weights laid out once for oneDNN: inference on a CPU.

A plain ``nn.Linear`` on a CPU hands its row-major weight to the matrix product on every
call, which rearranges it into the blocked layout its kernel reads. At the few rows of a
decoding step that rearrangement is most of the work: a 1536 x 576 bfloat16 product over 16
rows took 208 us plain and 118 us with the weight laid out beforehand on the 2-core AMD EPYC
(AVX-512 BF16) this project is measured on, identical results; in float32 the layout also
takes 12% off the prompt passes (results differ by about 1e-4, one summation order for
another). For SmolLM2-135M, batch 16, 64 new tokens, bare ``model.generate``: 201 to 281
tokens/s in bfloat16, 88 to 179 in float32 (docs/benchmarks.md, ``make bench-builtin``).

This is what torch's own compiler does for CPU inference when it freezes a model
(inductor's ``mkldnn._reorder_linear_weight`` and ``mkldnn._linear_pointwise``); here it is
done without compiling, which took longer on two cores than whole runs. Only plain
``nn.Linear`` modules of a model that is not trained are replaced; anywhere the ops are
missing (a torch built without oneDNN) or refuse a weight, the layer stays as it was.
"""

from __future__ import annotations

import torch

# The rows the layout is chosen for: a decoding step's batch. Any number of rows runs.
DECODE_ROWS = 16


class PackedLinear(torch.nn.Module):
    """A frozen linear layer whose weight is kept in oneDNN's blocked layout."""

    def __init__(self, packed: torch.Tensor, bias: torch.Tensor | None, in_features: int,
                 out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("packed_weight", packed, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    @classmethod
    def of(cls, linear: torch.nn.Linear) -> PackedLinear | None:
        """The packed layer for ``linear``, or None where oneDNN will not take its weight."""
        weight = linear.weight.detach()
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, DECODE_ROWS)
            probe = torch.zeros(1, linear.in_features, dtype=weight.dtype)
            torch.ops.mkldnn._linear_pointwise(probe, packed, None, "none", [], "")
        except (RuntimeError, AttributeError, NotImplementedError):
            return None
        bias = None if linear.bias is None else linear.bias.detach()
        return cls(packed, bias, linear.in_features, linear.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed"


def pack_for_cpu(model: torch.nn.Module) -> int:
    """Replace ``model``'s plain linear layers by packed ones in place; how many were."""
    if not torch.backends.mkldnn.is_available() or getattr(model, "peft_config", None):
        return 0
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is torch.nn.Linear and child.weight.device.type == "cpu":
                packed = PackedLinear.of(child)
                if packed is not None:
                    setattr(module, name, packed)
                    replaced += 1
    return replaced
