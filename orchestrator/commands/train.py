"""gencsp train --model M --dataset D: fit a model that has no published checkpoint."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("train", help="train a model without public weights (cdvae, wyckoff_diffusion)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="train",
                        help="split to train on (default train; val where the train split is not at hand: its "
                             "last rows are held out for the trainer's validation, test is never touched)")
    parser.add_argument("--limit", type=int, help="train on the first N rows of the split (smoke scale)")
    parser.add_argument("--variant", help="image variant (default: the one built for --device)")
    parser.add_argument("--runtime", default="auto", choices=("auto", "docker", "apptainer", "local"))
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the upstream's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option (repeatable)")
    parser.add_argument("--timeout", type=float, help="seconds before the training is stopped")
    parser.add_argument("--train-dir", type=Path, help="trains folder (default: ./trains or $GENCSP_TRAINS)")
    parser.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from .. import models
    from ..console import out
    from ..runtimes import get_runtime
    from ..runtimes.base import log_tail
    from ..train import TrainConfig, TrainError, train, trains_dir
    from .bench import parse_options

    base = models.get(args.model)
    variant = args.variant or base.variant_for(args.device)
    card = models.variant_card(base, variant)
    config = TrainConfig(model=args.model, dataset=args.dataset, seed=args.seed, device=args.device,
                         max_epochs=args.epochs, options=parse_options(args.option), split=args.split,
                         limit=args.limit, variant=variant)
    root = args.train_dir or trains_dir()
    record = train(config, card, get_runtime(args.runtime), root, timeout=args.timeout)
    folder = root / record["train_id"]
    if record["state"] != "done":
        why = record.get("runtime_failure") or f"exit status {record.get('exit_code')}"
        raise TrainError(f"training {folder} failed ({why}); log tail:\n{log_tail(folder / 'log.txt')}")
    checkpoint = record["checkpoint"]
    out.print(f"checkpoint {checkpoint['path']} (sha256 {checkpoint['sha256'][:16]}…)", highlight=False)
    if record.get("scale") == "smoke":
        from ..origin import sentence, trained_origin

        out.print(f"[yellow]{sentence(trained_origin(record))}[/]", highlight=False)
    out.print(f"benchmark it: gencsp bench --model {args.model} --checkpoint {checkpoint['path']} ...",
              highlight=False)
    return 0
