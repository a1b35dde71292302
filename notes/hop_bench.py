import time, numpy as np, graphrnn as gr
N, B, P = 1000, 1000, 50
rng = np.random.default_rng(0)
pats = rng.choice([-1.0, 1.0], size=(P, N))
W = gr.hopfield.hebbian(pats)
probes = gr.hopfield.corrupt(pats[rng.integers(0, P, B)], 0.1, seed=1)
for update in ("synchronous", "asynchronous"):
    m = gr.compile(gr.hopfield.network(N, update=update), dtype="float32")
    for r in range(2):
        t = time.perf_counter(); out, _ = m.forward({"W": W}, {}, state={"s": probes}, steps=3); dt = (time.perf_counter() - t) / 3
        print(update, f"{dt*1e3:.0f} ms per step")
