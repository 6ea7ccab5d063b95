"""Experiment 3 of the paper: ResNet50 on 10 ImageNet classes (8 base + 2 transfer) from an ImageFolder tree.

    python examples/train_imagefolder.py IMAGENET_TRAIN_DIR     # IMAGENET_TRAIN_DIR/<wnid>/*.JPEG

Equivalent command line (class names are the folder names):
    rffsurgery train --model resnet50 --data folder --data-root IMAGENET_TRAIN_DIR \\
        --base n01440764,n01443537,n01484850,n01491361,n01494475,n01496331,n01498041,n01514668 \\
        --transfer n01514859,n01518878 --epochs 17 --seeds 0-2 --flip --out runs/exp3
Images are decoded by DataLoader workers; on a GPU the trainer uses mixed precision and channels_last.
"""

import sys

from rffsurgery.train import ProtocolConfig, Split, image_folder, run_experiment
from rffsurgery.reports.training import format_table

source = image_folder(sys.argv[1], image_size=224)
split = Split("3", base=source.classes[:8], transfer=source.classes[8:10])  # the first 10 class folders
config = ProtocolConfig(model="resnet50", epochs=16, batch_size=32, workers=4)  # branch at epoch 17
report = run_experiment(config, source, [split], seeds=range(3), out="runs/exp3", resume=True, log=print)
print(format_table(report))
