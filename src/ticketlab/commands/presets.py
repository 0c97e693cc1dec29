"""`ticketlab presets`: the named setups, and what each sets."""

import json


def add_parser(sub):
    p = sub.add_parser("presets", help="list the experiment presets")
    p.add_argument("name", nargs="?", help="show one preset's settings")
    p.set_defaults(run=main)


def main(args):
    from ticketlab.engine.presets import DESCRIPTIONS, PRESETS, load_preset

    if args.name:
        cfg = load_preset(args.name)
        print(json.dumps(cfg.to_dict(), indent=2))
        print(f"run directory name: {cfg.run_name()}")
        return
    width = max(map(len, PRESETS))
    for name in PRESETS:
        print(f"{name:<{width}}  {DESCRIPTIONS[name]}")
