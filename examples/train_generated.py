"""The RFF protocol on the built-in generated shapes, with and without the class cue (offline, CPU).

    python examples/train_generated.py            # 3 seeds per setting, a few minutes on a laptop CPU

Equivalent command line:  rffsurgery train --cue 1.0 --seeds 0-2 --out runs/cue-1.0
"""

from rffsurgery.train import GeneratedSource, ProtocolConfig, resolve_splits, run_experiment
from rffsurgery.reports.training import format_table

config = ProtocolConfig(epochs=4)  # experiment-1 mode: n = 4, branch at epoch 5, 50 transfer epochs
for cue in (1.0, 0.0):
    source = GeneratedSource(per_class=250, cue=cue)  # cue: a coloured square on base training images only
    report = run_experiment(config, source, resolve_splits("g.1", source.splits), seeds=[0, 1, 2],
                            out=f"runs/example-cue-{cue}", resume=True, log=print)
    print(f"\ncue strength {cue}\n{format_table(report)}\n")
