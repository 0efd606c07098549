"""Run the benchmark per (dataset, seed), appending records to results/PREFIX.json after each seed.

    PYTHONPATH=src python benchmarks/run_per_seed.py DATASET STRATEGIES TUNER PREFIX [ROUNDS]

Used for the issue-11 re-measurement under CPU contention (partial results survive).
Data from $VLAL_DATA (default /work/shared/data/clip-vitb32). Merge with benchmarks/tuner_robustness.py.
"""
import json
import os
import sys
import warnings
from pathlib import Path
from vlal.bench import run_benchmark
from vlal.data import load_features
from vlal.tuners import make_tuner
ds_name, strategies, tuner, prefix = sys.argv[1], sys.argv[2].split(','), sys.argv[3], sys.argv[4]
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 5
out = Path(__file__).resolve().parent / 'results' / f'{prefix}.json'
ds = load_features(os.path.join(os.environ.get('VLAL_DATA', '/work/shared/data/clip-vitb32'), f'{ds_name}.npz'))
records = []
cmd = (f"run_benchmark(load_features('{ds_name}.npz'), {strategies}, n_rounds={rounds}, seeds=[s], "
       f"tuner_factory=lambda w0: make_tuner('{tuner}', w0)) for s in 0, 1, 2")
for seed in (0, 1, 2):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        records += run_benchmark(ds, strategies, n_rounds=rounds, seeds=[seed], tuner_factory=lambda w0: make_tuner(tuner, w0),
                                 tuner_name=tuner, progress=False)
    tmp = out.with_suffix('.tmp')
    with open(tmp, 'w') as fh:  # atomic: temporary name in the same folder, fsync, replace
        fh.write(json.dumps({'command': cmd, 'records': records}, indent=1))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    print(ds_name, tuner, 'seed', seed, 'done', flush=True)
