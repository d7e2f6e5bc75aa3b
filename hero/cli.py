"""The ``hero`` command line. Subcommands are a plain table (`COMMANDS`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _quickstart(args: argparse.Namespace) -> int:
    from hero.quickstart import run

    run(args.out, steps=args.steps, seed=args.seed, preset=args.preset)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from hero.objectives import HeroForPretraining

    model = HeroForPretraining.from_reference(args.checkpoint, num_attention_heads=args.num_heads,
                                              vocab_size=args.vocab_size)
    print(model.load_report.summary())
    out = model.save_pretrained(args.out, metadata={"converted_from": str(args.checkpoint)})
    print(f"wrote {out}")
    return 0


def _init_roberta(args: argparse.Namespace) -> int:
    from hero.config import HeroConfig
    from hero.model.checkpoint import init_from_roberta
    from hero.objectives import HeroForPretraining

    model = HeroForPretraining(HeroConfig.from_name(args.preset))
    report = init_from_roberta(model, args.roberta, load_lm_head=args.load_lm_head)
    print(report.summary())
    out = model.save_pretrained(args.out, metadata={"initialised_from": str(args.roberta)})
    print(f"wrote {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from hero.model.checkpoint import read_config

    meta = read_config(args.checkpoint)
    print(json.dumps(meta, indent=2, sort_keys=True))
    return 0


def _add_quickstart(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="run folder")
    p.add_argument("--steps", type=int, default=70)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="hero-tiny")


def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="reference .pt file (e.g. hero-tv-ht100.pt)")
    p.add_argument("out", type=Path, help="output directory (safetensors + config.json)")
    p.add_argument("--num-heads", type=int, default=None, help="attention heads (default hidden/64)")
    p.add_argument("--vocab-size", type=int, default=None, help="real vocabulary (default 50265 for RoBERTa)")


def _add_init_roberta(p: argparse.ArgumentParser) -> None:
    p.add_argument("roberta", help="local Hugging Face RoBERTa directory, or a hub name when online")
    p.add_argument("out", type=Path)
    p.add_argument("--preset", default="hero-base")
    p.add_argument("--load-lm-head", action="store_true",
                   help="also load RoBERTa's MLM head (the reference does not)")


def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path)


COMMANDS = {
    "quickstart": ("smallest end-to-end run on synthetic data", _add_quickstart, _quickstart),
    "convert": ("convert a reference HERO checkpoint to our format", _add_convert, _convert),
    "init-roberta": ("initialise HERO from a RoBERTa checkpoint", _add_init_roberta, _init_roberta),
    "info": ("print the config of a saved model", _add_info, _info),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hero", description="HERO video+language pre-training")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hero.model.checkpoint import CheckpointError

    try:
        return COMMANDS[args.command][2](args)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"hero {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
