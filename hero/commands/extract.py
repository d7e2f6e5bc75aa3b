"""``hero extract VIDEO_DIR_OR_LIST --out DIR [--backbones resnet152,slowfast_r50] --weights NAME=FILE ...``.

Frame features from raw videos (see `hero.extract.pipeline`). Many GPUs or processes:
``torchrun --nproc-per-node N -m hero extract ...`` (each rank takes every N-th video).
"""

from __future__ import annotations

import argparse

from hero.argtypes import nonnegative_int, positive_float, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hero.extract.presets import DEFAULT_PRESET, PRESETS  # a plain table, light to import

    p.add_argument("source", help="a folder of videos (searched recursively) or a text file listing one per line")
    p.add_argument("--out", required=True, help="output folder (per-backbone folders of per-video .npz)")
    p.add_argument("--backbones", default="resnet152,slowfast_r50",
                   help="comma-separated, concatenation order: resnet152, slowfast_r50, hf:NAME_OR_PATH "
                        "(default: %(default)s, the 4352-d HERO input)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=FILE",
                   help="weights file of a backbone, e.g. resnet152=resnet152-394f9c45.pth, "
                        "slowfast_r50=SLOWFAST_8x8_R50.pyth or the Caffe2 SLOWFAST_8x8_R50.pkl "
                        "(repeat per backbone; a bare FILE works with one "
                        "built-in backbone)")
    p.add_argument("--random-init", action="store_true",
                   help="allow backbones without weights (random features, for testing only)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of --random-init weights")
    p.add_argument("--interval", type=positive_float, default=1.5,
                   help="seconds per feature: 1.5 for TV/TVR/VIOLIN/DiDeMo, 2 for MSR-VTT/HowTo100M")
    p.add_argument("--store", default=None,
                   help="also pack the features into our video store at this path (hero.data.stores)")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="frames (ResNet) or clips (SlowFast) per forward")
    p.add_argument("--device", default=None, help="torch device (default: cuda:LOCAL_RANK if available, else cpu)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable video")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                   help="sampling rules: " + "; ".join(f"{k}: {v.summary}" for k, v in PRESETS.items())
                        + " (default: %(default)s)")
    p.add_argument("--resnet-crop", choices=("none", "center"), default="none",
                   help="none: whole frame, short side 224 (the reference); center: short side 256, 224 crop")
    p.add_argument("--size", type=positive_int, default=224,
                   help="input resolution (224 = reference; smaller for tests)")
    p.add_argument("--width", type=positive_int, default=64, help=argparse.SUPPRESS)  # test-only network width
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N videos (by id)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load weights files that hold more than tensors (only for files you trust)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_weights(values: list[str], backbones: list[str]) -> dict[str, str]:
    """``NAME=FILE`` pairs (or one bare ``FILE`` when a single built-in backbone is used)."""
    from hero.errors import HeroError

    weights: dict[str, str] = {}
    builtin = [b for b in backbones if not b.startswith("hf:")]
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            if len(builtin) != 1:
                raise HeroError(f"--weights {value!r}: say which backbone it is for (NAME=FILE), "
                                f"backbones are {backbones}")
            name, path = builtin[0], value
        if name in weights:
            raise HeroError(f"--weights: two files for {name}")
        weights[name] = path
    return weights


def run(args: argparse.Namespace) -> int:
    from hero.extract.pipeline import ExtractConfig, run_extract

    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    cfg = ExtractConfig(source=args.source, out_dir=args.out, backbones=backbones,
                        weights=parse_weights(args.weights, backbones), random_init=args.random_init,
                        seed=args.seed, interval=args.interval, batch_size=args.batch_size, device=args.device,
                        strict=args.strict, size=args.size, width=args.width, resnet_crop=args.resnet_crop,
                        store=args.store, limit=args.limit, progress=not args.no_progress,
                        allow_pickle=args.allow_pickle, preset=args.preset)
    result = run_extract(cfg)
    rate = result.extracted / result.seconds if result.seconds > 0 else 0.0
    print(f"extracted {result.extracted} videos ({result.features} features, {rate:.2f} videos/s), "
          f"{result.resumed} already done, {result.failed} failed")
    print(result.problems.summary())
    return 0
