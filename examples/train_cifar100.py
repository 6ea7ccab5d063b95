"""The paper's experiments 1.1–1.10 and 2.1–2.10 on real CIFAR-100 (needs the dataset on disk).

    python examples/train_cifar100.py DATA_ROOT            # DATA_ROOT holds cifar-100-python/

Equivalent command lines:
    rffsurgery train --data cifar100 --data-root DATA_ROOT --split all --seeds 0-4 --out runs/exp1
    rffsurgery train --data cifar100 --data-root DATA_ROOT --split all --seeds 0-4 --until-overfit --out runs/exp2
Add --download on a machine with internet access to fetch CIFAR-100 first.
"""

import sys

from rffsurgery.train import CIFAR100_SPLITS, ProtocolConfig, cifar100, run_experiment
from rffsurgery.reports.training import format_table

source = cifar100(sys.argv[1])
splits = list(CIFAR100_SPLITS.values())
for name, config in (("exp1", ProtocolConfig(epochs=4)), ("exp2", ProtocolConfig(until_overfit=True, max_epochs=15))):
    report = run_experiment(config, source, splits, seeds=range(5), out=f"runs/{name}", resume=True, log=print)
    print(f"\n{name}\n{format_table(report)}\n")
