# SPDX-License-Identifier: Apache-2.0
"""The ``climax`` command."""

from __future__ import annotations

import argparse
import time


def demo(args: argparse.Namespace) -> None:
    """Build ClimaX, run one forecast step on random normalized input, report."""
    import torch

    from .models import ClimaX

    torch.manual_seed(args.seed)
    model = ClimaX(embed_dim=args.embed_dim, depth=args.depth, num_heads=args.num_heads).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"ClimaX: {len(model.variables)} variables, grid {model.img_size}, "
          f"patch {model.patch_size}, {params:,} parameters")

    x = torch.randn(args.batch, len(model.variables), *model.img_size)
    lead = torch.full((args.batch,), float(args.lead_hours))
    out_vars = ["geopotential_500", "temperature_850", "2m_temperature"]
    start = time.perf_counter()
    with torch.inference_mode():
        y = model(x, lead, model.variables, out_vars)
    seconds = time.perf_counter() - start
    print(f"input  {tuple(x.shape)}  lead {args.lead_hours} h")
    print(f"output {tuple(y.shape)}  {out_vars}  ({seconds:.2f} s)")
    regional = model(x[:1], lead[:1], model.variables, out_vars, region="NorthAmerica")
    print(f"NorthAmerica region output {tuple(regional.shape)}")


def convert(args: argparse.Namespace) -> None:
    """Official ClimaX Lightning checkpoint -> PhysicsNeMo ``.mdlus``."""
    from .models import ClimaX

    overrides = {"num_heads": args.num_heads}
    if args.img_size:
        overrides["img_size"] = tuple(args.img_size)
    if args.variables:
        overrides["variables"] = args.variables.split(",")
    model = ClimaX.from_official_checkpoint(args.checkpoint, **overrides)
    model.save(args.output)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output}: grid {model.img_size}, patch {model.patch_size}, "
          f"{len(model.variables)} variables, {params:,} parameters")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="climax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help="build the model and run one forecast step")
    p.add_argument("--embed-dim", type=int, default=1024)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--num-heads", type=int, default=16)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lead-hours", type=float, default=72.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)

    p = commands.add_parser("convert", help="convert an official ClimaX .ckpt to .mdlus")
    p.add_argument("checkpoint", help="official Lightning checkpoint, e.g. 5.625deg.ckpt")
    p.add_argument("output", help="output .mdlus file")
    p.add_argument("--num-heads", type=int, default=16, help="not stored in the weights")
    p.add_argument("--img-size", type=int, nargs=2, metavar=("H", "W"),
                   help="target grid; pos_embed is resampled bicubically")
    p.add_argument("--variables", help="comma-separated subset of the checkpoint's variables")
    p.set_defaults(func=convert)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
