import time, numpy as np, graphrnn as gr, yaml, cProfile, pstats
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
m.gradients(p,{"x":X},{"y":Y})
cProfile.run('m.gradients(p,{"x":X},{"y":Y})', '/tmp/prof')
pstats.Stats('/tmp/prof').sort_stats('tottime').print_stats(14)
