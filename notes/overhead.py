import time, numpy as np, graphrnn as gr, yaml, sys
spec = yaml.safe_load(open('specs/lstm.yaml'))
H=int(sys.argv[1]) if len(sys.argv)>1 else 1
spec['inputs']['x'] = H
for k,v in spec['nodes'].items():
    if isinstance(v, dict) and v.get('size') == 16: v['size'] = H
    elif v == 16: spec['nodes'][k] = H
m = gr.compile(gr.load_spec(yaml.safe_dump(spec)))
p = m.init_params(0)
T=200
X = np.random.default_rng(0).standard_normal((T,1,H)).astype(np.float32)
Y = np.zeros((T,1,m.net.size('y')),np.float32)
for r in range(3):
    t=time.perf_counter(); m.forward(p,{"x":X}); f=(time.perf_counter()-t)/T*1e6
    t=time.perf_counter(); m.gradients(p,{"x":X},{"y":Y}); g=(time.perf_counter()-t)/T*1e6
    print(f"per step: forward {f:.1f} us, forward+backward {g:.1f} us")
import cProfile, pstats
cProfile.run('m.forward(p,{"x":X})', '/tmp/prof2')
pstats.Stats('/tmp/prof2').sort_stats('tottime').print_stats(15)
