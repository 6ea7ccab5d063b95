"""Trainer throughput against hand-written PyTorch loops, and the RFF epoch against a normal epoch (issue 5).

Same model (the paper's base CNN), same data (generated 32x32 images, held in
memory), same optimizer (Adam) and batch size, one epoch per call, interleaved
(trainer, loop, loop, RFF epoch, …) so load bursts from neighbours hit every side;
verdicts are medians of the per-round paired ratios.

* ``dataloader``: the minimal loop most people write — ``DataLoader(TensorDataset)``
  with ``shuffle=True``, batches moved to the device, zero_grad/forward/backward/step.
  Target: trainer images/s ≥ 1.0x this on CPU (≥ 2x on a GPU, where the trainer adds
  mixed precision and device-resident data).  The trainer's edge on CPU is mostly the
  channels_last layout (oneDNN's preferred one) and no per-sample collation.
* ``slices``: the fastest hand loop we could write (data already on the device, a
  random permutation sliced per batch, no metrics); shown for context, no target.
* ``rff``: the trainer's epoch under the paper's freeze plan (``features.6``,
  ``features.12``) versus its normal epoch: target ≤ 0.95x the time.

On a GPU (``--device cuda``) the trainer runs as ``rffsurgery train`` would: mixed
precision (bfloat16 where supported, else float16 with loss scaling), channels_last
where the model allows it, data resident on the device; the hand loops stay plain
float32 in the default layout, as most people write them.  Every timed call ends
with a device synchronisation.  Without a GPU, ``--amp bf16`` / ``--amp fp16`` run the
same mixed-precision code path on the CPU (autocast, and the GradScaler for fp16) so
that the CUDA path is exercised for logic, not speed.

Run: ``python benchmarks/bench_train.py [--quick] [--rounds N] [--device cuda] [--threads N]
[--amp auto|bf16|fp16|off] [--memory-format auto|channels-last|contiguous]``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from _common import interleaved, median, parser, write_result
from rffsurgery import analyze, build_freeze_plan
from rffsurgery.models import RFFBaseCNN
from rffsurgery.plan import freeze
from rffsurgery.train import SHAPES, select_device
from rffsurgery.train.device import MEMORY_FORMATS, with_memory_format
from rffsurgery.train.loop import make_batches, train_epoch
from rffsurgery.data.generated import render


AMP = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None, help="training images per epoch (default 2048, --quick 512)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5, --quick 2)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--amp", choices=list(AMP), default="auto",
                   help="trainer precision: the device's choice (auto), or force bf16/fp16 autocast, or off")
    p.add_argument("--memory-format", choices=MEMORY_FORMATS, default="auto", help="trainer layout")
    args = p.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    images = args.images or (512 if args.quick else 2048)
    if args.threads:
        torch.set_num_threads(args.threads)
    runtime = select_device(args.device, amp=args.amp != "off")
    if args.amp in ("bf16", "fp16"):
        runtime = replace(runtime, amp_dtype=AMP[args.amp])
    runtime = with_memory_format(runtime, RFFBaseCNN(8), args.memory_format)
    dev = runtime.device

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    data = render(list(SHAPES)[:8], images // 8, seed=0, role="bench")
    batches = make_batches(data, runtime, args.batch)
    n = len(data)

    def fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = RFFBaseCNN(8).to(dev)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    ours, ours_opt = fresh()
    if runtime.channels_last:
        ours = ours.to(memory_format=torch.channels_last)
    plan = build_freeze_plan(analyze(RFFBaseCNN(8)))
    loop_model, loop_opt = fresh()
    slice_model, slice_opt = fresh()
    x_cpu, y_cpu = (data.images.float() / 255 - 0.5) / 0.25, data.labels
    loader = DataLoader(TensorDataset(x_cpu, y_cpu), batch_size=args.batch, shuffle=True)
    x_dev, y_dev = x_cpu.to(dev), y_cpu.to(dev)
    epoch_no = iter(range(10**6))

    def trainer() -> None:  # ends with .item(): synchronised
        train_epoch(ours, batches, ours_opt, runtime, epoch_seed=next(epoch_no))

    def trainer_rff() -> None:
        with freeze(ours, plan, check=False):
            trainer()

    def dataloader_loop() -> None:
        loop_model.train()
        for xb, yb in loader:
            xb, yb = xb.to(dev), yb.to(dev)
            loop_opt.zero_grad()
            F.cross_entropy(loop_model(xb), yb).backward()
            loop_opt.step()
        sync()

    def slices_loop() -> None:
        slice_model.train()
        order = torch.randperm(n, device=dev)
        for i in range(0, n, args.batch):
            index = order[i:i + args.batch]
            slice_opt.zero_grad()
            F.cross_entropy(slice_model(x_dev[index]), y_dev[index]).backward()
            slice_opt.step()
        sync()

    times = interleaved({"trainer": trainer, "dataloader": dataloader_loop, "slices": slices_loop,
                         "rff": trainer_rff}, repeats=rounds)

    def paired(a: str, b: str) -> float:
        """Median over rounds of time(a) / time(b) within the same round: robust to load drifting between rounds."""
        return median([ta / tb for ta, tb in zip(times[a], times[b])])

    speed = {k: n / median(v) for k, v in times.items()}
    target = 2.0 if dev.type == "cuda" else 1.0
    verdicts = {
        "trainer_vs_dataloader": {"throughput_ratio": 1 / paired("trainer", "dataloader"), "target": f">= {target}"},
        "trainer_vs_slices": {"throughput_ratio": 1 / paired("trainer", "slices"), "target": "none (context)"},
        "rff_vs_normal": {"time_ratio": paired("rff", "trainer"), "target": "<= 0.95"},
    }
    print(f"rff-base-cnn, {n} images 32x32, batch {args.batch}, {rounds} rounds, device {runtime.describe()}, "
          f"{torch.get_num_threads()} threads")
    for k, v in speed.items():
        print(f"  {k:<11} {v:8.1f} images/s median   (epochs: {', '.join(f'{t:.2f}' for t in times[k])} s)")
    tp, ctx, rff = (verdicts[k] for k in verdicts)
    print(f"trainer / DataLoader loop throughput {tp['throughput_ratio']:.2f}x (target >= {target}x: "
          f"{'PASS' if tp['throughput_ratio'] >= target else 'MISS'}); / sliced-tensor loop {ctx['throughput_ratio']:.2f}x")
    print(f"RFF epoch / normal epoch time {rff['time_ratio']:.3f} (target <= 0.95: "
          f"{'PASS' if rff['time_ratio'] <= 0.95 else 'MISS'})   [medians of per-round paired ratios]")
    write_result("bench_train", {
        "device": runtime.describe(), "images": n, "batch": args.batch, "rounds": rounds,
        "frozen": list(plan.parameter_names), "images_per_second_median": speed, "epoch_seconds": times,
        **verdicts,
    })

if __name__ == "__main__":
    main()
