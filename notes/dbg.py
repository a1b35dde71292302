import numpy as np, graphrnn as gr
from graphrnn import passes
text='name: random\ninputs:\n  x0: 1\nnodes:\n  n0: {size: 1, activation: identity, combine: product, leak: 0.25, init_state: learned, bias: false}\n  n1: {size: 3, activation: identity, combine: product, init_state: learned}\n  n2: {size: 1, activation: relu, init_state: learned}\n  n3: {size: 2, activation: identity, combine: product, init_state: learned, bias: false}\n  n4: {size: 1, activation: identity, combine: product, init_state: learned}\nedges:\n  - x0 -> n0 diagonal\n  - {from: x0, to: n1, delay: 0, weight: full, transpose: true}\n  - {from: n2, to: n2, delay: 1, weight: full, transpose: true, scale: -1.0}\n  - {from: x0, to: n3, delay: 0, weight: full, transpose: true, scale: -1.0}\n  - {from: x0, to: n4, delay: 0, weight: full, transpose: true}\noutputs: [n0, n1, n2, n3, n4]\n'
net = gr.load_spec(text)
m = gr.compile(net, dtype="float64")
print(m.schedule())
from tests.test_conformance import random_case
p = m.init_params(5)
inputs, state = random_case(net, steps=4, batch=2, seed=6)
rng = np.random.default_rng(9)
targets = {o: rng.normal(size=(4, 2, net.size(o))) for o in net.outputs}
loss, g = m.gradients(p, inputs, targets, state=state)
o,_ = m.forward(p, inputs, state=state)
print(o["n2"][:, :, 0], p["n2.bias"], p["n2->n2@1"], state["n2"])
