"""The ``hero`` command line.

Subcommands are a plain table (`COMMANDS`): name → (one-line help, module). Each module in
``hero/commands/`` defines ``add_arguments(parser)`` and ``run(args) -> int`` and keeps its heavy
imports (torch, the model, the data layer) inside ``run``, so ``hero --help`` stays fast.

A command signals bad input by raising `hero.errors.HeroError` (or ``ValueError``/
``FileNotFoundError``); the CLI prints ``hero <command>: error: ...`` and exits with 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("the whole system on the synthetic corpus, in minutes", "hero.commands.quickstart"),
    "pretrain": ("pre-train HERO (MLM, MFM, VSM, FOM) from a YAML config", "hero.commands.pretrain"),
    "finetune": ("fine-tune on a downstream task from a YAML config", "hero.commands.finetune"),
    "predict": ("write predictions of a fine-tuned model in the official formats", "hero.commands.predict"),
    "eval": ("score predictions with the official metrics", "hero.commands.eval"),
    "plot": ("draw the loss curves of a run to PNG", "hero.commands.plot"),
    "ablate": ("the paper's Tables 1 and 2 in miniature, over seeds", "hero.commands.ablate"),
    "figure": ("draw attention maps, moment predictions or loss curves to PNG", "hero.commands.figure"),
    "convert": ("convert a reference HERO checkpoint to our format", "hero.commands.checkpoint"),
    "init-roberta": ("initialise HERO from a RoBERTa checkpoint", "hero.commands.checkpoint"),
    "info": ("print the config of a saved model", "hero.commands.checkpoint"),
    "data": ("build, inspect and convert datasets", "hero.commands.data"),
    "index": ("encode a corpus with a fine-tuned retrieval model into a search index", "hero.commands.search"),
    "search": ("search an indexed corpus by text: top moments with start-end seconds", "hero.commands.search"),
    "extract": ("frame features from raw videos (ResNet-152 + SlowFast)", "hero.commands.extract"),
}


def _module(name: str):
    return importlib.import_module(COMMANDS[name][1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hero", description="HERO video+language pre-training")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        adder = _module(name).add_arguments
        # a module serving several commands takes the command name
        try:
            adder(p, name)
        except TypeError:
            adder(p)
        _name_errors_after(p)
    return parser


def _name_errors_after(parser: argparse.ArgumentParser) -> None:
    """Record in every (sub-)command parser its full name (``hero data verify``) as the default
    ``_prog``: the prefix of the errors `main` prints, as argparse itself names its own errors."""
    parser.set_defaults(_prog=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _name_errors_after(child)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hero.errors import HeroError

    try:
        rc = int(_module(args.command).run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return rc
    except (HeroError, FileNotFoundError, ValueError) as err:
        print(f"{getattr(args, '_prog', None) or f'hero {args.command}'}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of stdout went away (`hero search ... | head`): stop quietly, as `cat` does.
        # Point stdout at /dev/null so that the interpreter's final flush does not fail again.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


EXIT_BROKEN_PIPE = 141
"""Exit status after the reader of stdout closed the pipe: 128 + SIGPIPE, what a shell reports for
a command killed by SIGPIPE (``set -o pipefail`` users see the same status as with ``cat``)."""


def _silence_stdout() -> None:
    import os

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a non-file stream (tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
