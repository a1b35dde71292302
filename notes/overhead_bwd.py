import time, numpy as np, graphrnn as gr, yaml, sys, cProfile, pstats
spec = yaml.safe_load(open('specs/lstm.yaml'))
H=1
spec['inputs']['x'] = H
for k,v in spec['nodes'].items():
    if isinstance(v, dict) and v.get('size') == 16: v['size'] = H
    elif v == 16: spec['nodes'][k] = H
m = gr.compile(gr.load_spec(yaml.safe_dump(spec)))
p = m.init_params(0)
T=200
X = np.random.default_rng(0).standard_normal((T,1,H)).astype(np.float32)
Y = np.zeros((T,1,m.net.size('y')),np.float32)
run = m._run(p, {"x": X}, None, None, 0); run.forward(); run.zero_grads()
cProfile.run('run.backward()', '/tmp/prof3')
pstats.Stats('/tmp/prof3').sort_stats('tottime').print_stats(14)
