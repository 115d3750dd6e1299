"""The network from one layer's output to the logits, as a module of its own (for AblationCAM).

AblationCAM needs the logits for many copies of a layer's activations, each with one channel zeroed. The layers
before the chosen one do not change between those copies, so running the whole model for each would repeat them
for nothing. :func:`split_at` traces the model with ``torch.fx`` (the chosen layer kept as one opaque call) and cuts
its graph at that call:

* the *tail*: every operation that depends on the layer's output, as a ``GraphModule`` sharing the model's own
  submodules and parameters (mode, weights and buffers are the model's);
* the *side inputs*: values computed before the layer that the tail also reads. In a ResNet block whose inner
  convolution is chosen (``layer4.0.conv2``), the skip connection adds the block's input (or its downsampled copy)
  after the layer: it does not depend on the ablated activations, so it is computed once per image, on the clean
  pass, and repeated for every ablated copy. That is exact, not an approximation: the tail then computes the same
  function of (activations, side inputs) as the whole model.

* the *batch size*: a forward that reads it from its input (``bs = x.size(0)`` … ``x.view(bs, -1)``, as
  EfficientNet's loader package and many real architectures do) computes it before the layer, but it is a property
  of the tail's own input: every per-image tensor of the network has the same first dimension. The tail reads it
  from the activations it is given (``activations.size(0)``), so a block of ``B`` ablated copies is ``B`` images, as
  the whole model would see it. ``run`` checks that the recorded value is the batch size, else falls back.

A model that ``torch.fx`` cannot trace (data-dependent Python control flow), or whose tail reads any other value that
is not a per-image tensor (a shape other than the batch size, a Python number computed from the input), gets
``None`` or falls back at ``run``: the caller then runs the whole model with the layer's output replaced by a hook
(correct, only slower).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

__all__ = ["Tail", "split_at"]


class _LeafAt(fx.Tracer):
    """Trace everything except the module named ``name``, which stays one ``call_module`` node."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname == self.name or super().is_leaf_module(m, qualname)


class _Recorder(fx.Interpreter):
    """Runs the traced model and keeps the values of the nodes in ``keep``."""

    def __init__(self, gm: fx.GraphModule, keep: list[fx.Node]) -> None:
        super().__init__(gm)
        self.keep, self.values = set(keep), {}

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        if n in self.keep:  # a copy: an in-place op later in the graph (ResNet's ReLU after bn1) must not change it
            self.values[n] = value.clone() if isinstance(value, torch.Tensor) else value
        return value


@dataclass
class Tail:
    """``run(images)`` → ``(logits, activations, side_inputs)``; ``tail(activations, *side_inputs)`` → logits."""
    traced: fx.GraphModule
    layer_node: fx.Node
    side_nodes: list[fx.Node]
    tail: fx.GraphModule
    batch_nodes: list[fx.Node] = field(default_factory=list)  # batch sizes the tail reads from its activations

    def run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        recorder = _Recorder(self.traced, [self.layer_node, *self.side_nodes, *self.batch_nodes])
        logits = recorder.run(images)
        side = [recorder.values[n] for n in self.side_nodes]
        n = images.shape[0]
        if not all(isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n for v in side):
            raise _NotPerImage
        if any(recorder.values[b] != n for b in self.batch_nodes):  # not the batch size after all
            raise _NotPerImage
        if not (isinstance(acts := recorder.values[self.layer_node], torch.Tensor) and acts.dim() >= 1
                and acts.shape[0] == n):
            raise _NotPerImage
        return logits, recorder.values[self.layer_node], side


class _NotPerImage(Exception):
    pass


def _is_batch_size(n: fx.Node) -> bool:
    """``x.size(0)``, ``x.size(dim=0)``, ``x.shape[0]`` or ``x.size()[0]``: the first dimension of a tensor."""
    if n.op == "call_method" and n.target == "size":
        return (len(n.args) == 2 and n.args[1] == 0) or (len(n.args) == 1 and n.kwargs.get("dim") == 0)
    if n.op == "call_function" and n.target is operator.getitem and len(n.args) == 2 and n.args[1] == 0:
        s = n.args[0]
        return isinstance(s, fx.Node) and (
            (s.op == "call_function" and s.target is getattr and s.args[1:] == ("shape",))
            or (s.op == "call_method" and s.target == "size" and len(s.args) == 1 and not s.kwargs))
    return False


def split_at(model: nn.Module, layer: nn.Module, where: str = "output") -> Tail | None:
    """Cut ``model`` at ``layer``'s output (or, ``where="input"``, at its input: the tail then starts with the layer),
    or ``None`` where that cannot be done exactly (see the module doc)."""
    name = next((n for n, m in model.named_modules() if m is layer), None)
    if not name:  # the model itself, or not a submodule: nothing to cut
        return None
    try:
        graph = _LeafAt(name).trace(model)
    except Exception:  # untraceable Python control flow: the caller falls back to the whole model
        return None
    traced = fx.GraphModule(model, graph)
    nodes = list(graph.nodes)
    found = [n for n in nodes if n.op == "call_module" and n.target == name]
    if len(found) != 1:  # the layer is called more than once (shared module): no single cut
        return None
    layer_node = found[0]
    if where == "input":
        if not layer_node.args or not isinstance(layer_node.args[0], fx.Node):
            return None
        layer_node = layer_node.args[0]
    tail_nodes: list[fx.Node] = []
    for n in nodes[nodes.index(layer_node) + 1:]:
        if n.op != "output" and any(a is layer_node or a in tail_nodes for a in n.all_input_nodes):
            tail_nodes.append(n)
    output = next(n for n in nodes if n.op == "output")
    if not any(a is layer_node or a in tail_nodes for a in output.all_input_nodes):
        return None
    inside = {layer_node, *tail_nodes}
    outside = list(dict.fromkeys(a for n in tail_nodes for a in n.all_input_nodes if a not in inside))
    batch_nodes = [a for a in outside if _is_batch_size(a)]
    side_nodes = [a for a in outside if a.op != "get_attr" and a not in batch_nodes]
    new = fx.Graph()  # placeholders first: the layer's output, then the side inputs
    env: dict[fx.Node, fx.Node] = {layer_node: new.placeholder("activations")}
    env.update({a: new.placeholder(f"side_{a.name}") for a in side_nodes})
    for a in batch_nodes:  # read from the tail's own input: a block of B copies is a batch of B
        env[a] = new.call_method("size", (env[layer_node], 0))
    for a in outside:
        if a.op == "get_attr":  # a parameter or buffer used functionally: the same for every copy
            env[a] = new.node_copy(a)
    for n in tail_nodes:
        env[n] = new.node_copy(n, lambda a: env[a])
    new.output(fx.map_arg(output.args[0], lambda a: env[a]))
    new.lint()
    return Tail(traced, layer_node, side_nodes, fx.GraphModule(traced, new), batch_nodes)


def run_split(tail: Tail, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]] | None:
    """``tail.run(images)``, or ``None`` when a side input is not a per-image tensor (use the whole model)."""
    try:
        return tail.run(images)
    except _NotPerImage:
        return None
