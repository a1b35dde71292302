import time, numpy as np, graphrnn as gr, yaml
spec = yaml.safe_load(open('specs/lstm.yaml'))
T,B,H,I = 100,32,512,256
spec['inputs']['x'] = I
for k,v in spec['nodes'].items():
    if isinstance(v, dict) and v.get('size') == 16: v['size'] = H
    elif v == 16: spec['nodes'][k] = H
m = gr.compile(gr.load_spec(yaml.safe_dump(spec)))
p = m.init_params(0)
X = np.random.default_rng(0).standard_normal((T,B,I)).astype(np.float32)
Y = np.zeros((T,B,m.net.size('y')),np.float32)
run = m._run(p, {"x": X}, None, None, 0)
run.forward(); run.zero_grads()
stage, ks = run.kernels[1]
def t_(f, n=300):
    t=time.process_time()
    for i in range(n): f()
    return (time.process_time()-t)/n*1e6
print("gemm fwd", t_(lambda: ks[0].forward(5,6)))
print("elementwise fwd", t_(lambda: [k.forward(5,6) for k in ks[1:]]))
print("gemm bwd", t_(lambda: ks[0].backward(5,6)))
print("elementwise bwd", t_(lambda: [k.backward(5,6) for k in reversed(ks[1:])]))
